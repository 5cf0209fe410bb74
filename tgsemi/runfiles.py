"""A run folder's files: where each one is, and how its append-only JSON-lines files are read.

Training writes them, and resuming, the bookkeeping of bad inputs, the notebooks and the CLI read
them back; naming every path here keeps all of them agreeing on the layout.
"""

from __future__ import annotations

import json
from pathlib import Path

LAST = "last.pt"  # the newest checkpoint of a run; the history beside it is step_NNNNNNNN.pt
CHECKPOINTS = "checkpoints"


class RunPaths:
    """The paths of the run in folder ``root`` (which need not exist yet)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.checkpoints = self.root / CHECKPOINTS
        self.last = self.checkpoints / LAST
        self.config = self.root / "config.yaml"
        self.metrics = self.root / "metrics.jsonl"
        self.tensorboard = self.root / "tb"
        self.bad_inputs_log = self.root / "bad_inputs.jsonl"  # appended by every loader worker
        self.bad_inputs = self.root / "bad_inputs.json"  # the summary written when training ends

    @classmethod
    def named_by(cls, path: str | Path) -> RunPaths:
        """The run a user names by its folder, its ``checkpoints/`` folder or a checkpoint file;
        a checkpoint kept elsewhere belongs to the folder it is in."""
        path = Path(path)
        if path.is_dir() and (path / CHECKPOINTS).is_dir():
            return cls(path)
        return cls(path.parent.parent if path.parent.name == CHECKPOINTS else path.parent)


def parse_jsonl(text: str) -> list[dict]:
    """The records of a JSON-lines file; a line that is no JSON object is skipped: the last line
    of a file whose writer was killed mid-write, or of one still being written."""
    records = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records
