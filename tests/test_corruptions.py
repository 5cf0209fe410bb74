"""The Mini Kinetics-C and Schiappa et al. corruptions: deterministic, shape-keeping, and
doing what they say on tiny clips; temporal ones act on the video the TG is taken from."""

from functools import partial

import numpy as np
import pytest
from PIL import Image

from test_analysis import moving_pattern
from tgsemi.analysis.corruptions import (
    CORRUPTIONS,
    MINI_KINETICS_C,
    NO_SEVERITY,
    SCHIAPPA,
    SEVERITIES,
    SUITES,
    TITLES,
    corrupt,
)
from tgsemi.data.annotations import Sample
from tgsemi.data.datasets import EvalDataset, intra_op_threads
from tgsemi.data.transforms import MEAN, STD

NEW = list(dict.fromkeys(MINI_KINETICS_C + SCHIAPPA))
# distortion grows with severity on a moving pattern; the others are tested below
GROWING = [
    "shot_noise_mkc",
    "motion_blur_mkc",
    "rain",
    "fog",
    "contrast_mkc",
    "brightness_mkc",
    "h264_crf",
    "h265_crf",
    "gaussian_noise_sch",
    "shot_noise_sch",
    "impulse_noise",
    "speckle_noise",
    "defocus_blur",
    "motion_blur_sch",
    "zoom_blur",
    "translate",
    "rotate",
    "static_rotate",
]
PER_VIDEO = [
    "fog",
    "contrast_mkc",
    "brightness_mkc",
    "saturate",
    "defocus_blur",
    "motion_blur_sch",
    "zoom_blur",
    "translate",
    "static_rotate",
]


@pytest.fixture(autouse=True)
def one_thread():
    """Corruptions run where items are built: on one intra-op thread."""
    with intra_op_threads(1):
        yield


def numbered(n: int) -> np.ndarray:
    """Frames whose every value is their index: the output tells which frame it shows."""
    return np.broadcast_to(np.arange(n, dtype=np.uint8)[:, None, None, None], (n, 2, 2, 3)).copy()


def sources(name: str, severity: int, n: int = 64, seed: int = 0) -> np.ndarray:
    """For each output frame of a temporal corruption, the input frame it shows."""
    out = corrupt(numbered(n), name, severity, np.random.default_rng(seed))
    assert (out == out[:, :1, :1, :1]).all(), "frames are shown whole, not mixed"
    return out[:, 0, 0, 0].astype(int)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255**2 / np.mean((a.astype(float) - b) ** 2)))


def test_every_suite_name_is_a_titled_corruption():
    assert set(NEW) <= set(CORRUPTIONS) and all(n in TITLES for s in SUITES.values() for n in s)
    assert len(MINI_KINETICS_C) == 12 and len(SCHIAPPA) == 16


@pytest.mark.parametrize("name", NEW)
def test_deterministic_for_a_seed_and_keeps_shape_and_dtype(name):
    frames = moving_pattern(6, 18, 22)  # smaller than the codecs take: they pad and crop
    for s in SEVERITIES:
        a, b = (corrupt(frames, name, s, np.random.default_rng(5)) for _ in range(2))
        assert a.shape == frames.shape and a.dtype == np.uint8 and np.array_equal(a, b), s
    odd = moving_pattern(3, 9, 11)
    assert corrupt(odd, name, 5, np.random.default_rng(0)).shape == odd.shape


@pytest.mark.parametrize("name", GROWING)
def test_distortion_grows_with_severity(name):
    frames = moving_pattern(4, 84, 112)  # a demo frame: sizes scale with the short side
    distortion = [
        np.abs(corrupt(frames, name, s, np.random.default_rng(3)).astype(int) - frames).mean() for s in SEVERITIES
    ]
    assert distortion[0] > 0 and all(a <= b for a, b in zip(distortion, distortion[1:])), distortion


@pytest.mark.parametrize("name", PER_VIDEO)
def test_appearance_and_camera_corruptions_draw_once_per_video(name):
    static = np.repeat(np.random.default_rng(0).integers(0, 256, (1, 24, 32, 3), dtype=np.uint8), 4, axis=0)
    out = corrupt(static, name, 5, np.random.default_rng(1))
    assert (out == out[:1]).all(), "a static video must stay static"


def test_codec_quality_falls_with_crf():
    frames = moving_pattern(8, 32, 48)
    for name in ("h264_crf", "h265_crf"):
        quality = [psnr(corrupt(frames, name, s), frames) for s in SEVERITIES]
        assert all(a > b for a, b in zip(quality, quality[1:])), (name, quality)  # CRF 51 far below CRF 23


def test_bit_errors_and_packet_loss_damage_more_clips_at_higher_severity():
    noise = np.random.default_rng(0).integers(0, 256, (6, 48, 64, 3), dtype=np.uint8)  # ~9 KB: bit errors land
    for name, frames in (("bit_error", noise), ("packet_loss", moving_pattern(8, 48, 64))):
        clean = corrupt(frames, "h264_crf", 1)  # the same CRF 23 encode, undamaged
        outs = {s: [corrupt(frames, name, s, np.random.default_rng(i)) for i in range(8)] for s in (1, 5)}
        damaged = [sum(not np.array_equal(o, clean) for o in outs[s]) for s in (1, 5)]
        assert damaged[0] < damaged[1], (name, damaged)
        assert min(psnr(o, frames) for o in outs[5]) < psnr(clean, frames), name


