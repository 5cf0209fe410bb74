"""Pre-flight checks of a run's data, so that a bad list fails before training, not hours into it.

Two depths. ``check_splits`` opens no file: every label inside the class range, the labeled subset
inside the train list, no clip both trained on and tested on, each clip once per list and with one
label, batches that fit their pools and a run of at least one step. ``tgsemi train`` runs it at
start-up (``preflight``). ``check_data`` (``tgsemi check-data``) adds what needs the files, opened in
parallel: frame counts, unreadable, one-frame or short videos, rawframe folders that disagree with
their list, symbolic links that leave the data root; it returns a JSON-ready report.
"""

from __future__ import annotations

import logging
import os
import statistics
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Literal

from tqdm import tqdm

from tgsemi import cpus
from tgsemi.config import Config
from tgsemi.data.annotations import Sample, inside, resolve_path
from tgsemi.data.build import Splits, build_splits, list_paths
from tgsemi.data.video import Decoding, available_backends, num_frames, read_frames
from tgsemi.errors import DataCheckError, MissingFilesError, TgsemiError
from tgsemi.methods import get_method

log = logging.getLogger(__name__)

SHOWN = 5  # offending clips quoted in a message; a report lists them all


@dataclass
class Finding:
    """One problem: how bad, which check found it, the config key (and file) at fault, and every clip."""

    level: Literal["error", "warning"]
    check: str
    key: str
    message: str
    items: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        shown = ", ".join(self.items[:SHOWN]) + (f", ... ({len(self.items)} in all)" if len(self.items) > SHOWN else "")
        return f"{self.key}: {self.message}" + (f": {shown}" if shown else "")


def _keys(cfg: Config) -> dict[str, str]:
    """Each list of ``Splits`` -> the config key (and file) it came from, for the messages."""
    d, paths = cfg.data, list_paths(cfg.data)
    train = f"data.train_list ({paths['train']})"
    labeled = f"data.labeled_list ({d.labeled_list})" if d.labeled_list else f"the labeled subset of {train}"
    unlabeled = d.unlabeled_list
    return {
        "train": train,
        "labeled": labeled,
        "unlabeled": f"data.unlabeled_list ({unlabeled})" if unlabeled else f"the unlabeled pool of {train}",
        "test": f"data.test_list ({paths['test']})",
    }


def _lists(splits: Splits) -> dict[str, list[Sample]]:
    """The distinct lists: the unlabeled pool is usually the train list itself (or part of it)."""
    lists = {"train": splits.train, "labeled": splits.labeled, "test": splits.test}
    train = {os.path.normpath(s.path) for s in splits.train}
    if any(os.path.normpath(s.path) not in train for s in splits.unlabeled):
        lists["unlabeled"] = splits.unlabeled
    return lists


def _labels(lists: dict[str, list[Sample]], keys: dict[str, str], num_classes: int) -> list[Finding]:
    found = []
    for name, samples in lists.items():
        known = name in ("labeled", "test")  # the train list and the unlabeled pool may hold -1: unknown
        bad = [s for s in samples if s.label >= num_classes or (known and s.label < 0)]
        if bad:
            found.append(
                Finding(
                    "error",
                    "label range",
                    keys[name],
                    f"{len(bad)} clip(s) with labels outside the {num_classes} classes (0..{num_classes - 1})",
                    [f"{s.path} (label {s.label})" for s in bad],
                )
            )
    return found


def _repeats(lists: dict[str, list[Sample]], keys: dict[str, str]) -> list[Finding]:
    """A clip listed twice in one list (weighted twice), or with two labels anywhere (which is right?)."""
    found = []
    seen: dict[str, list[tuple[str, int]]] = defaultdict(list)  # path -> (list, label) of each known label
    for name, samples in lists.items():
        counts = Counter(os.path.normpath(s.path) for s in samples)
        twice = [f"{path} ({n} times)" for path, n in counts.items() if n > 1]
        if twice:
            found.append(Finding("error", "duplicates", keys[name], "clip(s) listed more than once", twice))
        for s in samples:
            if s.label >= 0:
                seen[os.path.normpath(s.path)].append((name, s.label))
    conflicts = {path: e for path, e in seen.items() if len({label for _, label in e}) > 1}
    if conflicts:
        involved = {name for e in conflicts.values() for name, _ in e}
        where = " and ".join(keys[name] for name in lists if name in involved)
        items = [f"{path} (labels {sorted({label for _, label in e})})" for path, e in conflicts.items()]
        found.append(Finding("error", "conflicting labels", where, "clip(s) with two or more labels", items))
    return found


