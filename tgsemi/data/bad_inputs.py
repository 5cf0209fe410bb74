"""Bookkeeping of inputs that could not be decoded.

One damaged video must not end a multi-day run (the reference crashes on it),
but silently training on fewer videos is as bad. Each bad file is logged once per
run, recorded in an append-only JSON-lines file shared by all DataLoader workers
(of every epoch) and by resumed processes, and the run stops when their share of
the files seen exceeds the configured limit.
"""

from __future__ import annotations

import fcntl
import json
import logging
from pathlib import Path

from tgsemi.errors import TooManyBadInputsError
from tgsemi.runfiles import parse_jsonl

log = logging.getLogger(__name__)


class _TooManyBadInputs(TooManyBadInputsError):
    """A DataLoader worker's exception is re-raised in the main process as
    ``type(exc)("Caught ... in DataLoader worker process N. Original Traceback ...")``;
    keeping only the message lets the user read the reason, not a worker's traceback."""

    PREFIX = "too many undecodable inputs: "

    def __init__(self, message: str):
        super().__init__(self.PREFIX + message.rsplit(self.PREFIX, 1)[-1].strip())


class BadInputs:
    def __init__(self, max_fraction: float = 0.1, log_path: Path | None = None, min_seen: int = 20):
        self.max_fraction = max_fraction
        self.log_path = Path(log_path) if log_path else None
        self.min_seen = min_seen  # below this, one bad file is no evidence of a broken dataset
        self.bad: dict[str, str] = {}
        self.seen: set[str] = set()

    def mark_seen(self, path: str) -> None:
        self.seen.add(path)

    def record(self, path: str, reason: str) -> None:
        """Log a bad input once, then stop if too many of the files seen were bad."""
        self.seen.add(path)
        if path not in self.bad:
            self.bad[path] = reason
            if self._append(path, reason):
                log.warning("skipping undecodable input %s: %s", path, reason)
        share = len(self.bad) / max(len(self.seen), self.min_seen)
        if share > self.max_fraction:
            raise _TooManyBadInputs(
                f"{len(self.bad)} of {len(self.seen)} inputs seen could not be decoded "
                f"(limit {self.max_fraction:.0%}); first: {', '.join(list(self.bad)[:3])}"
            )

    def _append(self, path: str, reason: str) -> bool:
        """Add the entry to the shared file unless another process of this run (a
        worker of an earlier epoch or pass, or the run before a resume) did; the
        lock makes check-and-append one step. False if it was already there."""
        if self.log_path is None:
            return True
        with open(self.log_path, "a+") as f:
            fcntl.flock(f, fcntl.LOCK_EX)  # released when the file closes
            f.seek(0)
            text = f.read()
            if path in _entries(text):
                return False
            if text and not text.endswith("\n"):
                f.write("\n")  # end a line torn by a killed process
            f.write(json.dumps({"path": path, "reason": reason}) + "\n")
        return True


def _entries(text: str) -> dict[str, dict]:
    entries: dict[str, dict] = {}
    for entry in parse_jsonl(text):  # without a line torn by a killed process
        entries.setdefault(entry["path"], entry)
    return entries


def collect(log_path: Path) -> list[dict]:
    """Unique bad inputs recorded by every worker, in first-seen order."""
    if not Path(log_path).exists():
        return []
    return list(_entries(Path(log_path).read_text()).values())
