"""Red team, runs that must not lose work: a crash in the final validation, a config with no
step to train, SIGINT and SIGTERM, two writers on one run folder, outputs that cannot be written
and a disk that fills up while a checkpoint is saved. Each test asserts the error type, the
culprit named, no traceback from the command line, and that no file is lost or corrupted.
Rows in docs/reliability.md, "Red team: runs that must not lose work"."""

from __future__ import annotations

import builtins
import errno
import io
import json
import os
import re
import signal
from pathlib import Path

import pytest
import torch

import test_reliability_training as rt
from tgsemi import checkpoint, cli, engine
from tgsemi.errors import OutputError

reference = rt.reference  # the uninterrupted run (a checkpoint at every step) the resumed ones must equal
TOTAL, tiny = rt.TOTAL, rt.tiny


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    rc = cli.main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def train_steps(run: Path) -> list[int]:
    return [r["step"] for r in rt.metrics(run) if "loss" in r]


def validations(run: Path) -> list[int]:
    return [r["step"] for r in rt.metrics(run) if any(k.startswith("val/") for k in r)]


# --- the final checkpoint, and what a run claims it saved ------------------------------------------


def test_a_crash_in_the_final_validation_loses_no_training(tiny_root, reference, tmp_path, monkeypatch):
    validate = engine.validate

    def crashing(t):
        raise RuntimeError("a test label outside the class range")

    monkeypatch.setattr(engine, "validate", crashing)  # one epoch: the final validation is the only one
    with pytest.raises(RuntimeError, match="class range"):
        engine.train(tiny(tiny_root), tmp_path)
    assert rt.saved_step(tmp_path) == TOTAL
    saved, trained = checkpoint.load(tmp_path)["model"], rt.weights_at(reference, TOTAL)
    learned = [k for k in saved if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    assert rt.identical(saved, trained, learned)  # every weight trained; the final PreciseBN statistics come later
    assert validations(tmp_path) == []

    monkeypatch.setattr(engine, "validate", validate)  # the cause fixed, the same command validates it
    engine.train(tiny(tiny_root), tmp_path)
    assert validations(tmp_path) == [TOTAL]
    assert train_steps(tmp_path) == list(range(1, TOTAL + 1))
    assert rt.identical(checkpoint.load(tmp_path)["model"], rt.weights_at(reference, TOTAL))
    engine.train(tiny(tiny_root), tmp_path)  # and once validated, a rerun changes nothing
    assert validations(tmp_path) == [TOTAL]


def test_a_config_with_no_step_claims_no_checkpoint_and_one_step_saves_it(tiny_root, tmp_path, capsys):
    common = ["synthetic_tiny", f"data.root={tiny_root}"]
    rc, out, err = run_cli(capsys, "train", *common, "--out", str(tmp_path / "none"), "train.epochs=0.01")
    assert rc == 2 and "final checkpoint" not in out and "Traceback" not in err
    assert not (tmp_path / "none" / "checkpoints" / checkpoint.LAST).exists()

    rc, out, err = run_cli(capsys, "train", *common, "--out", str(tmp_path / "one"), "train.epochs=0.1")
    last = tmp_path / "one" / "checkpoints" / checkpoint.LAST
    assert rc == 0 and str(last) in out, err
    assert checkpoint.load(last)["position"]["step"] == 1  # 0.1 of a 12-step epoch


# --- SIGINT and SIGTERM ------------------------------------------------------------------------------


def stopped_by(sig: signal.Signals, run: Path, args: list[str], log: Path, group: bool) -> int:
    """Launch ``tgsemi train``, send ``sig`` during step 5 (to its process group, as a terminal's
    Ctrl-C, or to the run alone, as ``kill``), check how it ended; returns the step it saved."""
    with rt.launched(run, ["--wait-signal-at", "5", "--cli", *args], log) as proc:
        rt.wait_for(proc, "WAITING", log)
        if group:
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)
        rc = proc.wait()
    err = log.read_text()
    assert rc == 128 + sig, err[-3000:]
    assert "Traceback" not in err
    last_line = err.strip().splitlines()[-1]
    assert last_line.startswith("tgsemi train: ") and sig.name in last_line and "step 5 " in last_line, last_line
    assert not list((run / "checkpoints").glob(".*.tmp"))
    return rt.saved_step(run)


