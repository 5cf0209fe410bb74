"""Labeled subsets of a train list for semi-supervised training (docs/method.md section 5).

Three protocols: `stratified` (proportional per class, at least one each),
`random` (uniform over clips, like the VideoSSL lists the paper used: not class
balanced) and `per-class` (exactly K clips per class: the "1%" protocol of MvPL,
CMPL and SVFormer). The unlabeled pool is the whole train list by default, as in
the paper, or the complement of the labeled subset.
"""

from __future__ import annotations

import logging
import math
import os
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, get_args

import numpy as np

from tgsemi.data.annotations import Sample, read_list, write_list
from tgsemi.errors import ConfigError

log = logging.getLogger(__name__)

Strategy = Literal["stratified", "random", "per-class"]
Unlabeled = Literal["all", "complement"]


def _labeled_count(total: int, fraction: float | None, count: int | None) -> int:
    if (fraction is None) == (count is None):
        raise ConfigError("give exactly one of fraction and count for the labeled subset size")
    if fraction is not None:
        if not 0 < fraction <= 1:
            raise ConfigError(f"fraction must be in (0, 1], got {fraction}")
        # floor, as the VideoSSL lists: 5% of 9537 is 476; round() absorbs float noise (0.29 * 100)
        count = math.floor(round(fraction * total, 6))
    if not 1 <= count <= total:
        raise ConfigError(f"the labeled subset must hold 1..{total} clips, got {count}")
    return count


def _stratified_counts(sizes: Sequence[int], n: int) -> list[int]:
    """One clip per class, the remaining n - C shared in proportion to each
    class's remaining clips by largest remainder (exact integer arithmetic)."""
    extra, pool = n - len(sizes), max(sum(sizes) - len(sizes), 1)
    quotas = [(size - 1) * extra for size in sizes]
    counts = [1 + q // pool for q in quotas]
    by_remainder = sorted(range(len(sizes)), key=lambda c: -(quotas[c] % pool))
    for c in by_remainder[: n - sum(counts)]:
        counts[c] += 1
    return counts


def make_split(
    samples: Sequence[Sample],
    fraction: float | None = None,
    count: int | None = None,
    per_class: int | None = None,
    strategy: Strategy = "stratified",
    seed: int = 0,
    unlabeled: Unlabeled = "all",
) -> tuple[list[Sample], list[Sample]]:
    """(labeled, unlabeled) samples, both in input order so that list files diff cleanly.

    `stratified` and `random` take the size from `fraction` (floored) or `count`;
    `per-class` takes it from `per_class` alone and ignores both. The same seed
    gives the same split.
    """
    samples = list(samples)
    if not samples or any(s.label < 0 for s in samples):
        raise ConfigError("a labeled subset needs a non-empty train list with a label on every clip")
    if strategy not in get_args(Strategy):
        raise ConfigError(f"unknown split strategy {strategy!r}; use stratified, random or per-class")
    if (per_class is not None) != (strategy == "per-class"):
        raise ConfigError(
            f"per_class goes with strategy 'per-class' and only with it (strategy {strategy!r}, per_class {per_class})"
        )
    if unlabeled not in get_args(Unlabeled):
        raise ConfigError(f"unlabeled must be 'all' or 'complement', got {unlabeled!r}")
    rng = np.random.default_rng(seed)
    by_class: dict[int, list[int]] = defaultdict(list)
    for i, s in enumerate(samples):
        by_class[s.label].append(i)
    classes = sorted(by_class)

    if strategy == "per-class":
        short = [c for c in classes if len(by_class[c]) < per_class]
        if per_class < 1 or short:
            raise ConfigError(
                f"per_class must be >= 1 and at most the clips of the smallest class: "
                f"{len(short)} classes have fewer than {per_class} clips (labels {short[:5]})"
            )
        picks = [rng.choice(by_class[c], per_class, replace=False) for c in classes]
    elif strategy == "random":
        picks = [rng.choice(len(samples), _labeled_count(len(samples), fraction, count), replace=False)]
    else:
        n = _labeled_count(len(samples), fraction, count)
        if n < len(classes):
            raise ConfigError(
                f"a stratified subset needs at least one clip per class: {n} clips for {len(classes)} classes"
            )
        sizes = _stratified_counts([len(by_class[c]) for c in classes], n)
        picks = [rng.choice(by_class[c], k, replace=False) for c, k in zip(classes, sizes)]
    chosen = np.zeros(len(samples), dtype=bool)
    chosen[np.concatenate(picks)] = True
    labeled = [s for s, keep in zip(samples, chosen) if keep]
    rest = samples if unlabeled == "all" else [s for s, keep in zip(samples, chosen) if not keep]
    return labeled, rest


def split_list_file(
    train_list: str | os.PathLike,
    out_dir: str | os.PathLike,
    fraction: float | None = None,
    per_class: int | None = None,
    strategy: Strategy = "stratified",
    seed: int = 0,
    unlabeled: Unlabeled = "all",
    count: int | None = None,
) -> tuple[Path, Path]:
    """Write `out_dir/labeled.txt` and `out_dir/unlabeled.txt` in the train
    list's own layout, so they can be given wherever that list is accepted.

    A UCF-101 trainlist's split stays 1-based and gets a classInd.txt beside it
    (rebuilt from the trainlist's class folders): that is what tells a reader
    the lists are 1-based rather than MMAction2's 0-based video lists.
    """
    source = read_list(train_list)
    labeled, rest = make_split(source.samples, fraction, count, per_class, strategy, seed, unlabeled)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = (
        write_list(out / "labeled.txt", labeled, source.format),
        write_list(out / "unlabeled.txt", rest, source.format),
    )
    if source.format == "ucf101":
        names = {s.label: s.path.split("/")[0] for s in reversed(source.samples)}
        (out / "classInd.txt").write_text("".join(f"{c + 1} {names[c]}\n" for c in sorted(names)), encoding="utf-8")
    log.info(
        "%s: %d labeled, %d unlabeled clips (%s, seed %d) -> %s",
        train_list,
        len(labeled),
        len(rest),
        strategy,
        seed,
        out,
    )
    return paths
