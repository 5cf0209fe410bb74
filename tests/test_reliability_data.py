"""Damaged and hostile data: a share of broken videos and frame folders, lists
that climb out of the data root. Outcomes feed docs/reliability.md."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.io import encode_jpeg

from _fault_report import record
from tgsemi.cli import main as cli
from tgsemi.config import load_config
from tgsemi.data.annotations import PathOutsideRootError, read_list
from tgsemi.data.bad_inputs import BadInputs
from tgsemi.data.build import build_splits
from tgsemi.data.datasets import EvalDataset, LabeledDataset
from tgsemi.data.synth import DAMAGES, corrupt_files
from tgsemi.engine import train

ROOT = Path(__file__).resolve().parents[1]


def copy_of(tiny_root: Path, dest: Path) -> Path:
    shutil.copytree(tiny_root, dest)
    return dest


def to_empty_folder(root: Path, list_name: str, rel: str) -> Path:
    """Replace video ``rel`` by an empty frame folder (a failed frame extraction), in the list too."""
    (root / rel).unlink()
    folder = root / rel.removesuffix(".avi")
    folder.mkdir()
    listing = root / list_name
    listing.write_text(listing.read_text().replace(rel, rel.removesuffix(".avi")))
    return folder


@pytest.fixture(scope="module")
def damaged(tiny_root, tmp_path_factory) -> tuple[Path, set[str], set[str]]:
    """The tiny set with one video of each kind of damage and an empty frame folder
    in each list (7 of 36 inputs); returns the root, the bad paths and the bad test paths."""
    root = copy_of(tiny_root, tmp_path_factory.mktemp("damaged") / "tiny")
    bad = {str(p) for p in corrupt_files(root, len(DAMAGES) / 36, seed=0)}
    cfg = load_config("synthetic_tiny", [f"data.root={root}"])
    # the train folder among the labeled clips, which several DataLoader workers read in an epoch
    rel = next(s.path for s in build_splits(cfg.data, 0).labeled if str(root / s.path) not in bad)
    bad.add(str(to_empty_folder(root, "trainlist01.txt", rel)))
    rel = next(p for p in (root / "testlist01.txt").read_text().split() if str(root / p) not in bad)
    bad.add(str(to_empty_folder(root, "testlist01.txt", rel)))
    return root, bad, bad & {str(root / p) for p in (root / "testlist01.txt").read_text().split()}


# --- 2. damaged data -----------------------------------------------------------------------------


@pytest.mark.slow
def test_damaged_inputs_are_skipped_listed_once_and_counted_at_evaluation(damaged, tmp_path, capsys):
    root, bad, bad_test = damaged
    run = tmp_path / "run"
    # the command line, with DataLoader workers: each epoch and labeled pass forks new ones
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tgsemi.cli",
            "train",
            "synthetic_tiny",
            "--out",
            str(run),
            f"data.root={root}",
            "train.epochs=1",
            "data.num_workers=1",
            "data.max_bad_fraction=0.4",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    warned = re.findall(r"skipping undecodable input (\S+): ", proc.stderr)
    listed = [entry["path"] for entry in json.loads((run / "bad_inputs.json").read_text())]
    val = [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "val/rgb/failed" in r][-1]
    assert cli(["eval", str(run), "--clips", "1", "--crops", "1"]) == 0
    res = json.loads((run / "eval_test_rgb_1x1.json").read_text())
    n_test = len((root / "testlist01.txt").read_text().split())

    once = sorted(warned) == sorted(listed) == sorted(bad)  # the reader rejects every one of these damages
    counted = (
        (val["val/rgb/failed"], val["val/rgb/scored"])
        == (res["failed"], res["scored"])
        == (len(bad_test), n_test - len(bad_test))
    )
    record(
        "Damaged data",
        f"{len(bad)} of 36 inputs damaged ({', '.join(DAMAGES)}, empty frame folders), "
        "train + evaluate with 1 DataLoader worker",
        len(bad),
        len(set(warned) & bad),
        f"training and evaluation completed; {len(set(warned) & bad)}/{len(bad)} bad files listed "
        f"({'each once' if once else 'NOT once each'}) in the log and bad_inputs.json; evaluation reported "
        f"{res['failed']} of {n_test} test videos unscored ({len(bad_test)} damaged)",
    )
    assert once, (warned, listed, sorted(bad))
    assert counted, (val, res)
    assert re.search(rf"\| {res['scored']} \| {res['failed']} \|$", capsys.readouterr().out, re.M)  # eval table


def test_too_many_damaged_inputs_stop_the_run_with_a_clear_error(tiny_root, tmp_path, capsys):
    root = copy_of(tiny_root, tmp_path / "tiny")
    damaged = corrupt_files(root, 0.3, seed=1)
    rc = cli(["train", "synthetic_tiny", "--out", str(tmp_path / "run"), f"data.root={root}", "data.num_workers=1"])
    err = capsys.readouterr().err
    clear = (
        rc == 2
        and "Traceback" not in err
        and re.search(r"^tgsemi train: error: .* could not be decoded \(limit 10%\); first: \S+\.avi", err, re.M)
        is not None
    )
    record(
        "Damaged data",
        f"{len(damaged)} of 36 videos damaged, default limit (10% of the files seen)",
        1,
        int(clear),
        "the run stopped with TooManyBadInputsError naming the share, the limit and the first files"
        if clear
        else "the run did NOT stop with a clear error",
    )
    assert clear, err


def write_frames(folder: Path, count: int) -> None:
    folder.mkdir(parents=True)
    for i in range(count):
        image = torch.from_numpy(np.full((3, 16, 16), 40 * i % 256, dtype=np.uint8))
        (folder / f"img_{i + 1:05d}.jpg").write_bytes(encode_jpeg(image).numpy().tobytes())


def test_empty_and_short_frame_folders_in_a_rawframe_list_are_bad_inputs(tmp_path):
    write_frames(tmp_path / "good", 10)
    (tmp_path / "empty").mkdir()
    write_frames(tmp_path / "short", 3)  # the list says 10
    listing = tmp_path / "frames.txt"
    listing.write_text("good 10 0\nempty 10 1\nempty 0 1\nshort 10 2\n")
    samples = read_list(listing, fmt="rawframes").samples
    bad = BadInputs(max_fraction=1.0)
    common = dict(clip_len=4, frame_interval=2, resize=16, crop=16, bad=bad)
    scored = [EvalDataset(tmp_path, samples, **common)[i]["ok"] for i in range(len(samples))]
    assert scored == [True, False, False, False]
    replaced = LabeledDataset(tmp_path, samples, **common)[(1, 0)]  # the empty folder gives way to a good clip
    assert replaced["label"] == 0 and replaced["rgb"].shape == (3, 4, 16, 16)
    assert sorted(bad.bad) == [str(tmp_path / "empty"), str(tmp_path / "short")]


# --- 3. hostile inputs: paths out of the data root ----------------------------------------------


@pytest.fixture
def escaping_lists(tiny_root, tmp_path) -> tuple[Path, list[str]]:
    """A data root whose train list reaches one video through ``..``; returns the root and the overrides."""
    root = copy_of(tiny_root, tmp_path / "root")
    outside = tmp_path / "outside.avi"
    shutil.copy(next(root.rglob("*.avi")), outside)
    lists = tmp_path / "lists"
    lists.mkdir()
    label = {name: int(i) - 1 for i, name in map(str.split, (root / "classInd.txt").read_text().splitlines())}
    for split in ("train", "test"):  # as 'path label' lists, which may name any path
        paths = [line.split()[0] for line in (root / f"{split}list01.txt").read_text().splitlines()]
        (lists / f"{split}.txt").write_text(
            "".join(f"{p} {label[p.split('/')[0]]}\n" for p in paths)
            + ("../outside.avi 0\n" if split == "train" else "")
        )
    return root, [f"data.root={root}", f"data.train_list={lists / 'train.txt'}", f"data.test_list={lists / 'test.txt'}"]


def test_list_paths_escaping_the_data_root_are_refused(escaping_lists, tmp_path):
    root, overrides = escaping_lists
    with pytest.raises(PathOutsideRootError) as err:
        train(load_config("synthetic_tiny", [*overrides, "train.max_steps=1"]), tmp_path / "run")
    refused = "../outside.avi" in str(err.value) and "allow_outside_root" in str(err.value)
    record(
        "Hostile inputs",
        "a train-list line `../outside.avi` escaping the data root",
        1,
        int(refused),
        "refused at start-up (PathOutsideRootError naming the path and the switch)" if refused else "NOT refused",
    )
    assert refused, str(err.value)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_escaping_paths_are_read_when_explicitly_allowed(escaping_lists):
    _, overrides = escaping_lists
    cfg = load_config("synthetic_tiny", [*overrides, "data.allow_outside_root=true"])
    samples = build_splits(cfg.data, cfg.seed).unlabeled
    assert any(s.path == "../outside.avi" for s in samples)
