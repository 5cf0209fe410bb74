"""Checkpoints: atomic writes, exact resume, safe loading.

``last.pt`` is replaced atomically (write a temporary file, fsync, rename), so a
crash mid-write leaves the previous checkpoint intact; history files are hard
links to it (no second copy on disk). Loading uses ``weights_only=True``: a
checkpoint carrying a pickled payload is refused without running it.
"""

from __future__ import annotations

import contextlib
import os
import pickle
from pathlib import Path

import torch

from tgsemi.config import config_from_dict
from tgsemi.errors import CheckpointError, ConfigError
from tgsemi.outputs import writing
from tgsemi.runfiles import DATA_FILES, LAST, RunPaths


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
    """Write ``ckpt_dir/last.pt`` atomically (``write``) and keep the ``keep_last`` newest ``step_*.pt``."""
    last = write(state, ckpt_dir / LAST)
    history = ckpt_dir / f"step_{step:08d}.pt"
    with writing(history, note=f"; {last} is saved"):
        history.unlink(missing_ok=True)
        os.link(last, history)
        for old in sorted(ckpt_dir.glob("step_*.pt"))[:-keep_last]:
            old.unlink()
    return last


def write(state: dict, path: Path) -> Path:
    """``state`` to ``path`` atomically (temporary file, fsync, rename): a reader never sees half a
    file. A write that fails (full disk, read-only) raises OutputError and leaves ``path`` as it was."""
    tmp = path.with_name(f".{path.name}.tmp")
    with writing(tmp, note=f"; {path} is unchanged"):
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as f:
                torch.save(state, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)  # a full disk keeps no half-written file
            raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)
    return path


def load(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint with ``weights_only=True``; any failure is a CheckpointError."""
    path = Path(path)
    if path.is_dir():  # a run folder, or a folder of checkpoints
        run = RunPaths(path)
        path = run.last if run.checkpoints.is_dir() else path / LAST
    if not path.is_file():
        raise CheckpointError(f"{path}: no checkpoint there")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, AttributeError, OSError) as exc:
        raise CheckpointError(f"{path}: refused or unreadable checkpoint ({type(exc).__name__}: {exc})") from None
    return validate_checkpoint(ckpt, path)


# What every reader of a checkpoint needs, and what resuming needs besides (best.pt has neither).
REQUIRED = {"model": dict, "config": dict, "class_names": list, "position": dict}
RESUME = {"optimizer": dict, "rng": (dict, list)}


def validate_checkpoint(ckpt: object, path: str | Path) -> dict:
    """``ckpt`` if it has the shape tgsemi writes, else one CheckpointError naming ``path`` and what
    is wrong: a readable file of other contents must not end as a KeyError or TypeError in a reader."""

    def wrong(what: str) -> CheckpointError:
        return CheckpointError(f"{path}: not a tgsemi checkpoint: {what}")

    if not isinstance(ckpt, dict):
        raise wrong(f"it holds a {type(ckpt).__name__}, not a dict of named parts")
    missing = [k for k in REQUIRED if k not in ckpt]
    if missing:
        raise wrong(f"no {', '.join(missing)} (its keys: {', '.join(sorted(map(str, ckpt))[:12]) or 'none'})")
    for key, kind in {**REQUIRED, **RESUME}.items():
        if key in ckpt and not isinstance(ckpt[key], kind):
            raise wrong(f"its {key} is a {type(ckpt[key]).__name__}")
    if not ckpt["model"] or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in ckpt["model"].items()):
        raise wrong("its model is no state dict (parameter names -> tensors)")
    if not ckpt["class_names"] or not all(isinstance(n, str) for n in ckpt["class_names"]):
        raise wrong("its class_names is no non-empty list of names")
    position = ckpt["position"]
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in position.values())
    if not numbers or not isinstance(position.get("step"), int) or position["step"] < 0:
        raise wrong(f"its position is no set of counters with a step >= 0: {position}")
    rngs = ckpt.get("rng", [])
    if not all(
        isinstance(r, dict) and torch.is_tensor(r.get("torch")) for r in ([rngs] if isinstance(rngs, dict) else rngs)
    ):
        raise wrong("its rng holds no torch generator state")
    if "optimizer" in ckpt and not {"state", "param_groups"} <= set(ckpt["optimizer"]):
        raise wrong("its optimizer is no optimizer state dict (state, param_groups)")
    paths = ckpt.get("data_paths", {"root": ""})  # runfiles.trained_on; absent in older checkpoints
    if not (isinstance(paths, dict) and isinstance(paths.get("root"), str)) or not all(
        v is None or isinstance(v, str) for k, v in paths.items() if k in DATA_FILES
    ):
        raise wrong("its data_paths is no mapping of a root and list paths")
    try:
        config_from_dict(ckpt["config"])
    except ConfigError as exc:
        raise CheckpointError(f"{path}: the config stored in it is not valid here: {exc}") from None
    return ckpt


def load_state(target: torch.nn.Module | torch.optim.Optimizer, state: dict, path: str | Path) -> None:
    """``target.load_state_dict(state)``; weights that do not fit the model (another config or
    number of classes) are one CheckpointError that counts and exemplifies the misfits."""
    if isinstance(target, torch.nn.Module):
        mine = target.state_dict()
        misfits = {
            "missing": [k for k in mine if k not in state],
            "unexpected": [k for k in state if k not in mine],
            "of another shape": [
                f"{k}: {tuple(state[k].shape)} in the file, {tuple(v.shape)} in the model"
                for k, v in mine.items()
                if k in state and state[k].shape != v.shape
            ],
        }
        found = [f"{len(v)} {kind} (e.g. {v[0]})" for kind, v in misfits.items() if v]
        if found:
            raise CheckpointError(
                f"{path}: its weights do not fit this model: {'; '.join(found)} "
                "(trained with another model config or number of classes?)"
            )
    try:
        target.load_state_dict(state)
    except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: its {type(target).__name__} state cannot be loaded: {reason}") from None
