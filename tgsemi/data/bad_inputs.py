"""Bookkeeping of inputs that could not be decoded.

One damaged video must not end a multi-day run (the reference crashes on it),
but silently training on fewer videos is as bad. Each bad file is logged once,
recorded in an append-only JSON-lines file shared by all DataLoader workers, and
the run stops when their share of the files seen exceeds the configured limit.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from tgsemi.errors import TooManyBadInputsError

log = logging.getLogger(__name__)


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
            log.warning("skipping undecodable input %s: %s", path, reason)
            if self.log_path is not None:
                line = json.dumps({"path": path, "reason": reason}) + "\n"
                fd = os.open(self.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                try:
                    os.write(fd, line.encode())  # one small O_APPEND write: atomic across workers
                finally:
                    os.close(fd)
        share = len(self.bad) / max(len(self.seen), self.min_seen)
        if share > self.max_fraction:
            raise TooManyBadInputsError(
                f"{len(self.bad)} of {len(self.seen)} inputs seen could not be decoded "
                f"(limit {self.max_fraction:.0%}); first: {', '.join(list(self.bad)[:3])}"
            )


def collect(log_path: Path) -> list[dict]:
    """Unique bad inputs recorded by every worker, in first-seen order."""
    if not Path(log_path).exists():
        return []
    entries: dict[str, dict] = {}
    for line in Path(log_path).read_text().splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line torn by a killed process
        entries.setdefault(entry["path"], entry)
    return list(entries.values())
