"""``tgsemi check-data``: every list and file a config names, checked before training reads them."""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from pathlib import Path

import av
import numpy as np
import pytest

from tgsemi.cli import main as run_cli
from tgsemi.data.annotations import Sample, write_list


def check(capsys, *args: str) -> tuple[int, str, str]:
    rc = run_cli(["check-data", "synthetic_tiny", *args])
    out = capsys.readouterr()
    return rc, out.out, out.err


def ucf_lines(path: Path) -> list[tuple[str, str]]:
    """(path, class folder) of each line of a UCF-101 list, read here without tgsemi."""
    return [(line.split()[0], line.split("/")[0]) for line in path.read_text().splitlines() if line.strip()]


def test_a_clean_dataset_passes_with_its_counts(tmp_path, tiny_root, capsys):
    report_path = tmp_path / "report.json"
    rc, out, err = check(capsys, f"data.root={tiny_root}", "--json", str(report_path))
    assert rc == 0, err
    report = json.loads(report_path.read_text())
    assert report["errors"] == []
    train, test = ucf_lines(tiny_root / "trainlist01.txt"), ucf_lines(tiny_root / "testlist01.txt")
    assert report["files_checked"] == len({p for p, _ in train + test})
    for name, lines in (("train", train), ("test", test)):
        split = report["splits"][name]
        assert split["clips"] == len(lines)
        assert split["per_class"] == dict(Counter(folder for _, folder in lines))
        assert 24 <= split["frames"]["min"] <= split["frames"]["max"] <= 48  # the tiny preset's lengths
    assert report["splits"]["labeled"]["clips"] == len(train) // 2  # labeled_fraction 0.5
    assert f"| train | {len(train)} |" in out


def write_video(path: Path, frames: int) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(frames):
            image = np.full((48, 64, 3), 40 * i % 255, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.fixture
def damaged(tmp_path, tiny_root) -> tuple[Path, list[str], dict[str, str]]:
    """A copy of the tiny set with one damage of each kind; returns its root, overrides and the clip
    each finding must name."""
    root = tmp_path / "data"
    shutil.copytree(tiny_root, root)
    lists = tmp_path / "lists"  # 0-based video lists, away from classInd.txt
    lists.mkdir()
    train = [
        Sample(p, ["MoveUp", "MoveDown", "MoveSideways", "Rotate"].index(c))
        for p, c in ucf_lines(root / "trainlist01.txt")
    ]
    test = [Sample(p, train[0].label) for p, _ in ucf_lines(root / "testlist01.txt")]
    (root / train[0].path).write_bytes(b"")  # zero bytes
    write_video(root / "MoveUp" / "one_frame.avi", 1)
    outside = write_video(tmp_path / "elsewhere.avi", 30)
    os.symlink(outside, root / "MoveUp" / "link.avi")
    extra = [Sample("MoveUp/one_frame.avi", 0), Sample("MoveUp/link.avi", 0)]
    conflict = Sample(train[1].path, (train[1].label + 1) % 4)
    write_list(lists / "train.txt", train + extra + [train[2], conflict, test[0]], "video")
    write_list(lists / "test.txt", test, "video")
    overrides = [f"data.root={root}", f"data.train_list={lists / 'train.txt'}", f"data.test_list={lists / 'test.txt'}"]
    culprits = {
        "unreadable files": train[0].path,
        "symlinks": "MoveUp/link.avi",
        "duplicates": train[2].path,
        "conflicting labels": train[1].path,
        "train/test overlap": test[0].path,
    }
    return root, overrides, culprits


def test_each_kind_of_damage_is_an_error_naming_its_clip(tmp_path, damaged, capsys):
    _, overrides, culprits = damaged
    report_path = tmp_path / "report.json"
    rc, out, err = check(capsys, *overrides, "--json", str(report_path), "--workers", "2")
    assert rc == 2
    assert "error(s) in the data" in err.strip().splitlines()[-1] and "Traceback" not in err  # after the bar
    report = json.loads(report_path.read_text())
    found = {e["check"]: e for e in report["errors"]}
    for kind, clip in culprits.items():
        assert kind in found, (kind, list(found))
        assert any(clip in item for item in found[kind]["items"]), (kind, found[kind]["items"])
    assert any("one_frame.avi" in item for item in found["unreadable files"]["items"])
    assert "MoveUp/link.avi" in out  # the terminal names them too


def test_symlinks_out_of_the_root_are_warnings_when_allowed(tmp_path, damaged, capsys):
    _, overrides, _ = damaged
    report_path = tmp_path / "report.json"
    check(capsys, *overrides, "data.allow_outside_root=true", "--json", str(report_path))
    report = json.loads(report_path.read_text())
    assert "symlinks" in {w["check"] for w in report["warnings"]}
    assert "symlinks" not in {e["check"] for e in report["errors"]}


def test_missing_files_are_reported_and_the_rest_still_checked(tmp_path, tiny_root, capsys):
    root = tmp_path / "data"
    shutil.copytree(tiny_root, root)
    gone = ucf_lines(root / "trainlist01.txt")[3][0]
    (root / gone).unlink()
    report_path = tmp_path / "report.json"
    rc, _, _ = check(capsys, f"data.root={root}", "--json", str(report_path))
    report = json.loads(report_path.read_text())
    assert rc == 2 and gone in report["errors"][0]["message"]
    assert (
        report["files_checked"]
        == len(ucf_lines(root / "trainlist01.txt")) + len(ucf_lines(root / "testlist01.txt")) - 1
    )


def test_a_list_that_cannot_be_read_is_one_error(tmp_path, tiny_root, capsys):
    bad = tmp_path / "train.txt"
    bad.write_text("a.avi 1\nb.avi one\n")
    rc, out, err = check(capsys, f"data.root={tiny_root}", f"data.train_list={bad}")
    assert rc == 2 and "Traceback" not in err
    assert f"{bad}:2" in out  # the list's own error, at its line
