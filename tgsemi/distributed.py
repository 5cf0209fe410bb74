"""torch.distributed helpers that degrade to single-process no-ops.

The contrastive loss needs every rank's embeddings as negatives *with* gradient, which plain
``all_gather`` does not provide.
"""

from __future__ import annotations

import os
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import Tensor


def is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if is_initialized() else 1


def is_main() -> bool:
    return rank() == 0


class _AllGatherWithGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, t: Tensor) -> Tensor:
        parts = [torch.empty_like(t) for _ in range(world_size())]
        dist.all_gather(parts, t.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        # Every rank's loss depends on this rank's rows: their gradient is the sum over ranks.
        grad = grad.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(grad)
        n = grad.shape[0] // world_size()
        return grad[rank() * n : (rank() + 1) * n]


def all_gather_with_grad(t: Tensor) -> Tensor:
    """Concatenate ``t`` from all ranks in rank order (dim 0), differentiably.

    Every rank must pass the same shape. Identity when not running distributed.
    """
    if world_size() == 1:
        return t
    return _AllGatherWithGrad.apply(t)


class _AllReduceWithGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, t: Tensor) -> Tensor:
        t = t.clone()
        dist.all_reduce(t)
        return t

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        # every rank's loss depends on the sum, so each input's gradient is the sum over ranks
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


def all_reduce_with_grad(t: Tensor) -> Tensor:
    """Sum of ``t`` over all ranks, differentiably. Identity when not running distributed."""
    if world_size() == 1:
        return t
    return _AllReduceWithGrad.apply(t)


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", 0))


def setup(timeout_s: float = 300) -> None:
    """Join the process group when launched by torchrun (NCCL on GPU, gloo on CPU).

    The timeout bounds how long a rank waits for a dead peer before it fails.
    """
    if is_initialized() or int(os.environ.get("WORLD_SIZE", 1)) == 1:
        return
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local_rank())
    dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s))


def cleanup() -> None:
    if is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if is_initialized():
        dist.barrier()


def all_gather_object(obj: object) -> list:
    """Every rank's ``obj`` in rank order (``[obj]`` when not distributed)."""
    if not is_initialized():
        return [obj]
    out: list = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out
