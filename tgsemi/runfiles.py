"""A run folder's files: where each one is, and how its append-only JSON-lines files are read.

Training writes them, and resuming, the bookkeeping of bad inputs, the notebooks and the CLI read
them back; naming every path here keeps all of them agreeing on the layout.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from tgsemi.config import DataConfig
from tgsemi.errors import CheckpointError

log = logging.getLogger(__name__)

LAST = "last.pt"  # the newest checkpoint of a run; the history beside it is step_NNNNNNNN.pt
BEST = "best.pt"  # the weights with the best validation top-1 (what to deploy)
CHECKPOINTS = "checkpoints"


class RunPaths:
    """The paths of the run in folder ``root`` (which need not exist yet)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.checkpoints = self.root / CHECKPOINTS
        self.last = self.checkpoints / LAST
        self.best = self.checkpoints / BEST
        self.config = self.root / "config.yaml"
        self.metrics = self.root / "metrics.jsonl"
        self.tensorboard = self.root / "tb"
        self.bad_inputs_log = self.root / "bad_inputs.jsonl"  # appended by every loader worker
        self.bad_inputs = self.root / "bad_inputs.json"  # the summary written when training ends
        self.lock = self.root / ".lock"  # held by the process training the run (runlock.py)

    @classmethod
    def named_by(cls, path: str | Path) -> RunPaths:
        """The run a user names by its folder, its ``checkpoints/`` folder or a checkpoint file;
        a checkpoint kept elsewhere belongs to the folder it is in."""
        path = Path(path)
        if path.is_dir() and (path / CHECKPOINTS).is_dir():
            return cls(path)
        return cls(path.parent.parent if path.parent.name == CHECKPOINTS else path.parent)


def _record(line: str) -> dict | None:
    try:
        record = json.loads(line)
    except (ValueError, RecursionError):  # RecursionError: a line of thousands of nested brackets
        return None
    return record if isinstance(record, dict) else None


def parse_jsonl(text: str) -> list[dict]:
    """The records of a JSON-lines file; a line that is no JSON object is skipped: the last line
    of a file whose writer was killed mid-write, or of one still being written."""
    return [record for line in text.splitlines() if (record := _record(line)) is not None]


def _is_metric(record: dict | None) -> bool:
    """A metrics.jsonl record as ``TrainLog`` writes it: a step >= 0 and numbers (null: non-finite)."""
    if record is None or not isinstance(step := record.get("step"), int) or isinstance(step, bool) or step < 0:
        return False
    return all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in record.values())


def read_metrics(path: str | Path) -> list[dict]:
    """The records of a run's metrics.jsonl, none if there is none. Damaged lines (bytes that are no
    text, records of another shape) are skipped with a warning naming the file and lines, as a torn
    last line is silently; a file that cannot be read at all is a CheckpointError naming it."""
    path = Path(path)
    if not path.exists():
        return []
    try:
        lines = path.read_bytes().decode("utf-8", errors="replace").splitlines()
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read the run's metrics: {exc.strerror or exc}") from None
    records, damaged = [], []
    for n, line in enumerate(lines, 1):
        record = _record(line)
        if _is_metric(record):
            records.append(record)
        elif line.strip():
            damaged.append(n)
    if damaged and damaged != [len(lines)]:
        log.warning("%s: skipped %d damaged line(s): %s", path, len(damaged), ", ".join(map(str, damaged[:10])))
    return records


DATA_FILES = ("train_list", "test_list", "labeled_list", "unlabeled_list", "class_index")  # data.* paths besides root


def data_to_read(data: DataConfig, stored: dict | None, data_root: str | None = None) -> DataConfig:
    """Where a run's data is now: the absolute paths it trained on (so a run trained with a
    relative root evaluates from any directory), with the root and the lists inside it moved
    under ``data_root`` when the user relocates the data."""
    if not stored:  # checkpoints written before the absolute paths were stored
        return data if data_root is None else data.model_copy(update={"root": data_root})
    old = Path(stored["root"])
    new = Path(data_root).resolve() if data_root else old

    def moved(path: str | None) -> str | None:
        if path is None:
            return None
        p = Path(path)
        return str(new / p.relative_to(old)) if p.is_relative_to(old) else str(p)

    return data.model_copy(update={"root": str(new), **{k: moved(stored.get(k)) for k in DATA_FILES}})


def trained_on(data: DataConfig) -> dict:
    """The absolute data root and lists a run reads, stored in its checkpoints for ``data_to_read``."""
    lists = {k: getattr(data, k) for k in DATA_FILES}
    return {"root": str(Path(data.root).resolve()), **{k: v and str(Path(v).resolve()) for k, v in lists.items()}}
