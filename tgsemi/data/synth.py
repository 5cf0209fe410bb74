"""A synthetic UCF-101-style action dataset whose classes differ only in motion.

Every class is a way of moving (up, down, rotate, zoom in, approach, ...); the
look of a video (background texture and colours, object shape and colour,
brightness, clutter) is a nuisance. Training flips clips horizontally, so every
class is flip-invariant: "move sideways" picks left or right at random, "rotate"
picks the sense at random.

``appearance_bias`` (off in the presets) mimics the bias of real datasets (the
scene gives the action away): with that probability a *train* clip's static
background takes its class's colours instead of its group's random ones, so an
RGB model can shortcut through the scene on train and fail on test, while the
temporal gradient, blind to what does not move, cannot. ``scene_cue`` (also off)
is the honest version of that bias: with that probability a *group*'s background
takes its class's colours in both splits, so the scene predicts the action on test
too, as on UCF-101, while motion still names the class everywhere (where both are
set, a biased train clip takes the bias's colours). Clips of one group share
background texture, object shape, clutter and palette (UCF's groups share actor
and scene), and train and test use disjoint groups.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np

from tgsemi.errors import ConfigError

PRESETS: dict[str, dict] = {
    "tiny": dict(
        classes=("MoveUp", "MoveDown", "MoveSideways", "Rotate"),
        train_per_class=6,
        test_per_class=3,
        size=(64, 48),
        min_frames=24,
        max_frames=48,
        jitter=1.0,
        clutter=2,
        noise=2.0,
        appearance_bias=0.0,
        scene_cue=0.0,
        speed=1.0,
    ),
    "demo": dict(
        classes=("MoveSideways", "MoveUp", "Rotate", "ZoomIn", "Circle"),
        train_per_class=100,
        test_per_class=40,
        size=(112, 84),
        min_frames=40,
        max_frames=120,
        jitter=0.0,
        clutter=3,
        noise=1.0,
        appearance_bias=0.0,
        scene_cue=0.0,
        speed=2.0,
    ),
}
CLIPS_PER_GROUP = 4
RECIPE = "synth.json"
VERSION = 2  # bumped when the same knobs draw different videos, so that old folders are rebuilt
CENTRE = 0.35  # translating objects stay within this many frame heights of the centre
FPS = 25

# A pose track is an array (objects, T, 4) of centre x, centre y, scale, angle, in
# pixels and radians; sizes and speeds are fractions of the frame height.
Motion = Callable[[np.random.Generator, np.ndarray, int, int], np.ndarray]


def _track(cx, cy, scale, angle, t: np.ndarray) -> np.ndarray:
    return np.stack(np.broadcast_arrays(cx, cy, scale, angle, t)[:4], axis=-1)[None]


def _wrap(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Leave one side of the frame and come back in at the other."""
    return lo + np.mod(x - lo, hi - lo)


def _sawtooth(rng: np.random.Generator, t: np.ndarray) -> np.ndarray:
    """0 -> 1 ramps over 40-80 frames: a motion that restarts, for long videos."""
    return np.mod(t / rng.uniform(40, 80) + rng.random(), 1.0)


def _linear(dx: float, dy: float) -> Motion:
    def motion(rng, t, w, h):
        v = rng.uniform(0.012, 0.02) * h  # 1-2 px a frame at speed 1
        side = rng.choice([-1, 1]) if dx else 0  # sideways: left or right, flip-invariant
        # Wrap inside the central square that a centre crop keeps: wrapping at the frame's
        # edges left it out of the crop for whole clips (demo: 37 % of sideways clips).
        x = _wrap(w / 2 + rng.uniform(-CENTRE, CENTRE) * h + side * v * t, w / 2 - CENTRE * h, w / 2 + CENTRE * h)
        y = _wrap(h / 2 + rng.uniform(-CENTRE, CENTRE) * h + dy * v * t, h / 2 - CENTRE * h, h / 2 + CENTRE * h)
        return _track(x, y, 1.0, rng.uniform(0, np.pi), t)

    return motion


