"""From a run's data config to its three sample lists: labeled, unlabeled, test."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tgsemi.config import DataConfig
from tgsemi.data.annotations import Sample, check_exists, read_class_index, read_list
from tgsemi.data.splits import make_split


@dataclass
class Splits:
    class_names: list[str]
    labeled: list[Sample]
    unlabeled: list[Sample]  # the whole train list by default, as the paper
    test: list[Sample]
    train: list[Sample]  # the whole train list (the reference recomputes BN statistics on it)


def _class_names(root: Path, samples: list[Sample]) -> list[str]:
    class_ind = root / "classInd.txt"
    if class_ind.exists():
        index = read_class_index(class_ind)
        return sorted(index, key=index.get)
    return [f"class_{k}" for k in range(max(s.label for s in samples) + 1)]


def _list(cfg: DataConfig, path: str | None, default: str) -> list[Sample]:
    root = Path(cfg.root)
    class_ind = root / "classInd.txt"
    full = Path(path) if path else root / default
    return read_list(full, class_index=class_ind if class_ind.exists() else None).samples


def build_splits(cfg: DataConfig, seed: int) -> Splits:
    """Read the train/test lists under ``cfg.root`` (UCF-101 layout by default),
    drop or refuse missing files, and draw the labeled subset deterministically."""
    root = Path(cfg.root)

    def present(samples: list[Sample]) -> list[Sample]:
        return check_exists(root, samples, cfg.on_missing, allow_outside=cfg.allow_outside_root)

    train = present(_list(cfg, cfg.train_list, "trainlist01.txt"))
    test = present(_list(cfg, cfg.test_list, "testlist01.txt"))
    if cfg.labeled_list:
        labeled = present(_list(cfg, cfg.labeled_list, ""))
        chosen = set(labeled)
        unlabeled = train if cfg.unlabeled == "all" else [s for s in train if s not in chosen]
    else:
        labeled, unlabeled = make_split(
            train,
            fraction=None if cfg.per_class else cfg.labeled_fraction,
            per_class=cfg.per_class,
            strategy=cfg.split_strategy,
            seed=seed,
            unlabeled=cfg.unlabeled,
        )
    return Splits(_class_names(root, train + test), labeled, unlabeled, test, train)
