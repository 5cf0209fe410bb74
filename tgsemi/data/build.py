"""From a run's data config to its sample lists: labeled, unlabeled, test (and the whole train list)."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tgsemi.config import DataConfig
from tgsemi.data.annotations import Sample, check_exists, list_class_names, read_class_index, read_list, read_paths
from tgsemi.data.splits import make_split
from tgsemi.errors import AnnotationError

log = logging.getLogger(__name__)


@dataclass
class Splits:
    class_names: list[str]
    labeled: list[Sample]
    unlabeled: list[Sample]  # the whole train list by default, as the paper, plus data.unlabeled_list
    test: list[Sample]
    train: list[Sample]  # the whole train list (the reference recomputes BN statistics on it)


def list_paths(cfg: DataConfig) -> dict[str, Path]:
    """The labeled lists a run reads (defaults: ROOT/trainlist01.txt, ROOT/testlist01.txt), by the
    subset an HMDB-51 split folder gives for them."""
    root = Path(cfg.root)
    found = {
        "train": Path(cfg.train_list) if cfg.train_list else root / "trainlist01.txt",
        "test": Path(cfg.test_list) if cfg.test_list else root / "testlist01.txt",
    }
    if cfg.labeled_list:
        found["labeled"] = Path(cfg.labeled_list)
    return found


def class_names(cfg: DataConfig) -> list[str] | None:
    """The class names every list of a run is read with, in label order: ``data.class_index``, else
    ROOT/classInd.txt, else the sorted union of the names the lists use (Kinetics CSVs, HMDB-51 split
    folders), so that a class one list lacks shifts no label of another. None: the lists label by
    number. The run stores them (``Splits.class_names``), and evaluation reads its test list with them."""
    file = Path(cfg.class_index) if cfg.class_index else Path(cfg.root) / "classInd.txt"
    if cfg.class_index or file.is_file():
        index = read_class_index(file)
        if sorted(index.values()) != list(range(len(index))):
            raise AnnotationError(file, None, f"class indices must run from 1 to {len(index)} without a gap")
        return sorted(index, key=index.get)
    used = [names for path in list_paths(cfg).values() if (names := list_class_names(path)) is not None]
    return sorted(set().union(*used)) if used else None


def _read(path: Path, names: list[str] | None, subset: Literal["train", "test"]) -> list[Sample]:
    return read_list(path, class_index=names, subset=subset).samples


def build_splits(cfg: DataConfig, seed: int) -> Splits:
    """Read the train/test lists under ``cfg.root`` (UCF-101 layout by default), with one class
    index, drop or refuse missing files, and draw the labeled subset deterministically."""
    root = Path(cfg.root)

    def present(samples: list[Sample]) -> list[Sample]:
        return check_exists(root, samples, cfg.on_missing, cfg.allow_outside_root, cfg.follow_symlinks)

    names, lists = class_names(cfg), list_paths(cfg)
    train = present(_read(lists["train"], names, "train"))
    test = present(_read(lists["test"], names, "test"))  # an HMDB-51 split's test marks, 2
    if "labeled" in lists:
        labeled = present(_read(lists["labeled"], names, "train"))
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
    if cfg.unlabeled_list:
        pooled = {os.path.normpath(s.path) for s in unlabeled}
        extra = [s for s in present(read_paths(cfg.unlabeled_list, root)) if os.path.normpath(s.path) not in pooled]
        log.info("%s: %d unlabeled videos join the pool of %d", cfg.unlabeled_list, len(extra), len(unlabeled))
        unlabeled = unlabeled + extra
    if names is None:
        names = [f"class_{k}" for k in range(max(s.label for s in train + test) + 1)]
    return Splits(names, labeled, unlabeled, test, train)
