"""Training under faults: SIGKILLed runs, a kill mid checkpoint write, non-finite
losses and a dying distributed rank. Outcomes feed docs/reliability.md."""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import math
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest
import torch

from _fault_report import record
from tgsemi import checkpoint, engine
from tgsemi.config import load_config
from tgsemi.errors import CheckpointError, NonFiniteLossError

ROOT = Path(__file__).resolve().parents[1]
LAUNCHER = ROOT / "tests" / "_fault_train.py"
TOTAL = 12  # steps in one epoch of the tiny set (synthetic_tiny checkpoints every 2 steps)
ONE_EPOCH = ["train.epochs=1"]
SEED = 7  # the kill points are random, and the same in every run of the suite
STEP_KILLS = 5
WATCHDOG_S = 300  # a launched run that neither ends nor reaches its kill point in this time fails


def tiny(root: Path, *overrides: str):
    return load_config("synthetic_tiny", [f"data.root={root}", *ONE_EPOCH, *overrides])


@pytest.fixture(scope="module")
def reference(tiny_root, tmp_path_factory) -> Path:
    """An uninterrupted run keeping the checkpoint of every step."""
    run = tmp_path_factory.mktemp("reference")
    engine.train(tiny(tiny_root, "train.ckpt_every_steps=1", f"train.keep_last={TOTAL}"), run)
    return run


def weights_at(run: Path, step: int) -> dict[str, torch.Tensor]:
    return checkpoint.load(run / "checkpoints" / f"step_{step:08d}.pt")["model"]


def identical(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], keys=None) -> bool:
    keys = a.keys() if keys is None else keys
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in keys)


def metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def saved_step(run: Path) -> int | None:
    """The step of the run's last checkpoint: 0 if there is none yet, None if it cannot be loaded."""
    last = run / "checkpoints" / checkpoint.LAST
    try:
        return checkpoint.load(last)["position"]["step"] if last.exists() else 0
    except CheckpointError:
        return None


def resumed_at(log: Path) -> list[int]:
    """Steps the engine said it resumed at, in the launcher's stderr."""
    return [int(s) for s in re.findall(r"resuming .* at step (\d+)", log.read_text())]


@contextlib.contextmanager
def launched(run: Path, args: list[str], log: Path, env: dict | None = None) -> Iterator[subprocess.Popen]:
    """tests/_fault_train.py on ``run``; stdout is read by the test, stderr goes to ``log``."""
    with log.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, str(LAUNCHER), str(run), *args],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        )
    watchdog = threading.Timer(WATCHDOG_S, proc.kill)
    watchdog.start()
    try:
        yield proc
    finally:
        watchdog.cancel()
        proc.kill()  # no-op once it has exited
        proc.wait()
        proc.stdout.close()


def wait_for(proc: subprocess.Popen, text: str, log: Path) -> None:
    for line in proc.stdout:
        if line.strip() == text:
            return
    raise AssertionError(f"the run ended (rc {proc.wait()}) before printing {text!r}:\n{log.read_text()[-3000:]}")


def sigkill(proc: subprocess.Popen) -> bool:
    """Kill now; True if it was still running (not finished or crashed on its own)."""
    proc.kill()
    return proc.wait() == -signal.SIGKILL


def loads(path: Path) -> bool:
    try:
        torch.load(path, weights_only=True)
    except Exception:
        return False
    return True


# --- 1. killed runs ------------------------------------------------------------------------------