def _leaks(lists: dict[str, list[Sample]], keys: dict[str, str], labeled_list: bool) -> list[Finding]:
    """Test clips trained on, and a labeled list drawn from another list than the train list."""
    found = []
    paths = {name: {os.path.normpath(s.path) for s in samples} for name, samples in lists.items()}
    for name in ("train", "labeled", "unlabeled"):
        both = sorted(paths.get(name, set()) & paths["test"])
        if both:
            found.append(
                Finding("error", "train/test overlap", f"{keys[name]} and {keys['test']}", "clip(s) in both", both)
            )
    outside = sorted(paths["labeled"] - paths["train"])
    if labeled_list and outside:
        found.append(
            Finding(
                "error",
                "labeled not in train",
                keys["labeled"],
                f"{len(outside)} labeled clip(s) are not in {keys['train']}: give the train list the labeled "
                "list was drawn from",
                outside,
            )
        )
    return found


def _pools(cfg: Config, splits: Splits, keys: dict[str, str], uses_unlabeled: bool, world: int) -> list[Finding]:
    """Batches that can be drawn: an empty pool, or one smaller than its batch, gives a loader no batch
    at all (``drop_last``), and the loop would wait for one forever."""
    t, found = cfg.train, []
    ranks = f" on each of {world} processes" if world > 1 else ""
    if not splits.labeled:
        found.append(Finding("error", "pool size", keys["labeled"], "no labeled clip (left)"))
    elif t.batch_size * world > len(splits.labeled):
        found.append(
            Finding(
                "warning",
                "pool size",
                "train.batch_size",
                f"a labeled batch of {t.batch_size}{ranks} is more than the {len(splits.labeled)} labeled clips: "
                "each batch repeats clips",
            )
        )
    need = t.batch_size * t.mu * world
    if uses_unlabeled and len(splits.unlabeled) < need:
        found.append(
            Finding(
                "error",
                "pool size",
                "train.batch_size",
                f"an unlabeled batch of train.batch_size x train.mu = {t.batch_size} x {t.mu} clips{ranks} needs "
                f"{need} clips, but {keys['unlabeled']} holds {len(splits.unlabeled)}: lower train.batch_size or "
                "train.mu",
            )
        )
    if t.precise_bn_batches and t.precise_bn_data == "train" and len(splits.train) < t.batch_size * world:
        found.append(
            Finding(
                "error",
                "pool size",
                "train.precise_bn_data",
                f"PreciseBN on the train list needs a batch of {t.batch_size} clips{ranks}, but {keys['train']} "
                f"holds {len(splits.train)}: lower train.batch_size or set train.precise_bn_data=labeled",
            )
        )
    if not splits.test:
        found.append(Finding("error", "pool size", keys["test"], "no test clip (left)"))
    return found


def check_splits(
    cfg: Config, splits: Splits, uses_unlabeled: bool, world: int = 1, steps_per_epoch: int | None = None
) -> list[Finding]:
    """Every problem of the lists that needs no file opened (see the module docstring);
    ``steps_per_epoch`` (the engine's) also checks that ``train.epochs`` makes at least one step."""
    keys, lists = _keys(cfg), _lists(splits)
    found = _labels(lists, keys, len(splits.class_names))
    found += _repeats(lists, keys) + _leaks(lists, keys, cfg.data.labeled_list is not None)
    found += _pools(cfg, splits, keys, uses_unlabeled, world)
    if steps_per_epoch is not None and int(cfg.train.epochs * steps_per_epoch) < 1:
        found.append(
            Finding(
                "error",
                "run length",
                "train.epochs",
                f"{cfg.train.epochs} epoch(s) of {steps_per_epoch} step(s) is not one step: "
                f"give at least {1 / steps_per_epoch:.4g}",
            )
        )
    backend = cfg.data.backend
    if backend is not None and backend not in available_backends():
        found.append(
            Finding(
                "error", "backend", "data.backend", f"{backend!r} is not installed; installed: {available_backends()}"
            )
        )
    return found


def preflight(cfg: Config, splits: Splits, steps_per_epoch: int, uses_unlabeled: bool, world: int = 1) -> list[Finding]:
    """``check_splits`` at training start-up: warnings logged, errors raised together as one
    ``DataCheckError``, before any step. Returns the warnings."""
    found = check_splits(cfg, splits, uses_unlabeled, world, steps_per_epoch)
    errors = [f for f in found if f.level == "error"]
    warnings = [f for f in found if f.level == "warning"]
    for w in warnings:
        log.warning("%s", w)
    if errors:
        lines = "\n".join(f"  {e}" for e in errors)
        raise DataCheckError(f"the data cannot train this run (tgsemi check-data lists every clip):\n{lines}")
    return warnings


# --- the files ---------------------------------------------------------------------------------


@dataclass
class FileResult:
    path: str
    frames: int | None = None
    error: str | None = None
    warnings: list[str] = field(default_factory=list)