def test_reversal_plays_the_video_backwards():
    frames = moving_pattern(5, 8, 8)
    assert np.array_equal(corrupt(frames, "reversal"), frames[::-1]) and "reversal" in NO_SEVERITY


@pytest.mark.parametrize("name, rates", [("sampling", (2, 4, 8, 16, 32)), ("frame_rate", (1.5, 1.875, 2.5, 10 / 3, 5))])
def test_frame_rate_reduction_keeps_every_kth_frame_and_holds_it(name, rates):
    lags = []
    for s, k in zip(SEVERITIES, rates):
        src = sources(name, s)
        assert (np.diff(src) >= 0).all() and (src <= np.arange(64)).all()  # held, never from the future
        kept = np.unique(src)[1:]  # frame 0 also stands in for the kept frame before the clip
        assert np.all(np.abs(np.diff(kept) - k) < 1), (s, kept)
        lags.append(np.mean(np.arange(64) - src))
    assert all(a < b for a, b in zip(lags, lags[1:])), lags


def test_freezing_repeats_fewer_frames_as_severity_grows():
    updates = [len(np.unique(sources("freeze", s))) for s in SEVERITIES]
    assert updates == [25, 12, 6, 3, 1]  # 40, 20, 10, 5 % of 64 frames, then only the first
    for s in SEVERITIES:
        src = sources("freeze", s)
        assert src[0] == 0 and (np.diff(src) >= 0).all() and (src <= np.arange(64)).all()


def test_jumble_shuffles_within_windows_that_shrink_with_severity():
    displacement = []
    for s, w in zip(SEVERITIES, (32, 16, 8, 4, 2)):
        src = sources("jumble", s)
        assert sorted(src) == list(range(64)) and (src // w == np.arange(64) // w).all()
        displacement.append(np.abs(src - np.arange(64)).mean())
    assert all(a >= b for a, b in zip(displacement, displacement[1:])) and displacement[-1] > 0


@pytest.mark.parametrize("n", [64, 16])
def test_box_jumble_moves_whole_segments(n):
    for s, size in zip(SEVERITIES, (4, 9, 16, 25, 36)):
        size = min(size, n // 2)
        src = sources("box_jumble", s, n)
        assert sorted(src) == list(range(n)) and not np.array_equal(src, np.arange(n))
        starts = np.flatnonzero(np.diff(src, prepend=-2) != 1)  # where a run of consecutive frames begins
        assert all(src[i] % size == 0 for i in starts)


def test_camera_corruptions_rotate_as_pil_and_translate_up_left():
    frames = np.random.default_rng(0).integers(0, 256, (2, 20, 32, 3), dtype=np.uint8)
    out = corrupt(frames, "static_rotate", 3)  # 30 degrees
    pil = np.stack([np.asarray(Image.fromarray(f).rotate(30)) for f in frames])
    assert np.array_equal(out, pil)
    big = np.random.default_rng(1).integers(1, 256, (2, 224, 224, 3), dtype=np.uint8)
    moved = corrupt(big, "translate", 5, np.random.default_rng(2))
    dy, dx = 224 - (moved[0].any(-1).any(1)).sum(), 224 - (moved[0].any(-1).any(0)).sum()
    assert 0 < max(dy, dx) < 40 and np.array_equal(moved[:, : 224 - dy, : 224 - dx], big[:, dy:, dx:])


def test_temporal_motion_blur_averages_centred_windows():
    flicker = np.broadcast_to((np.arange(9) % 2 * 200).astype(np.uint8)[:, None, None, None], (9, 2, 2, 3))
    out = corrupt(flicker, "motion_blur_mkc", 1)[:, 0, 0, 0]  # 3 frames
    want = [np.mean(flicker[max(t - 1, 0) : t + 2, 0, 0, 0]) for t in range(9)]
    assert np.array_equal(out, np.floor(want).astype(np.uint8))


def test_hsv_digital_corruptions_move_value_and_saturation():
    frames = np.random.default_rng(0).integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    spread = lambda x: (x.max(-1).astype(int) - x.min(-1)).mean()  # noqa: E731 (chroma)
    assert corrupt(frames, "brightness_mkc", 5).max(-1).mean() > frames.max(-1).mean()
    assert spread(corrupt(frames, "saturate", 2)) < spread(frames) < spread(corrupt(frames, "saturate", 4))


@pytest.mark.parametrize("interval", [2, 3])  # one run of frames (the demo), and separate pairs
def test_reversal_reaches_the_networks_as_the_reversed_video(tmp_path, interval):
    folder = tmp_path / "ramp"
    folder.mkdir()
    for i in range(20):  # frame i is grey 20 + 10 i
        Image.fromarray(np.full((16, 24, 3), 20 + 10 * i, dtype=np.uint8)).save(folder / f"img_{i + 1:05d}.jpg")

    def item(corruption):
        ds = EvalDataset(tmp_path, [Sample("ramp", 0, 20)], 4, interval, resize=16, crop=16, corruption=corruption)
        x = ds[0]
        return {
            k: (x[k] * STD[:, None, None, None] + MEAN[:, None, None, None]).round()[0, 0, :, 0, 0]
            for k in ("rgb", "tg")
        }

    clean, back = item(None), item(partial(corrupt, name="reversal"))
    assert (clean["tg"] == (255 - 10) // 2).all()  # frame minus the next, brighter one
    assert (back["tg"] == (255 + 10) // 2).all()  # the next frame of the reversed video is darker
    assert (np.diff(back["rgb"].numpy()) == -10 * interval).all()  # the clip runs backwards
