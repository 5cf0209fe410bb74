"""Training launcher for the fault-injection tests (tests/test_reliability_*.py).

``python tests/_fault_train.py RUN_DIR [--stall-save STEP] [--wait-signal-at STEP] [--cli] [dotted.key=value ...]``
trains the ``synthetic_tiny`` preset as ``tgsemi train`` does (one rank, or the
rank that RANK/WORLD_SIZE/MASTER_* name), and lets a test choose where to kill it:

- ``STEP <rank> <n>`` is printed as step ``n`` (1-based, as metrics.jsonl counts) starts;
- with ``--stall-save STEP`` the checkpoint of that step is written half-way,
  ``STALLED`` is printed and the process waits to be killed mid-write;
- with ``--wait-signal-at STEP`` ``WAITING`` is printed as that step starts, and the step
  goes on once the run has caught a stop signal (SIGINT, SIGTERM);
- with ``--cli`` the run goes through ``tgsemi.cli.main`` (its messages and exit code are the
  process's) in a process group of its own, which a test signals as a terminal's Ctrl-C does.

At the end each rank's weights go to ``RUN_DIR/rank<r>.pt`` (not with ``--cli``). Only this
process is patched; the package itself has no test hooks.
"""

import io
import logging
import os
import sys
import time
from pathlib import Path

import torch

from tgsemi import cli, distributed, engine, stopping
from tgsemi.config import load_config


def announce_steps(wait_at: int | None = None) -> None:
    lr_at = engine.lr_at  # the loop asks for the learning rate once at the start of every step
    caught, handle = [], stopping.StopRequest._handle

    def noting(self, signum, frame):
        handle(self, signum, frame)
        caught.append(signum)

    def announcing(step: int, *args):
        print(f"STEP {distributed.rank()} {step + 1}", flush=True)
        if step + 1 == wait_at:
            print("WAITING", flush=True)
            while not caught:
                time.sleep(0.01)
        return lr_at(step, *args)

    stopping.StopRequest._handle = noting
    engine.lr_at = announcing


def stall_save_at(step: int) -> None:
    save = torch.save

    def stalling(obj, f, *args, **kwargs):
        if not (isinstance(obj, dict) and obj.get("position", {}).get("step") == step):
            return save(obj, f, *args, **kwargs)
        buf = io.BytesIO()
        save(obj, buf, *args, **kwargs)
        data = buf.getvalue()
        f.write(data[: len(data) // 2])
        f.flush()
        print("STALLED", flush=True)
        time.sleep(600)

    torch.save = stalling


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    out, args = Path(sys.argv[1]), sys.argv[2:]
    if args[:1] == ["--stall-save"]:
        stall_save_at(int(args[1]))
        args = args[2:]
    wait_at = None
    if args[:1] == ["--wait-signal-at"]:
        wait_at, args = int(args[1]), args[2:]
    announce_steps(wait_at)
    if args[:1] == ["--cli"]:
        os.setpgrp()
        sys.exit(cli.main(["train", "synthetic_tiny", "--out", str(out), *args[1:]]))
    net = engine.train(load_config("synthetic_tiny", args), out)
    torch.save(net.state_dict(), out / f"rank{distributed.rank()}.pt")
    distributed.cleanup()