@pytest.mark.slow
def test_sigkill_at_random_points_resumes_to_identical_weights(tiny_root, reference, tmp_path):
    rng = random.Random(SEED)
    # a kill during step n, after a random fraction of it; from step 3 on a checkpoint exists
    plan = [("step", n, rng.uniform(0, 0.9)) for n in sorted(rng.sample(range(3, TOTAL - 1), STEP_KILLS))]
    plan.insert(rng.randrange(len(plan) + 1), ("save", 0, 0.0))
    run, args = tmp_path / "run", [f"data.root={tiny_root}", *ONE_EPOCH]
    torn = run / "checkpoints" / f".{checkpoint.LAST}.tmp"
    killed, resumed, loadable, write_kill_safe, points = 0, 0, 0, False, []
    for n, (kind, step, delay) in enumerate(plan):
        before, log = saved_step(run), tmp_path / f"launch{n}.log"
        extra = []
        if kind == "save":  # the next checkpoint with an earlier one to fall back on
            step = max((before or 0) + 2, 4)
            extra = ["--stall-save", str(step)]
        with launched(run, extra + args, log) as proc:
            if kind == "save":
                wait_for(proc, "STALLED", log)
            else:  # `delay` is a fraction of a step, timed on the step before: on a fast, idle
                # machine a fixed delay would outlast the whole rest of the run
                target = max(step, (before or 0) + 1)
                step_s = 0.0
                if target > TOTAL:  # the last kill came after the final checkpoint: only validation is left
                    proc.wait()
                elif target - 1 > (before or 0):
                    wait_for(proc, f"STEP 0 {target - 1}", log)
                    t0 = time.monotonic()
                    wait_for(proc, f"STEP 0 {target}", log)
                    step_s = time.monotonic() - t0
                else:
                    wait_for(proc, f"STEP 0 {target}", log)
                delay *= step_s
                time.sleep(delay)
            killed += sigkill(proc)
        resumed += resumed_at(log) == ([before] if before else [])
        loadable += bool(saved_step(run))
        points.append(f"write of step {step}" if kind == "save" else f"step {step} + {delay:.2f} s")
        if kind == "save":  # the kill came mid-write, and the step before is what is on disk
            write_kill_safe = torn.exists() and not loads(torn) and saved_step(run) == step - 2
    finished = []
    for name, expected in (("final", saved_step(run)), ("again", TOTAL)):  # again: a finished job restarted
        log = tmp_path / f"{name}.log"
        with launched(run, args, log) as proc:
            finished.append(proc.wait() == 0)
        resumed += resumed_at(log) == [expected]
    same = all(finished) and identical(checkpoint.load(run)["model"], weights_at(reference, TOTAL))
    lines = metrics(run)
    train_steps = [r["step"] for r in lines if "loss" in r]
    eval_steps = [r["step"] for r in lines if any(k.startswith("val/") for k in r)]
    same_losses = [r["loss"] for r in lines if "loss" in r] == [r["loss"] for r in metrics(reference) if "loss" in r]
    log_ok = train_steps == list(range(1, TOTAL + 1)) and eval_steps == [TOTAL] and same_losses

    restarts = len(plan) + 2
    record(
        "Killed runs",
        f"SIGKILL at {len(plan)} random points of a {TOTAL}-step run "
        f"({'; '.join(points)}), restarting the same command each time, and once more after it finished",
        restarts,
        resumed,
        f"{resumed}/{restarts} restarts resumed from the checkpoint on disk; final weights "
        f"{'bit-identical' if same else 'DIFFERENT'} to an uninterrupted run; metrics.jsonl "
        f"{'has every step once' if log_ok else 'has duplicated, missing or different steps'}",
    )
    record(
        "Killed runs",
        "SIGKILL in the middle of a checkpoint write",
        1,
        int(write_kill_safe),
        "previous checkpoint intact and loadable; the half-written file is never loaded"
        if write_kill_safe
        else "previous checkpoint LOST",
    )
    record(
        "Killed runs",
        "checkpoint on disk after each SIGKILL",
        killed,
        loadable,
        f"{loadable}/{killed} loadable" + (", none half-written" if loadable == killed else ""),
    )
    assert killed == len(plan), "a run ended before its kill point"
    assert loadable == killed and write_kill_safe
    assert resumed == restarts and all(finished), f"{resumed}/{restarts} resumed; finished: {finished}"
    assert same and log_ok, (train_steps, eval_steps)


# --- 4. numerical faults -------------------------------------------------------------------------


def poison(monkeypatch, step: int, term: str, value: float) -> None:
    """Add ``value`` (NaN or inf) to the loss term ``term`` of step ``step`` (1-based, as metrics.jsonl counts)."""
    calls, get_method = itertools.count(1), engine.get_method

    def poisoned(name: str):
        method = get_method(name)

        def loss(*args):
            terms, diag, pseudo = method.loss(*args)
            if next(calls) == step:
                terms[term] = terms[term] + value
            return terms, diag, pseudo

        return dataclasses.replace(method, loss=loss)

    monkeypatch.setattr(engine, "get_method", poisoned)


