"""Which frames a clip uses.

Every index ``i`` returned here has ``i + 1 < num_frames`` so that the temporal
gradient, which needs the *next raw frame*, is always defined. Videos shorter
than a clip loop over their frames instead of failing.
"""

from __future__ import annotations

import numpy as np


def _span(clip_len: int, frame_interval: int) -> int:
    return (clip_len - 1) * frame_interval + 1


def _clip(start: int, num_frames: int, clip_len: int, frame_interval: int) -> np.ndarray:
    usable = max(num_frames - 1, 1)  # last index must have a successor
    return (start + np.arange(clip_len) * frame_interval) % usable


def train_clip_indices(
    num_frames: int, clip_len: int, frame_interval: int, num_clips: int, rng: np.random.Generator
) -> np.ndarray:
    """``(num_clips, clip_len)`` indices: each clip starts at a random offset
    inside its equal share of the video (MMAction2's SampleFrames)."""
    usable = max(num_frames - 1, 1)
    span = _span(clip_len, frame_interval)
    room = usable - span + 1
    if room >= num_clips:
        bounds = np.linspace(0, room, num_clips + 1).astype(int)
        starts = [int(rng.integers(lo, max(hi, lo + 1))) for lo, hi in zip(bounds[:-1], bounds[1:])]
    elif room > 0:
        starts = sorted(int(s) for s in rng.integers(0, room, size=num_clips))
    else:
        starts = [0] * num_clips
    return np.stack([_clip(s, num_frames, clip_len, frame_interval) for s in starts])


def test_clip_indices(num_frames: int, clip_len: int, frame_interval: int, num_clips: int) -> np.ndarray:
    """``(num_clips, clip_len)`` indices: clips spread uniformly, centred in
    their share of the video; deterministic, so evaluation is repeatable."""
    usable = max(num_frames - 1, 1)
    room = max(usable - _span(clip_len, frame_interval) + 1, 1)
    starts = ((np.arange(num_clips) + 0.5) * room / num_clips).astype(int)
    return np.stack([_clip(int(s), num_frames, clip_len, frame_interval) for s in starts])