@pytest.mark.slow
def test_sigint_to_the_run_and_its_loader_workers_saves_at_the_step_boundary(tiny_root, tmp_path):
    args = [f"data.root={tiny_root}", *rt.ONE_EPOCH, "data.num_workers=1"]
    assert stopped_by(signal.SIGINT, tmp_path, args, tmp_path / "stopped.log", group=True) == 5


@pytest.mark.slow
def test_sigterm_saves_at_the_step_boundary_and_the_resumed_run_is_bit_identical(tiny_root, reference, tmp_path):
    run, args = tmp_path / "run", [f"data.root={tiny_root}", *rt.ONE_EPOCH]
    assert stopped_by(signal.SIGTERM, run, args, tmp_path / "stopped.log", group=False) == 5  # not a periodic save
    log = tmp_path / "resumed.log"
    with rt.launched(run, ["--cli", *args], log) as proc:
        assert proc.wait() == 0, log.read_text()[-3000:]
    assert rt.resumed_at(log) == [5]
    assert rt.identical(checkpoint.load(run)["model"], rt.weights_at(reference, TOTAL))
    assert train_steps(run) == list(range(1, TOTAL + 1)) and validations(run) == [TOTAL]


# --- one writer per run folder -------------------------------------------------------------------


@pytest.mark.slow
def test_a_second_writer_is_refused_naming_the_holder_and_a_dead_holder_blocks_nobody(tiny_root, tmp_path, capsys):
    run, args = tmp_path / "run", [f"data.root={tiny_root}", *rt.ONE_EPOCH]
    log = tmp_path / "holder.log"
    with rt.launched(run, ["--wait-signal-at", "3", "--cli", *args], log) as holder:
        rt.wait_for(holder, "WAITING", log)
        config, metrics = (run / "config.yaml").read_bytes(), (run / "metrics.jsonl").read_bytes()
        rc, out, err = run_cli(capsys, "train", "synthetic_tiny", "--out", str(run), *args, "train.lr=0.5")
        assert rc == 2 and "Traceback" not in err
        assert re.search(rf"\bprocess {holder.pid}\b", err) and str(run) in err, err
        assert (run / "config.yaml").read_bytes() == config  # the refused writer wrote nothing
        assert (run / "metrics.jsonl").read_bytes() == metrics
        holder.send_signal(signal.SIGTERM)
        assert holder.wait() == 128 + signal.SIGTERM
    assert str(holder.pid) in (run / ".lock").read_text()  # the lock file outlives its dead holder...
    rc, out, err = run_cli(capsys, "train", "synthetic_tiny", "--out", str(run), *args)
    assert rc == 0, err  # ... and blocks nobody: the run resumes and ends
    assert train_steps(run) == list(range(1, TOTAL + 1))


# --- outputs checked before the work starts ----------------------------------------------------


@pytest.mark.parametrize(
    "command, out_is",
    [
        (["train", "synthetic_tiny", "--out", "{file}"], "file"),
        (["robustness", "{run}", "--out", "{file}"], "file"),
        (["report", "{run}", "--out", "{file}"], "file"),
        (["gradcam", "{run}", "test:0", "--out", "{file}/sub"], "file"),
        (["tsne", "{run}", "--out", "{folder}"], "folder"),
        (["eval", "{run}", "--json", "{folder}"], "folder"),
    ],
    ids=lambda v: v if isinstance(v, str) else " ".join(v[:2]),
)
def test_an_output_that_cannot_be_written_is_refused_before_the_work(
    tiny_runs, tmp_path, capsys, monkeypatch, command, out_is
):
    from tgsemi import runs
    from tgsemi.analysis import embedding, gradcam, report, robustness

    def no_work(*args, **kwargs):
        raise AssertionError("the work started before the output was checked")

    for module, name in [
        (runs, "load_run"),
        (robustness, "robustness"),
        (report, "make_report"),
        (gradcam, "gradcam_video"),
        (embedding, "tsne_figure"),
        (engine, "setup"),
    ]:
        monkeypatch.setattr(module, name, no_work)
    file, folder = tmp_path / "taken.txt", tmp_path / "a_folder"
    file.write_text("keep me")
    folder.mkdir()
    argv = [a.format(file=file, folder=folder, run=tiny_runs["fixmatch"]) for a in command]
    rc, out, err = run_cli(capsys, *argv)
    assert rc == 2 and "Traceback" not in err
    assert str(file if out_is == "file" else folder) in err and f"is a {out_is}" in err, err
    assert file.read_text() == "keep me" and not any(folder.iterdir())


