"""Where results go: checked before the work that produces them starts, and failed writes named.

A command that computes for an hour and only then finds its output folder missing, read-only or
a file has lost the hour; so every command checks its outputs first. A write that fails later
anyway (a disk that fills up) raises ``OutputError`` naming the file instead of an ``OSError``,
or the ``RuntimeError`` torch's serializer turns it into, from deep inside a library.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

from tgsemi.errors import OutputError


def _named(path: str | Path, option: str | None) -> str:
    return f"{option} {path}" if option else str(path)


def writable_dir(path: str | Path, option: str | None = None) -> Path:
    """The folder ``path``, created if missing; ``OutputError`` (naming ``option``, the argument
    that gave it, and the path) if it is a file or cannot be written."""
    path = Path(path)
    for part in (path, *path.parents):  # the deepest part that exists must be a folder
        if part.exists():
            if not part.is_dir():
                where = "" if part == path else f"{part} "
                raise OutputError(f"{_named(path, option)}: {where}is a file, not a folder")
            break
    with writing(path, option):
        path.mkdir(parents=True, exist_ok=True)
    if not os.access(path, os.W_OK | os.X_OK):  # also False on a read-only file system, even for root
        raise OutputError(f"{_named(path, option)}: the folder is read-only or not yours to write")
    return path


def writable_file(path: str | Path, option: str | None = None) -> Path:
    """The file ``path`` can be written: its folder exists (created if missing) and is writable,
    and ``path`` is no folder nor a read-only file."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{_named(path, option)}: is a folder; give a file name")
    writable_dir(path.parent, option and f"{option}'s folder")
    if path.exists() and not os.access(path, os.W_OK):
        raise OutputError(f"{_named(path, option)}: the file is read-only")
    return path


def os_error(exc: BaseException | None) -> OSError | None:
    """The ``OSError`` behind ``exc``: itself, or the one torch's serializer chains to its RuntimeError."""
    while exc is not None and not isinstance(exc, OSError):
        exc = exc.__context__
    return exc


@contextlib.contextmanager
def writing(path: str | Path, option: str | None = None, note: str = "") -> Iterator[None]:
    """Writes to ``path`` inside fail with ``OutputError`` naming it and the cause (full disk,
    read-only file system, no permission), followed by ``note`` (say, what is still intact)."""
    try:
        yield
    except (OSError, RuntimeError) as exc:
        cause = os_error(exc)
        if cause is None:  # a RuntimeError that is no failed write
            raise
        raise OutputError(f"{_named(path, option)}: cannot write ({cause.strerror or cause}){note}") from exc
