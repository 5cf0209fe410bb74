from typing import get_args

import numpy as np
import pytest
import torch

from tgsemi.config import RandAugmentOp

from tgsemi.data import sampling, transforms
from tgsemi.data.transforms import MEAN, STD, StrongAug, WeakAug, normalize


def coordinate_clip(t: int = 4, h: int = 40, w: int = 60) -> torch.Tensor:
    """A clip whose pixels encode their own (x, y): any crop/flip is readable back."""
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    frame = torch.stack([xs * 4, ys * 6, torch.zeros_like(xs)]).to(torch.uint8)
    return frame.expand(t, 3, h, w).clone()


def test_weak_aug_same_crop_and_flip_for_rgb_and_tg():
    torch.manual_seed(0)
    rgb = coordinate_clip()
    tg = rgb.clone()
    flips = 0
    for _ in range(20):
        a, b = WeakAug(resize=40, crop=24)(rgb, tg)
        assert a.shape == b.shape == (4, 3, 24, 24)
        torch.testing.assert_close(a, b)  # identical geometry for both modalities
        torch.testing.assert_close(a, a[:1].expand_as(a))  # and for every frame
        flips += int(a[0, 0, 0, 0] > a[0, 0, 0, -1])  # x decreases left to right: flipped
    assert 3 <= flips <= 17


def test_weak_aug_crops_vary_in_scale():
    torch.manual_seed(1)
    weak = WeakAug(40, 24)
    spans = set()
    for _ in range(10):
        x = weak(coordinate_clip())[0][0, 0].float()  # x coordinate channel
        spans.add(int(x.amax() - x.amin()))  # width of the source region cropped
    assert len(spans) > 3


def test_strong_aug_differs_between_modalities_but_not_frames():
    torch.manual_seed(2)
    clip = torch.randint(0, 256, (4, 3, 24, 24), dtype=torch.uint8)
    clip[:] = clip[0]  # identical frames: any per-frame difference would come from the aug
    strong = StrongAug()
    a, b = strong(clip), strong(clip)
    assert not torch.equal(a, b)
    torch.testing.assert_close(a, a[:1].expand_as(a))


def test_tg_strong_view_fills_with_no_change():
    """A still TG clip (all 127) must stay free of edges under geometric ops, which
    the default black fill would paint along the borders."""
    torch.manual_seed(3)
    still = torch.full((4, 3, 24, 24), transforms.TG_NEUTRAL, dtype=torch.uint8)
    moves = ["TranslateX", "TranslateY", "ShearX", "ShearY", "Rotate"]
    neutral = StrongAug(ops=moves, fill=transforms.TG_NEUTRAL, cutout_scale=(0.02, 0.021))
    black = StrongAug(ops=moves, cutout_scale=(0.02, 0.021))
    for _ in range(5):
        assert (neutral(still) == transforms.TG_NEUTRAL).all()
    assert any((black(still) == 0).any() for _ in range(5))


def test_strong_aug_op_subset():
    torch.manual_seed(4)
    clip = torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8)
    only = StrongAug(ops=["Identity"], cutout_scale=(0.02, 0.021))
    out = only(clip)
    changed = (out != clip).any(dim=(0, 1))  # only the cutout may differ
    assert 0 < changed.sum() <= 0.05 * 16 * 16
    for bad in (["Invert"], []):
        with pytest.raises(ValueError, match="subset"):
            StrongAug(ops=bad)


def test_config_lists_torchvisions_randaugment_ops():
    assert set(get_args(RandAugmentOp)) == set(transforms.RANDAUGMENT_OPS)


def test_test_crops_centre_and_three():
    clip = coordinate_clip(h=40, w=60)
    one = transforms.test_crops(clip, resize=40, crop=40, num_crops=1)
    assert one.shape == (1, 4, 3, 40, 40)
    assert one[0, 0, 0, 0, 0] == 10 * 4  # centre crop starts at x = 10
    three = transforms.test_crops(clip, resize=40, crop=40, num_crops=3)
    assert three.shape == (3, 4, 3, 40, 40)
    assert [int(c[0, 0, 0, 0]) for c in three] == [0, 40, 80]  # left, centre, right


def test_normalize_layout_and_values():
    clip = torch.full((2, 3, 5, 5), 128, dtype=torch.uint8)
    x = normalize(clip)
    assert x.shape == (3, 2, 5, 5) and x.dtype == torch.float32
    for c in range(3):
        assert abs(float(x[c, 0, 0, 0]) - (128 - float(MEAN[c])) / float(STD[c])) < 1e-5


def test_train_indices_have_successor_and_interval():
    rng = np.random.default_rng(0)
    for n in (2, 5, 40, 64, 65, 300):
        idx = sampling.train_clip_indices(n, clip_len=8, frame_interval=8, num_clips=2, rng=rng)
        assert idx.shape == (2, 8)
        assert idx.min() >= 0 and idx.max() + 1 <= max(n - 1, 1)  # frame i+1 exists
        if n >= 8 * 7 + 2:  # long enough: exact spacing, no wrap-around
            assert (np.diff(idx, axis=1) == 8).all()


def test_test_indices_uniform_and_deterministic():
    idx = sampling.test_clip_indices(200, clip_len=8, frame_interval=4, num_clips=10)
    assert idx.shape == (10, 8)
    assert (np.diff(idx[:, 0]) > 0).all()  # clips spread over the video
    assert idx.max() <= 198
    np.testing.assert_array_equal(idx, sampling.test_clip_indices(200, 8, 4, 10))
