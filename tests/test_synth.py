"""Synthetic motion-defined dataset: layout, determinism, motion, appearance bias, scene cue, damage."""

import json
import re
from pathlib import Path

import numpy as np
import pytest

from tgsemi.cli import main as cli
from tgsemi.config import load_config
from tgsemi.data.synth import MOTIONS, PRESETS, RECIPE, corrupt_files, make_dataset, recipe, render_clip
from tgsemi.data.video import num_frames, read_frames
from tgsemi.errors import ConfigError, VideoReadError

LINE = re.compile(r"^(\w+)/v_(\w+)_g(\d\d)_c(\d\d)\.avi$")


def _lists(root: Path) -> tuple[list[str], list[tuple[str, int]], list[str]]:
    classes = []
    for n, line in enumerate((root / "classInd.txt").read_text().splitlines(), 1):
        number, name = line.split(" ")
        assert int(number) == n
        classes.append(name)
    train = [
        (path, int(label))
        for path, label in (line.split(" ") for line in (root / "trainlist01.txt").read_text().splitlines())
    ]
    test = (root / "testlist01.txt").read_text().splitlines()
    return classes, train, test


def test_layout_and_split_files_follow_ucf101(tiny_root):
    classes, train, test = _lists(tiny_root)
    assert len(classes) == 4
    train_groups, test_groups = set(), set()
    for path, label in train:
        folder, name, group, _ = LINE.match(path).groups()
        assert folder == name == classes[label - 1]  # 1-based label of the folder's class
        train_groups.add((name, group))
    for path in test:
        folder, name, group, _ = LINE.match(path).groups()  # no label on test lines
        assert folder == name
        test_groups.add((name, group))
    assert sorted(label for _, label in train) == sorted([1, 2, 3, 4] * 6)
    assert {LINE.match(p).group(1) for p in test} == set(classes) and len(test) == 4 * 3
    assert not train_groups & test_groups
    on_disk = sorted(str(p.relative_to(tiny_root)) for p in tiny_root.rglob("*.avi"))
    assert on_disk == sorted([p for p, _ in train] + test)


def test_videos_decode_with_varying_lengths(tiny_root):
    _, train, test = _lists(tiny_root)
    lengths = []
    for path in [p for p, _ in train] + test:
        n = num_frames(tiny_root / path)
        frames = read_frames(tiny_root / path, [0, n - 1])
        assert frames.shape == (2, 48, 64, 3)
        lengths.append(n)
    assert min(lengths) >= 24 and max(lengths) <= 48 and len(set(lengths)) > 5


def test_same_seed_same_videos_other_seed_other_videos(tiny_root, tmp_path):
    again = make_dataset(tmp_path / "again", "tiny", seed=0)
    other = make_dataset(tmp_path / "other", "tiny", seed=1)
    for video in sorted(tiny_root.rglob("*.avi"))[::5]:
        rel = video.relative_to(tiny_root)
        n = num_frames(video)
        assert num_frames(again / rel) == n
        np.testing.assert_array_equal(read_frames(video, range(n)), read_frames(again / rel, range(n)))
        assert not np.array_equal(read_frames(video, [0]), read_frames(other / rel, [0]))


def _speed(track: np.ndarray, radius: float) -> float:
    """Median speed (px/frame) of an object's outline: translation, spin and growth."""
    cx, cy, scale, angle = np.moveaxis(track, -1, 0)
    moved = np.hypot(np.diff(cx), np.diff(cy))
    moved = np.where(moved > radius, 0, moved)  # wrap-around and restarts are no motion
    return float(np.median(moved + radius * scale[1:] * np.abs(np.diff(angle)) + radius * np.abs(np.diff(scale))))


@pytest.mark.parametrize("motion", list(MOTIONS))
def test_motion_is_visible_and_unchanged_by_horizontal_flip(motion):
    """Training flips clips: a class must include each motion's mirror image as
    often as the motion itself (left and right, clockwise and counter-clockwise)."""
    w, h, t = 112, 84, np.arange(64.0)
    horizontal, spin = [], []
    for seed in range(300):
        track = MOTIONS[motion](np.random.default_rng(seed), t, w, h)
        # a quarter pixel a frame still moves anti-aliased edges (TG != 127); the motions are
        # slow on purpose so that objects stay in view over a 8 x 2-frame training clip
        assert _speed(track[0], 0.12 * h) > 0.25
        steps = np.diff(track[..., [0, 3]], axis=1)
        horizontal.append(np.median(steps[..., 0]))
        spin.append(np.median(steps[..., 1]))
    for signed in (np.array(horizontal), np.array(spin)):
        assert abs(signed.mean()) <= 0.2 * np.abs(signed).mean() + 1e-9


@pytest.mark.parametrize("motion", PRESETS["demo"]["classes"])
def test_object_stays_in_the_centre_crop(motion):
    """Evaluation sees a centre square of crop / resize frame heights (synthetic_cpu: 48 of 64):
    an object outside it for a whole clip would leave that clip without its class."""
    data = load_config("synthetic_cpu").data
    half = data.crop / data.resize / 2
    (w, h), t = PRESETS["demo"]["size"], PRESETS["demo"]["speed"] * np.arange(PRESETS["demo"]["max_frames"])
    for seed in range(100):
        x, y = MOTIONS[motion](np.random.default_rng(seed), t, w, h)[..., :2].transpose(2, 0, 1)
        assert np.all(np.abs(x - w / 2) < half * h) and np.all(np.abs(y - h / 2) < half * h)