def _rotate(rng, t, w, h):
    spin = rng.choice([-1, 1]) * rng.uniform(0.12, 0.25)  # 7-14 degrees a frame
    return _track(rng.uniform(0.35, 0.65) * w, rng.uniform(0.35, 0.65) * h, 1.2, rng.uniform(0, np.pi) + spin * t, t)


def _zoom(sign: int) -> Motion:
    def motion(rng, t, w, h):
        ramp = _sawtooth(rng, t)
        scale = 0.3 + 2.2 * (ramp if sign > 0 else 1 - ramp)
        return _track(rng.uniform(0.35, 0.65) * w, rng.uniform(0.35, 0.65) * h, scale, rng.uniform(0, np.pi), t)

    return motion


def _bounce(vertical: bool) -> Motion:
    def motion(rng, t, w, h):
        swing = 0.25 * h * np.sin(2 * np.pi * t / rng.uniform(12, 24) + rng.uniform(0, 2 * np.pi))
        x, y = rng.uniform(0.35, 0.65) * w, rng.uniform(0.35, 0.65) * h
        return _track(x + (0 if vertical else swing), y + (swing if vertical else 0), 1.0, rng.uniform(0, np.pi), t)

    return motion


def _pair(sign: int) -> Motion:
    """Two objects approach (sign -1) or separate (+1) along a random axis."""

    def motion(rng, t, w, h):
        ramp = _sawtooth(rng, t)
        axis, cx, cy, a = rng.uniform(0, np.pi), 0.5 * w, 0.5 * h, rng.uniform(0, np.pi)
        widest = 0.8 / max(abs(np.cos(axis)) / w, abs(np.sin(axis)) / h)  # both stay in view
        gap = 0.3 * h + (widest - 0.3 * h) * (ramp if sign > 0 else 1 - ramp)
        return np.concatenate(
            [_track(cx + s * gap / 2 * np.cos(axis), cy + s * gap / 2 * np.sin(axis), 0.8, a, t) for s in (-1, 1)]
        )

    return motion


def _circle(rng, t, w, h):
    phase = rng.uniform(0, 2 * np.pi) + rng.choice([-1, 1]) * rng.uniform(0.12, 0.2) * t
    return _track(0.5 * w + 0.25 * h * np.cos(phase), 0.5 * h + 0.25 * h * np.sin(phase), 1.0, rng.uniform(0, np.pi), t)


MOTIONS: dict[str, Motion] = {
    "MoveUp": _linear(0, -1),
    "MoveDown": _linear(0, 1),
    "MoveSideways": _linear(1, 0),
    "Rotate": _rotate,
    "ZoomIn": _zoom(1),
    "ZoomOut": _zoom(-1),
    "BounceVertical": _bounce(True),
    "BounceSideways": _bounce(False),
    "Approach": _pair(-1),
    "Separate": _pair(1),
    "Circle": _circle,
}

# Each shape's "radius" r(u, v): < 1 inside, with u, v in object units. All are
# elongated or pointed so that rotation is visible.
SHAPES: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "ellipse": lambda u, v: np.hypot(u, v / 0.5),
    "bar": lambda u, v: np.maximum(np.abs(u), np.abs(v) / 0.4),
    "diamond": lambda u, v: np.abs(u) + np.abs(v) / 0.5,
    "cross": lambda u, v: np.minimum(np.maximum(np.abs(u), np.abs(v) / 0.3), np.maximum(np.abs(u) / 0.3, np.abs(v))),
    "triangle": lambda u, v: np.max(
        [(u * np.cos(a) + v * np.sin(a)) / 0.5 for a in (0, 2 * np.pi / 3, 4 * np.pi / 3)], axis=0
    ),
}


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    k = np.mod(np.array([5.0, 3.0, 1.0]) + 6 * h, 6)
    return 255 * v * (1 - s * np.clip(np.minimum(k, 4 - k), 0, 1))


def _palette(rng: np.random.Generator, hue: float) -> np.ndarray:
    """Background dark/light colours and a contrasting object colour for one hue."""
    s = rng.uniform(0.4, 0.7)
    return np.stack(
        [
            _hsv(hue, s, rng.uniform(0.3, 0.45)),
            _hsv(hue + 0.06, s, rng.uniform(0.55, 0.7)),
            _hsv(hue + 0.5, rng.uniform(0.7, 0.9), rng.uniform(0.85, 1.0)),
        ]
    )


