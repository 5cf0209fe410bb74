"""The CPUs a process may really use, and the loader workers and intra-op threads sized from them.

A container's CPU share is usually a cgroup bandwidth quota (Docker ``--cpus``, a
Kubernetes CPU limit) that neither ``os.cpu_count()`` nor the affinity mask shows:
threads sized from those run in lockstep against the quota and are throttled
together. So the usable count is the smaller of the affinity mask and the quota.

Precedence: ``train.cpus`` replaces detection; an explicit ``data.num_workers``
replaces the ``auto`` rule; ``OMP_NUM_THREADS`` (read by PyTorch at start-up)
replaces the intra-op thread count, which is then left as it is.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal, NamedTuple

import torch

MAX_AUTO_WORKERS = 16  # a cap: each worker holds its own copy of the datasets and its prefetched batches
_V1_MOUNTS = ("cpu,cpuacct", "cpuacct,cpu", "cpu")  # where distributions mount the v1 cpu controller


class CpuPlan(NamedTuple):
    """What one training process uses; ``source`` says how ``cpus`` was found."""

    cpus: int  # per process
    source: str  # "affinity", "cgroup quota" or "config"
    workers: int  # DataLoader workers
    threads: int  # PyTorch intra-op threads
    threads_source: str  # "CPUs less workers" or "OMP_NUM_THREADS" (PyTorch's count, left alone)


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except (OSError, ValueError):  # missing, unreadable, a folder, not text
        return None


def _cgroup_paths(root: Path) -> dict[str, str]:
    """``/proc/self/cgroup`` as {controller: path}; ``""`` is the v2 (unified) hierarchy."""
    out: dict[str, str] = {}
    for line in (_read(root / "proc/self/cgroup") or "").splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3 or not parts[2].startswith("/"):
            continue
        for controller in parts[1].split(",") if parts[1] else [""]:
            out.setdefault(controller, parts[2])
    return out


def _walk_up(mount: Path, path: str) -> list[Path]:
    """The cgroup's folder under ``mount``, then each parent up to the mount itself: a
    parent's limit binds its children, and a container often sees its own cgroup as the root."""
    parts = [p for p in path.strip().split("/") if p not in ("", ".", "..")]
    return [mount.joinpath(*parts[:i]) for i in range(len(parts), -1, -1)]


def _as_cpus(quota: str, period: str) -> int | None:
    """Whole CPUs a quota grants (rounded down, at least 1); None: no limit or not a number."""
    try:
        q, p = int(quota), int(period)
    except ValueError:
        return None
    return max(1, q // p) if q > 0 and p > 0 else None


def _v2_limit(folder: Path) -> int | None:
    fields = (_read(folder / "cpu.max") or "").split()
    return _as_cpus(*fields) if len(fields) == 2 and fields[0] != "max" else None


def _v1_limit(folder: Path) -> int | None:
    quota, period = _read(folder / "cpu.cfs_quota_us"), _read(folder / "cpu.cfs_period_us")
    return _as_cpus(quota.strip(), period.strip()) if quota and period else None


def cgroup_quota(root: str | Path = "/") -> int | None:
    """Whole CPUs the process's cgroup quota grants (v2 ``cpu.max``, v1 ``cpu.cfs_quota_us``),
    the tightest along its cgroup path; None when no file there sets one. ``root`` is the
    file system's root (tests pass a fake tree)."""
    root = Path(root)
    paths = _cgroup_paths(root)
    folders = []
    if "" in paths:
        folders += [(f, _v2_limit) for f in _walk_up(root / "sys/fs/cgroup", paths[""])]
    if "cpu" in paths:
        for mount in _V1_MOUNTS:
            folders += [(f, _v1_limit) for f in _walk_up(root / "sys/fs/cgroup" / mount, paths["cpu"])]
    limits = [n for folder, limit in folders if (n := limit(folder)) is not None]
    return min(limits, default=None)


def _affinity() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def usable_cpus(configured: int | None = None, root: str | Path = "/") -> tuple[int, str]:
    """CPUs this machine (or container) lets the run use, and how that was found:
    ``configured`` ("config") if given, else the smaller of the affinity mask
    ("affinity") and the cgroup quota ("cgroup quota")."""
    if configured is not None:
        return configured, "config"
    mask, quota = _affinity(), cgroup_quota(root)
    return (quota, "cgroup quota") if quota is not None and quota < mask else (mask, "affinity")


def local_world_size() -> int:
    """Training processes on this machine, which share its CPUs: torchrun's
    ``LOCAL_WORLD_SIZE``, else 1."""
    try:
        return max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    except ValueError:
        return 1


def loader_workers(num_workers: int | Literal["auto"], cpus: int, cache_frames: bool = False) -> int:
    """``data.num_workers`` as a number. ``auto``: one worker per CPU of the process (``cpus``)
    but one, left to the training loop, at most ``MAX_AUTO_WORKERS``; 0 with ``cache_frames``,
    whose cache lives in the training process."""
    if num_workers != "auto":
        return num_workers
    return 0 if cache_frames else min(MAX_AUTO_WORKERS, max(0, cpus - 1))


def plan(
    configured_cpus: int | None, num_workers: int | Literal["auto"], cache_frames: bool = False, root: str | Path = "/"
) -> CpuPlan:
    """Workers and intra-op threads for one of ``local_world_size()`` processes: the threads
    get the process's CPUs the workers leave (at least 1), unless ``OMP_NUM_THREADS`` is
    set, where PyTorch's count (``torch.get_num_threads()``) is kept."""
    total, source = usable_cpus(configured_cpus, root)
    cpus = max(1, total // local_world_size())
    workers = loader_workers(num_workers, cpus, cache_frames)
    if "OMP_NUM_THREADS" in os.environ:
        return CpuPlan(cpus, source, workers, torch.get_num_threads(), "OMP_NUM_THREADS")
    return CpuPlan(cpus, source, workers, max(1, cpus - workers), "CPUs less workers")
