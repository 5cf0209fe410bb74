"""Where and how tensors run: the device, bf16 autocast, the memory layout and intra-op threads.

Training, evaluation, the analysis tools and the benchmarks ask these questions the same way,
so the answers live here rather than in any one of them.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch

from tgsemi import distributed
from tgsemi.errors import ArgumentError


def pick_device(name: str) -> torch.device:
    """``auto``, ``cuda`` or ``cpu`` -> a device; on CUDA the GPU of this process's local rank."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():  # else a CUDA error deep in the first .to(device)
            raise ArgumentError("device cuda (train.device, --device): torch finds no CUDA device; use cpu or auto")
        return torch.device("cuda", distributed.local_rank())
    if name != "cpu":
        raise ArgumentError(f"unknown device {name!r} (train.device, --device): auto, cpu or cuda")
    return torch.device("cpu")


def use_amp(amp: str, device: torch.device) -> bool:
    """Whether ``train.amp`` (``auto``, ``bf16`` or ``off``) means bf16 on ``device``: ``auto`` only on CUDA."""
    return amp == "bf16" or (amp == "auto" and device.type == "cuda")


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast where asked for (by default on CUDA only)."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def to_device(x: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    """``x`` on ``device``, in the channels-last 3D layout when asked (faster convolutions on GPU)."""
    x = x.to(device, non_blocking=True)
    return x.contiguous(memory_format=torch.channels_last_3d) if channels_last else x


@contextlib.contextmanager
def intra_op_threads(n: int = 1) -> Iterator[None]:
    """Run a block on ``n`` intra-op threads, then restore the count.

    Items are built on one thread, as DataLoader workers do, also when
    ``num_workers=0``: clip-sized ops only lose from more threads (RandAugment on
    an 8x56x56 clip took 2.3 ms on one thread, 47 ms on two of a busy 2-core
    machine), and an item then does not depend on the process's thread count."""
    threads = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