def _draw(frames: np.ndarray, track: np.ndarray, shape: str, radius: float, colour) -> None:
    """Paint anti-aliased objects ``track`` (objects, T, 4) onto ``frames`` (T, H, W, 3).

    Only a box around each object is evaluated: drawing on whole frames made
    rendering ten times slower.
    """
    n, h, w, _ = frames.shape
    colour = np.asarray(colour, np.float32)
    for cx, cy, scale, angle in track.astype(np.float32).transpose(0, 2, 1):
        size = (radius * scale)[:, None, None]
        box = np.arange(-math.ceil(size.max()) - 1, math.ceil(size.max()) + 2)
        ys, xs = np.floor(cy).astype(int)[:, None] + box, np.floor(cx).astype(int)[:, None] + box
        dy, dx = (ys - cy[:, None])[:, :, None], (xs - cx[:, None])[:, None, :]
        c, s = np.cos(angle)[:, None, None], np.sin(angle)[:, None, None]
        r = SHAPES[shape]((c * dx + s * dy) / size, (c * dy - s * dx) / size)
        alpha = np.clip(0.5 + (1 - r) * size / 2, 0, 1)
        t, y, x = np.broadcast_arrays(np.arange(n)[:, None, None], ys[:, :, None], xs[:, None, :])
        keep = (alpha > 0) & (y >= 0) & (y < h) & (x >= 0) & (x < w)
        t, y, x, a = t[keep], y[keep], x[keep], alpha[keep][:, None]
        frames[t, y, x] += a * (colour - frames[t, y, x])