def test_an_eval_json_into_a_missing_folder_is_written(tiny_runs, tmp_path, capsys):
    out = tmp_path / "not" / "yet" / "there.json"
    argv = ["eval", str(tiny_runs["fixmatch"]), "--clips", "1", "--crops", "1", "--device", "cpu"]
    rc, stdout, err = run_cli(capsys, *argv, "--json", str(out))
    assert rc == 0, err
    assert "top1" in json.loads(out.read_text())


def test_a_read_only_out_folder_is_refused_naming_it(tiny_root, tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    if os.access(ro, os.W_OK):
        pytest.skip("this user writes into read-only folders (root)")
    rc, out, err = run_cli(capsys, "train", "synthetic_tiny", "--out", str(ro / "run"), f"data.root={tiny_root}")
    assert rc == 2 and str(ro) in err and "Traceback" not in err, err


# --- a full disk, a read-only one ------------------------------------------------------------------


class FillingFile(io.RawIOBase):
    """A file on a disk with ``room`` bytes left: later writes fail with ENOSPC."""

    def __init__(self, f, room: int):
        self.f, self.room = f, room

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return self.f.write(data)


def fail_saving(monkeypatch, step: int, err: int) -> None:
    """The checkpoint of ``step`` fails: ENOSPC half-way through (the serializer turns it into a
    RuntimeError), EROFS or EACCES as the file is renamed into place."""
    if err == errno.ENOSPC:
        save = torch.save

        def filling(obj, f, *args, **kwargs):
            if isinstance(obj, dict) and obj.get("position", {}).get("step") == step:
                f = FillingFile(f, 1000)
            return save(obj, f, *args, **kwargs)

        monkeypatch.setattr(torch, "save", filling)
        return
    replace, calls = os.replace, []

    def failing(src, dst, *args, **kwargs):
        if Path(dst).name == checkpoint.LAST:
            calls.append(dst)
            if len(calls) == step // 2:  # synthetic_tiny saves every 2 steps
                raise OSError(err, os.strerror(err), str(dst))
        return replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", failing)


@pytest.mark.parametrize("err", [errno.ENOSPC, errno.EROFS, errno.EACCES], ids=errno.errorcode.get)
def test_a_failed_checkpoint_write_names_the_file_and_keeps_the_last_good_one(
    tiny_root, reference, tmp_path, monkeypatch, err
):
    fail_saving(monkeypatch, 4, err)
    with pytest.raises(OutputError) as caught:
        engine.train(tiny(tiny_root), tmp_path)
    message = str(caught.value)
    assert str(tmp_path / "checkpoints") in message and os.strerror(err) in message, message
    assert rt.saved_step(tmp_path) == 2
    assert rt.identical(checkpoint.load(tmp_path)["model"], rt.weights_at(reference, 2))
    assert not list((tmp_path / "checkpoints").glob(".*.tmp"))  # no half-written file fills the disk further


def test_a_full_disk_under_the_metrics_log_names_it_and_keeps_the_checkpoint(
    tiny_root, reference, tmp_path, monkeypatch
):
    opened, calls = builtins.open, []

    def full_at_step_5(file, mode="r", *args, **kwargs):
        if Path(str(file)).name == "metrics.jsonl" and "a" in mode:
            calls.append(file)
            if len(calls) == 5:  # synthetic_tiny logs every step
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(file))
        return opened(file, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", full_at_step_5)
    with pytest.raises(OutputError) as caught:
        engine.train(tiny(tiny_root), tmp_path)
    assert str(tmp_path / "metrics.jsonl") in str(caught.value) and "No space left" in str(caught.value)
    assert rt.saved_step(tmp_path) == 4
    assert rt.identical(checkpoint.load(tmp_path)["model"], rt.weights_at(reference, 4))