def _mean_colours(root: Path, paths: list[str]) -> np.ndarray:
    """Chromaticity of frame 0: colour with brightness divided out."""
    means = np.stack([read_frames(root / p, [0])[0].mean(axis=(0, 1)) for p in paths])
    return means / means.sum(axis=1, keepdims=True)


def _nearest_centroid(centroids: np.ndarray, colours: np.ndarray) -> np.ndarray:
    return np.linalg.norm(colours[:, None] - centroids[None], axis=2).argmin(axis=1)


def _colours(root: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """0-based labels and colours of the train clips, then of the test clips."""
    classes, train, test = _lists(root)
    train_labels = np.array([label - 1 for _, label in train])
    test_labels = np.array([classes.index(LINE.match(p).group(1)) for p in test])
    return train_labels, _mean_colours(root, [p for p, _ in train]), test_labels, _mean_colours(root, test)


def _centroid_rule_accuracy(
    train_labels: np.ndarray, train_colours: np.ndarray, labels: np.ndarray, colours: np.ndarray
) -> float:
    """Accuracy on (labels, colours) of the nearest train class-centroid colour rule."""
    centroids = np.stack([train_colours[train_labels == c].mean(0) for c in np.unique(train_labels)])
    return float((_nearest_centroid(centroids, colours) == labels).mean())


def test_appearance_bias_ties_train_colour_to_class_but_not_test(tmp_path):
    root = make_dataset(tmp_path, "tiny", seed=0, appearance_bias=1.0, test_per_class=8)
    train_labels, train_colours, test_labels, test_colours = _colours(root)
    # Leave-one-out nearest class centroid on train: colour alone names the class.
    hits = 0
    for i in range(len(train_labels)):
        rest = np.arange(len(train_labels)) != i
        hits += _centroid_rule_accuracy(
            train_labels[rest], train_colours[rest], train_labels[i : i + 1], train_colours[i : i + 1]
        )
    assert hits / len(train_labels) >= 0.9
    # The same rule on test is no better than a coin: test colours are random.
    assert _centroid_rule_accuracy(train_labels, train_colours, test_labels, test_colours) <= 0.5


def test_scene_cue_ties_colour_to_class_on_test_too(tmp_path):
    assert cli(["synth", str(tmp_path / "cue"), "--scene-cue", "1"]) == 0
    assert _centroid_rule_accuracy(*_colours(tmp_path / "cue")) >= 0.9
    assert _centroid_rule_accuracy(*_colours(make_dataset(tmp_path / "none", "tiny", test_per_class=8))) <= 0.5


def test_speed_runs_the_motion_clock_faster():
    """Frame k at speed 2 is frame 2k at speed 1 (same draws; no sway or noise)."""

    def clip(speed: float, frames: int) -> np.ndarray:
        rng = [np.random.default_rng(s) for s in (5, 6)]
        return render_clip("Rotate", *rng, None, frames, (112, 84), 0.0, 0, 0.0, speed)

    fast, slow = clip(2.0, 12), clip(1.0, 24)
    np.testing.assert_array_equal(fast, slow[::2])
    assert not np.array_equal(fast, slow[:12])


def test_bad_knobs_raise_config_error(tmp_path):
    for knobs in (
        {"preset": "huge"},
        {"colour": 3},
        {"size": (63, 48)},
        {"classes": ("Fly",)},
        {"classes": ("Rotate", "Rotate")},
        {"classes": ()},
        {"speed": 0},
        {"appearance_bias": 1.5},
        {"scene_cue": -0.1},
        {"min_frames": 50, "max_frames": 40},
    ):
        with pytest.raises(ConfigError):
            make_dataset(tmp_path, **knobs)


def test_corrupt_files_damages_a_share_that_then_fails_to_read(tmp_path):
    root = make_dataset(tmp_path, "tiny", seed=0)
    videos = sorted(root.rglob("*.avi"))
    before = {p: (p.read_bytes(), num_frames(p)) for p in videos}
    damaged = corrupt_files(root, fraction=0.5, seed=3)
    assert len(damaged) == len(set(damaged)) == round(0.5 * len(videos))
    for path in videos:
        data, frames = before[path]
        if path in damaged:
            assert path.read_bytes() != data
            with pytest.raises(VideoReadError, match=re.escape(str(path))):
                read_frames(path, range(frames))
        else:
            assert path.read_bytes() == data


def test_demo_data_is_rebuilt_only_when_its_recipe_changed(tmp_path, capsys):
    from tgsemi.demo import ensure_data

    root = ensure_data(tmp_path / "d", "tiny")
    assert json.loads((root / RECIPE).read_text()) == recipe("tiny")
    video = next(root.rglob("*.avi"))
    stamp = video.stat().st_mtime_ns
    capsys.readouterr()
    ensure_data(root, "tiny")
    assert video.stat().st_mtime_ns == stamp and "building" not in capsys.readouterr().out
    (root / RECIPE).write_text(json.dumps(recipe("tiny", speed=3.0)))  # made by another preset version
    ensure_data(root, "tiny")
    assert "building" in capsys.readouterr().out
    assert json.loads((root / RECIPE).read_text()) == recipe("tiny")