def _inspect(cfg: Config, sample: Sample, span: int) -> FileResult:
    """Open one listed video or frame folder: its frame count, and its first, middle and last frames."""
    d, out = cfg.data, FileResult(sample.path)
    try:
        full = resolve_path(d.root, sample.path, d.allow_outside_root)
        real = os.path.realpath(full)  # listed inside the root, but a link somewhere on the way leads out
        if inside(os.path.abspath(d.root), os.path.abspath(full)) and not inside(os.path.realpath(d.root), real):
            out.warnings.append(f"a symbolic link leaving the data root (to {real})")
        frames = out.frames = num_frames(full, Decoding.of(d))  # the run's guards: size, decode time
        if sample.total_frames is not None and sample.total_frames != frames:
            out.warnings.append(f"the list says {sample.total_frames} frames, the folder holds {frames}")
        if frames < 2:
            out.error = f"{frames} frame(s): a clip needs two (the TG takes the next frame)"
            return out
        read_frames(full, sorted({0, frames // 2, frames - 1}), Decoding.of(d))
        if frames < span:
            out.warnings.append(f"{frames} frames, shorter than one clip ({span}): its clips loop")
    except TgsemiError as exc:
        out.error = getattr(exc, "reason", str(exc))  # a VideoReadError's path is the item's own
    except (OSError, ValueError, RuntimeError, MemoryError) as exc:  # what a damaged file may still raise
        out.error = f"{type(exc).__name__}: {exc}"
    return out


def _files(cfg: Config, lists: dict[str, list[Sample]], workers: int, progress: bool) -> dict[str, FileResult]:
    unique = {os.path.normpath(s.path): s for samples in lists.values() for s in samples}
    span = (cfg.data.clip_len - 1) * cfg.data.frame_interval + 2  # the TG's extra frame
    with ThreadPoolExecutor(max_workers=workers) as pool:  # decoders release the GIL
        jobs = pool.map(lambda s: _inspect(cfg, s, span), unique.values())
        results = list(tqdm(jobs, total=len(unique), desc="check-data", unit="file", disable=not progress))
    return dict(zip(unique, results))


def _file_findings(cfg: Config, results: dict[str, FileResult]) -> list[Finding]:
    root = f"data.root ({cfg.data.root})"
    unreadable = [f"{r.path}: {r.error}" for r in results.values() if r.error]
    links = [f"{r.path}: {w}" for r in results.values() for w in r.warnings if "symbolic link" in w]
    odd = [f"{r.path}: {w}" for r in results.values() for w in r.warnings if "symbolic link" not in w]
    followed = cfg.data.follow_symlinks or cfg.data.allow_outside_root
    found = []
    if unreadable:
        found.append(Finding("error", "unreadable files", root, f"{len(unreadable)} file(s) cannot train", unreadable))
    if links:
        level = "warning" if followed else "error"
        found.append(Finding(level, "symlinks", root, f"{len(links)} file(s) lead outside the data root", links))
    if odd:
        found.append(Finding("warning", "suspicious files", root, f"{len(odd)} file(s) look wrong", odd))
    return found


def _summary(samples: list[Sample], class_names: list[str], results: dict[str, FileResult]) -> dict:
    per_class = Counter(s.label for s in samples)
    frames = [f for s in samples if (f := results.get(os.path.normpath(s.path), FileResult("")).frames)]
    return {
        "clips": len(samples),
        "per_class": {class_names[c] if 0 <= c < len(class_names) else str(c): n for c, n in sorted(per_class.items())},
        "frames": {"min": min(frames), "median": statistics.median(frames), "max": max(frames)} if frames else None,
    }


def check_data(cfg: Config, workers: int | None = None, progress: bool = True) -> dict:
    """Every list the config names and every file they list, checked: the report has the counts per
    split and class, frame counts, and each error and warning with every clip it concerns."""
    found: list[Finding] = []
    data = cfg.data.model_copy(update={"follow_symlinks": True})  # links out of the root: each named by _inspect
    try:
        splits = build_splits(data, cfg.seed)
    except MissingFilesError as exc:  # reported, and the files that are there are still checked
        found.append(Finding("error", "missing files", f"data.root ({cfg.data.root})", str(exc)))
        splits = build_splits(data.model_copy(update={"on_missing": "skip"}), cfg.seed)
    except TgsemiError as exc:
        found.append(Finding("error", "lists", "data", str(exc)))
        splits = None
    results: dict[str, FileResult] = {}
    if splits is not None:
        found += check_splits(cfg, splits, get_method(cfg.method).uses_unlabeled)
        workers = workers or cpus.usable_cpus(cfg.train.cpus)[0]
        results = _files(cfg, _lists(splits), workers, progress)
        found += _file_findings(cfg, results)
    return {
        "root": str(cfg.data.root),
        "classes": splits.class_names if splits else [],
        "splits": {name: _summary(samples, splits.class_names, results) for name, samples in _lists(splits).items()}
        if splits
        else {},
        "files_checked": len(results),
        "errors": [asdict(f) for f in found if f.level == "error"],
        "warnings": [asdict(f) for f in found if f.level == "warning"],
    }