def _texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Three random sine gratings, 0..1: a static, structured background."""
    ys, xs = np.mgrid[:h, :w]
    angles, freqs = rng.uniform(0, np.pi, 3), rng.uniform(0.03, 0.15, 3)
    phases = rng.uniform(0, 2 * np.pi, 3)
    waves = [np.sin(2 * np.pi * f * (xs * np.cos(a) + ys * np.sin(a)) + p) for a, f, p in zip(angles, freqs, phases)]
    return 0.5 + np.mean(waves, axis=0) / 2


def _distractor(rng: np.random.Generator, w: int, h: int) -> tuple:
    """A clutter shape: kind, radius, colour, start (x, y), angle, drift (px/frame; half static)."""
    colour = _hsv(rng.random(), rng.uniform(0.2, 0.6), rng.uniform(0.3, 0.9))
    return (
        rng.choice(list(SHAPES)),
        rng.uniform(0.06, 0.12) * h,
        colour,
        rng.uniform(0, 1, 2) * (w, h),
        rng.uniform(0, np.pi),
        rng.uniform(-0.3, 0.3, 2) * (rng.random() < 0.5),
    )


def render_clip(
    motion: str,
    scene_rng: np.random.Generator,
    clip_rng: np.random.Generator,
    palette: np.ndarray | None,
    frames: int,
    size: tuple[int, int],
    jitter: float,
    clutter: int,
    noise: float,
    speed: float = 1.0,
) -> np.ndarray:
    """One clip as uint8 ``(frames, H, W, 3)``.

    ``scene_rng`` draws what a group shares (texture, shapes, clutter, palette),
    ``clip_rng`` the motion, camera sway, brightness and noise; ``palette``
    replaces the group's background colours when given (the object keeps its own).
    """
    w, h = size
    t = np.arange(frames, dtype=np.float32)
    margin = math.ceil(jitter)
    texture = _texture(scene_rng, h + 2 * margin, w + 2 * margin)[..., None]
    shape = scene_rng.choice(list(SHAPES))
    group_palette = _palette(scene_rng, scene_rng.random())
    distractors = [_distractor(scene_rng, w, h) for _ in range(clutter)]
    radius = scene_rng.uniform(0.12, 0.18) * h
    scene = group_palette if palette is None else palette

    # The camera sways by up to `jitter` pixels; everything moves with it.
    sway = np.rint(
        jitter * np.sin(2 * np.pi * t[:, None] / clip_rng.uniform(20, 60, 2) + clip_rng.uniform(0, 2 * np.pi, 2))
    ).astype(int)
    background = (scene[0] + (scene[1] - scene[0]) * texture).astype(np.float32)
    views = np.lib.stride_tricks.sliding_window_view(background, (h, w), axis=(0, 1))
    video = views[margin + sway[:, 1], margin + sway[:, 0]].transpose(0, 2, 3, 1).copy()
    for kind, size_px, colour, (x0, y0), angle, (vx, vy) in distractors:
        x = _wrap(x0 + vx * t, -size_px, w + size_px) + sway[:, 0]
        y = _wrap(y0 + vy * t, -size_px, h + size_px) + sway[:, 1]
        _draw(video, _track(x, y, 1.0, angle, t), kind, size_px, colour)
    track = MOTIONS[motion](clip_rng, speed * t, w, h)  # speed: the motion's clock runs faster
    track[..., :2] += sway
    _draw(video, track, shape, radius, group_palette[2])
    video *= clip_rng.uniform(0.7, 1.25)  # brightness
    video += noise * clip_rng.standard_normal((frames, h, w, 1), dtype=np.float32) + 0.5
    return np.clip(video, 0, 255, out=video).astype(np.uint8)  # +0.5 then truncate: rounds


def write_video(
    path: str | Path, frames: np.ndarray, fps: int = FPS, gop: int = 12, bits_per_pixel: float = 0.7
) -> None:
    """Write uint8 ``(T, H, W, 3)`` RGB as XviD-tagged MPEG-4 Part 2 .avi, like UCF-101.

    The bit rate is set from ``bits_per_pixel`` (UCF-101 averages about 0.3) because
    FFmpeg's default starves small frames into blocks within a few frames.
    """
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.codec_tag = "XVID"
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        stream.gop_size = gop
        stream.max_b_frames = 0
        stream.bit_rate = round(bits_per_pixel * frames.shape[1] * frames.shape[2] * fps)
        stream.codec_context.thread_count = 1  # deterministic output
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())


def make_dataset(out: str | Path, preset: str = "tiny", seed: int = 0, **knobs) -> Path:
    """Write the dataset under ``out`` (UCF-101 layout and split files); returns ``out``.

    Knobs (defaults from ``PRESETS[preset]``): classes (motion names), train_per_class,
    test_per_class, size (W, H), min_frames, max_frames, jitter (camera sway, px),
    clutter (distractor shapes), noise (pixel std), appearance_bias (0..1), scene_cue (0..1),
    speed (how fast the class motions run, 1 = 1-2 px a frame at 84 px high).
    """
    if preset not in PRESETS:
        raise ConfigError(f"unknown synth preset {preset!r}; choose one of {list(PRESETS)}")
    unknown = set(knobs) - set(PRESETS[preset])
    if unknown:
        raise ConfigError(f"unknown synth knobs {sorted(unknown)}; known: {sorted(PRESETS[preset])}")
    k = {**PRESETS[preset], **knobs}
    w, h = k["size"]
    if w % 2 or h % 2:
        raise ConfigError(f"synth size {k['size']} must be even (MPEG-4 4:2:0)")
    classes = list(k["classes"])
    if not classes or len(set(classes)) != len(classes) or not set(classes) <= set(MOTIONS):
        raise ConfigError(f"classes must be distinct motions out of {list(MOTIONS)}, got {classes}")
    if not k["speed"] > 0:
        raise ConfigError(f"speed must be > 0, got {k['speed']}")
    for knob in ("appearance_bias", "scene_cue"):
        if not 0 <= k[knob] <= 1:
            raise ConfigError(f"{knob} must be in 0..1, got {k[knob]}")
    if not 2 <= k["min_frames"] <= k["max_frames"]:
        raise ConfigError(f"need 2 <= min_frames <= max_frames, got {k['min_frames']}..{k['max_frames']}")

    out = Path(out)
    class_hues = np.random.default_rng([seed]).permutation(len(classes)) / len(classes)
    test_groups = math.ceil(k["test_per_class"] / CLIPS_PER_GROUP)
    lines: dict[str, list[str]] = {"train": [], "test": []}
    for label, name in enumerate(classes):
        (out / name).mkdir(parents=True, exist_ok=True)
        for split, count, first_group in (
            ("test", k["test_per_class"], 1),
            ("train", k["train_per_class"], test_groups + 1),
        ):
            for n in range(count):
                group, clip = first_group + n // CLIPS_PER_GROUP, 1 + n % CLIPS_PER_GROUP
                clip_rng = np.random.default_rng([seed, label, group, clip])
                cue_rng = np.random.default_rng([seed, label, group, 0])  # clip 0: the group's own
                palette = None
                if cue_rng.random() < k["scene_cue"]:
                    palette = _palette(cue_rng, class_hues[label] + cue_rng.uniform(-0.05, 0.05))
                if split == "train" and clip_rng.random() < k["appearance_bias"]:
                    palette = _palette(clip_rng, class_hues[label] + clip_rng.uniform(-0.02, 0.02))
                length = int(clip_rng.integers(k["min_frames"], k["max_frames"] + 1))
                scene_rng = np.random.default_rng([seed, label, group])
                video = render_clip(
                    name,
                    scene_rng,
                    clip_rng,
                    palette,
                    length,
                    (w, h),
                    k["jitter"],
                    k["clutter"],
                    k["noise"],
                    k["speed"],
                )
                rel = f"{name}/v_{name}_g{group:02d}_c{clip:02d}.avi"
                write_video(out / rel, video)
                lines[split].append(f"{rel} {label + 1}" if split == "train" else rel)
    (out / "classInd.txt").write_text("".join(f"{i + 1} {c}\n" for i, c in enumerate(classes)))
    for split in lines:
        (out / f"{split}list01.txt").write_text("".join(f"{line}\n" for line in lines[split]))
    (out / RECIPE).write_text(json.dumps(recipe(preset, seed, **knobs), indent=1))
    return out


def recipe(preset: str, seed: int = 0, **knobs) -> dict:
    """What a dataset was made from, as ``make_dataset`` records it in ``RECIPE``: lets a
    caller tell a data folder built by an older preset or ``VERSION`` from a current one."""
    k = {"preset": preset, "version": VERSION, "seed": seed, **PRESETS[preset], **knobs}
    return json.loads(json.dumps(k))  # tuples -> lists, as read back


def _png_bytes(rng: np.random.Generator) -> bytes:
    import torch
    from torchvision.io import encode_png

    image = torch.from_numpy(rng.integers(0, 256, (3, 16, 16), dtype=np.uint8))
    return encode_png(image).numpy().tobytes()


def _overwrite_middle(data: bytes, rng: np.random.Generator) -> bytes:
    """Random bytes over 5% (at least 256 bytes) of the middle: the stream stays parseable."""
    n, mid = max(256, len(data) // 20), len(data) // 2
    return data[:mid] + rng.integers(0, 256, n, dtype=np.uint8).tobytes() + data[mid + n :]


# Ways a downloaded video goes bad: each maps the file's bytes to the damaged bytes.
DAMAGES: dict[str, Callable[[bytes, np.random.Generator], bytes]] = {
    "zero_byte": lambda data, rng: b"",
    "truncated": lambda data, rng: data[: len(data) * 2 // 5],
    "overwritten": lambda data, rng: _overwrite_middle(data, rng),
    "png_renamed": lambda data, rng: _png_bytes(rng),
    "text_renamed": lambda data, rng: b"404 Not Found\n",
}


def corrupt_files(root: str | Path, fraction: float, seed: int = 0) -> list[Path]:
    """Damage ``fraction`` of the .avi files under ``root`` in place, cycling
    through ``DAMAGES``; returns the damaged paths in the order damaged."""
    videos = sorted(Path(root).rglob("*.avi"))
    rng = np.random.default_rng(seed)
    chosen = sorted(rng.choice(len(videos), round(fraction * len(videos)), replace=False))
    damages = list(DAMAGES.values())
    for n, i in enumerate(chosen):
        videos[i].write_bytes(damages[n % len(damages)](videos[i].read_bytes(), rng))
    return [videos[i] for i in chosen]