def test_nan_loss_stops_naming_step_and_term_and_keeps_last_good_checkpoint(
    tiny_root, reference, tmp_path, monkeypatch
):
    poison(monkeypatch, 5, "align", math.nan)
    with pytest.raises(NonFiniteLossError) as err:
        engine.train(tiny(tiny_root), tmp_path)
    named = re.search(r"\bstep 5\b", str(err.value)) is not None and "align" in str(err.value)
    last = checkpoint.load(tmp_path)
    intact = last["position"]["step"] == 4 and identical(last["model"], weights_at(reference, 4))
    record(
        "Numerical faults",
        "NaN in the `align` loss term at step 5",
        1,
        int(named and intact),
        f"run stopped with NonFiniteLossError ({'naming' if named else 'NOT naming'} step and term); "
        f"last good checkpoint (step 4) {'intact' if intact else 'CHANGED'}",
    )
    assert named, str(err.value)
    assert intact


def test_inf_loss_step_is_skipped_when_asked(tiny_root, reference, tmp_path, monkeypatch, caplog):
    poison(monkeypatch, 5, "sup", math.inf)
    net = engine.train(tiny(tiny_root, "train.on_nonfinite=skip", "train.max_steps=5"), tmp_path)
    weights = checkpoint.load(tmp_path)["model"]
    skipped = identical(weights, weights_at(reference, 4), keys=[k for k, _ in net.named_parameters()])
    finite = all(v.isfinite().all() for v in weights.values() if v.is_floating_point())
    warned = any(re.search(r"\bstep 5\b.*sup", r.getMessage()) for r in caplog.records)
    record(
        "Numerical faults",
        "inf in the `sup` loss term at step 5 with train.on_nonfinite=skip",
        1,
        int(skipped and finite and warned),
        "step skipped (weights unchanged by it, all finite), warning names step and term; the run goes on"
        if skipped and finite and warned
        else "NOT skipped cleanly",
    )
    assert skipped and finite
    assert warned
    assert [r["loss"] for r in metrics(tmp_path) if r["step"] == 5 and "loss" in r] == [None]


# --- 5. distributed faults -----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_dead_rank_stops_its_peer_and_every_rank_resumes_at_one_step(tiny_root, tmp_path):
    run, total = tmp_path / "run", 6
    args = [f"data.root={tiny_root}", "train.batch_size=2", f"train.max_steps={total}"]
    kill_at = random.Random(SEED).randrange(3, total)  # a checkpoint (step 2) exists by then

    @contextlib.contextmanager
    def two_ranks(tag: str) -> Iterator[list[tuple[subprocess.Popen, Path]]]:
        env = {"OMP_NUM_THREADS": "1", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port())}
        with contextlib.ExitStack() as stack:
            ranks = []
            for r in range(2):
                log = tmp_path / f"{tag}{r}.log"
                ranks.append(
                    (stack.enter_context(launched(run, args, log, {**env, "RANK": str(r), "LOCAL_RANK": str(r)})), log)
                )
            yield ranks

    with two_ranks("killed") as ranks:
        (rank0, log0), (rank1, log1) = ranks
        wait_for(rank1, f"STEP 1 {kill_at}", log1)
        sigkill(rank1)
        try:  # a hang would last until distributed.setup's 300 s timeout, or forever
            rc0 = rank0.wait(timeout=120)
        except subprocess.TimeoutExpired:
            rc0 = None
    stopped = rc0 not in (None, 0)
    saved = saved_step(run)
    with two_ranks("resumed") as ranks:
        codes = [proc.wait() for proc, _ in ranks]
    steps = [resumed_at(log) for _, log in ranks]
    consistent = (
        codes == [0, 0]
        and bool(saved)
        and steps == [[saved], [saved]]
        and identical(*(torch.load(run / f"rank{r}.pt", weights_only=True) for r in range(2)))
    )
    record(
        "Distributed faults",
        f"2-rank gloo run, rank 1 SIGKILLed at step {kill_at}",
        1,
        int(stopped),
        f"rank 0 exited with an error (rc {rc0}) instead of hanging" if stopped else "rank 0 HUNG or exited 0",
    )
    record(
        "Distributed faults",
        "resume of that run on 2 ranks",
        1,
        int(consistent),
        f"both ranks resumed at step {saved} and ended with identical weights"
        if consistent
        else f"ranks resumed at {steps}, exit codes {codes}",
    )
    assert stopped, log0.read_text()[-3000:]
    assert consistent, (steps, codes, ranks[0][1].read_text()[-3000:])
    assert saved_step(run) == total
