"""SIGINT and SIGTERM stop training at the next step boundary, with a checkpoint.

Ctrl-C and the SIGTERM a scheduler sends before it kills a job would otherwise end a run wherever
it is: a traceback, and the steps since the last periodic checkpoint lost. Inside ``on_signals``
the first signal only asks the loop to stop; the loop saves a resumable checkpoint once the step
in progress is done and raises ``RunInterrupted``. A second signal acts as it would have
without us (stop at once; the checkpoint on disk is whole: it is written atomically).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from typing import Iterator

import torch

from tgsemi import distributed

log = logging.getLogger(__name__)

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
    """The first stop signal this process received (``signum``, 0 if none)."""

    def __init__(self) -> None:
        self.signum = 0
        self._pid = os.getpid()
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: object) -> None:
        if os.getpid() != self._pid:  # a loader worker forked with this handler: its parent decides
            return
        self.signum = self.signum or signum
        for s, handler in self._previous.items():  # a second signal stops at once
            signal.signal(s, handler)
        log.warning(
            "%s: stopping after this step with a checkpoint (send it again to stop at once)",
            signal.Signals(signum).name,
        )

    def requested(self, device: torch.device) -> int:
        """The signal that asked to stop on any rank (0: none). In a distributed run every rank must
        ask at the same step, so that they stop together."""
        if distributed.world_size() == 1:
            return self.signum
        flag = torch.tensor([self.signum], device=device)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        return int(flag.item())


@contextlib.contextmanager
def on_signals() -> Iterator[StopRequest]:
    """Catch SIGINT and SIGTERM in the ``with`` block, then restore the previous handlers. Off the
    main thread (where Python cannot install handlers) nothing is caught."""
    stop = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    # None: a handler not installed from Python, which Python cannot reinstall; the default is next best
    stop._previous = {s: signal.getsignal(s) or signal.SIG_DFL for s in SIGNALS}
    for s in SIGNALS:
        signal.signal(s, stop._handle)
    try:
        yield stop
    finally:
        for s, handler in stop._previous.items():
            signal.signal(s, handler)
