"""Checkpoints: atomic writes, exact resume, safe loading.

``last.pt`` is replaced atomically (write a temporary file, fsync, rename), so a
crash mid-write leaves the previous checkpoint intact; history files are hard
links to it (no second copy on disk). Loading uses ``weights_only=True``: a
checkpoint carrying a pickled payload is refused without running it.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import torch

from tgsemi.errors import CheckpointError
from tgsemi.runfiles import LAST, RunPaths


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(state: dict, ckpt_dir: Path, step: int, keep_last: int = 3) -> Path:
    """Write ``ckpt_dir/last.pt`` atomically and keep the ``keep_last`` newest ``step_*.pt``."""
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    tmp = ckpt_dir / f".{LAST}.tmp"
    with open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    last = ckpt_dir / LAST
    os.replace(tmp, last)
    history = ckpt_dir / f"step_{step:08d}.pt"
    history.unlink(missing_ok=True)
    os.link(last, history)
    for old in sorted(ckpt_dir.glob("step_*.pt"))[:-keep_last]:
        old.unlink()
    dir_fd = os.open(ckpt_dir, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)
    return last


def load(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint with ``weights_only=True``; any failure is a CheckpointError."""
    path = Path(path)
    if path.is_dir():  # a run folder, or a folder of checkpoints
        run = RunPaths(path)
        path = run.last if run.checkpoints.is_dir() else path / LAST
    if not path.is_file():
        raise CheckpointError(f"{path}: no checkpoint there")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, AttributeError) as exc:
        raise CheckpointError(f"{path}: refused or unreadable checkpoint ({type(exc).__name__}: {exc})") from None
