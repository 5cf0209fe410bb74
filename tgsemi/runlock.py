"""One process trains a run folder at a time.

Two ``tgsemi train`` into the same ``--out`` would interleave their checkpoints and metrics, so
training holds an exclusive ``flock`` on ``RUN/.lock`` (which names its pid) and a second writer
is refused, naming the holder. The operating system drops the lock when its holder exits, however
it ends, so the file a killed run leaves behind blocks nobody.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from typing import Iterator

from tgsemi.errors import RunLockedError
from tgsemi.outputs import writable_dir, writing
from tgsemi.runfiles import RunPaths


@contextlib.contextmanager
def hold(paths: RunPaths, enabled: bool = True) -> Iterator[None]:
    """Hold the run folder ``paths.root`` (created if missing, refused if it cannot be written)
    for the ``with`` block; ``enabled=False`` (the other ranks of a distributed run) holds nothing."""
    if not enabled:
        yield
        return
    writable_dir(paths.root, "--out")
    with writing(paths.lock, "--out"):
        fd = os.open(paths.lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
            raise RunLockedError(
                f"{paths.root} is being trained by process {holder} (lock {paths.lock}); wait for it to end, "
                "stop it (SIGINT or SIGTERM save a checkpoint first), or give another --out"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)  # also for the loader workers forked with a copy of fd
        os.close(fd)
