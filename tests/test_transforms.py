import math
from itertools import combinations
from pathlib import Path
from typing import get_args

import numpy as np
import pytest
import torch
from scipy import stats
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from tgsemi.config import RandAugmentOp, ReferenceOp, load_config
from tgsemi.data import sampling, transforms
from tgsemi.data.batch_aug import BatchReferenceStrongAug, ClipDraws, StrongViews, step_generator
from tgsemi.data.transforms import (
    MEAN,
    REFERENCE_OPS,
    STD,
    ReferenceStrongAug,
    StrongAug,
    WeakAug,
    apply_reference_op,
    normalize,
    short_side_size,
)
from tgsemi.errors import ArgumentError, ConfigError

GOLDEN = Path(__file__).resolve().parents[2] / "shared" / "reference_aug_golden"
needs_golden = pytest.mark.skipif(
    not (GOLDEN / "imgaug_level09.npz").is_file(), reason="shared/reference_aug_golden is absent"
)


def coordinate_clip(t: int = 4, h: int = 40, w: int = 60) -> torch.Tensor:
    """A clip whose pixels encode their own (x, y): any crop/flip is readable back."""
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    frame = torch.stack([xs * 4, ys * 6, torch.zeros_like(xs)]).to(torch.uint8)
    return frame.expand(t, 3, h, w).clone()


def test_weak_aug_one_draw_for_every_frame():
    torch.manual_seed(0)
    clip = coordinate_clip()
    flips = 0
    for _ in range(20):
        a = WeakAug(resize=40, crop=24)(clip)
        assert a.shape == (4, 3, 24, 24)
        torch.testing.assert_close(a, a[:1].expand_as(a))  # the same crop and flip for every frame
        flips += int(a[0, 0, 0, 0] > a[0, 0, 0, -1])  # x decreases left to right: flipped
    assert 3 <= flips <= 17


def test_weak_aug_hue_rotates_a_whole_clip_by_one_draw():
    """A red clip whose frames differ in brightness: each view has one hue for all its frames, and
    over views that hue reaches every primary colour; without hue_jitter red stays red."""
    torch.manual_seed(0)
    clip = torch.zeros(4, 3, 40, 40, dtype=torch.uint8)
    clip[:, 0] = torch.tensor([200, 100, 160, 60]).view(4, 1, 1)
    dominant = set()
    for _ in range(40):
        mean = WeakAug(40, 24, hue=0.5)(clip).float().mean((2, 3))  # (T, C)
        share = mean / mean.sum(1, keepdim=True)
        torch.testing.assert_close(share, share[:1].expand_as(share), atol=0.03, rtol=0)
        dominant.add(int(mean[0].argmax()))
    assert dominant == {0, 1, 2}
    assert (WeakAug(40, 24)(clip)[:, 1:] == 0).all()
    with pytest.raises(ArgumentError, match="hue"):
        WeakAug(40, 24, hue=0.6)


def test_weak_aug_crops_vary_in_scale():
    torch.manual_seed(1)
    weak = WeakAug(40, 24)
    spans = set()
    for _ in range(10):
        x = weak(coordinate_clip())[0, 0].float()  # x coordinate channel
        spans.add(int(x.amax() - x.amin()))  # width of the source region cropped
    assert len(spans) > 3


@pytest.mark.parametrize("height, width, short", [(240, 320, 256), (84, 112, 64), (320, 240, 256), (37, 101, 16)])
def test_short_side_size_is_what_resize_gives(height, width, short):
    frames = torch.zeros(1, 3, height, width, dtype=torch.uint8)
    assert tuple(F.resize(frames, short, antialias=True).shape[-2:]) == short_side_size(height, width, short)


@pytest.mark.parametrize("height, width, resize, area", [(240, 320, 256, (0.08, 1.0)), (84, 112, 64, (0.35, 1.0))])
def test_weak_aug_box_is_the_resized_frames_box_mapped_back(height, width, resize, area, one_thread):
    """The box is RandomResizedCrop's on the resized frame, with the same draws, in the frame's own
    pixels: each edge within half a pixel of the exact mapping, so the boxes' distribution is kept."""
    weak = WeakAug(resize, 48, area)
    rh, rw = short_side_size(height, width, resize)
    reference = v2.RandomResizedCrop(48, scale=area, ratio=(3 / 4, 4 / 3))
    for seed in range(300):
        torch.manual_seed(seed)
        top, left, h, w = weak.box(height, width)
        torch.manual_seed(seed)
        drawn = reference.make_params([torch.empty(0, rh, rw)])
        sy, sx = height / rh, width / rw
        edges = [top, top + h, left, left + w]
        exact = [e * s for e, s in zip(_edges(drawn), (sy, sy, sx, sx))]
        assert max(abs(a - b) for a, b in zip(edges, exact)) <= 0.5, seed
        assert 0 <= top < top + h <= height and 0 <= left < left + w <= width


def _edges(box: dict) -> list[int]:
    return [box["top"], box["top"] + box["height"], box["left"], box["left"] + box["width"]]


@pytest.mark.parametrize("height, width, resize, area", [(60, 80, 64, (0.08, 1.0)), (84, 112, 64, (0.35, 1.0))])
def test_weak_aug_cuts_what_resizing_first_cut(height, width, resize, area, one_thread):
    """Against the weak augmentation as it was, torchvision's transforms on the resized frame, under
    the same seeds: on a frame whose pixels hold their own coordinates, both views span the same
    region of the frame (edges within 0.6 pixel: the rounding of the box, and interpolation) and
    flip alike. Upscaled (as UCF-101's 240 lines to 256) and downscaled (the demo's 84 to 64)."""
    ys, xs = torch.meshgrid(torch.arange(height) + 0.5, torch.arange(width) + 0.5, indexing="ij")
    coords = torch.stack([xs, ys])  # float: the resizes interpolate the coordinates
    before = v2.Compose(
        [
            v2.Resize(resize, antialias=True),
            v2.RandomResizedCrop(16, scale=area, ratio=(3 / 4, 4 / 3), antialias=True),
            v2.RandomHorizontalFlip(0.5),
        ]
    )
    weak, flips, spans = WeakAug(resize, 16, area), 0, set()
    for seed in range(300):
        views = []
        for aug in (weak, before):
            torch.manual_seed(seed)
            x, y = aug(coords)
            views.append((torch.stack([x.amin(), x.amax(), y.amin(), y.amax()]), bool(x[0, 0] > x[0, -1])))
        (edges, flip), (edges_before, flip_before) = views
        assert (edges - edges_before).abs().max() < 0.6 and flip == flip_before, seed
        flips += flip
        spans.add(round(float(edges[1] - edges[0])))
    assert 100 < flips < 200 and len(spans) > 10


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


def test_config_lists_torchvisions_randaugment_ops_and_the_reference_ops():
    assert set(get_args(RandAugmentOp)) == set(transforms.RANDAUGMENT_OPS)
    assert get_args(ReferenceOp) == tuple(transforms.REFERENCE_OPS)


def test_tg_ops_must_belong_to_the_chosen_augmentation():
    assert load_config("synthetic_cpu", ["data.strong_aug=reference", "data.strong_ops_tg=[Rotate,Cutout]"])
    with pytest.raises(ConfigError, match="strong_ops_tg must be a non-empty subset of the reference ops"):
        load_config("synthetic_cpu", ["data.strong_aug=reference"])  # its TG ops are RandAugment's


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


# --- the reference strong augmentation (imgaug 0.4.0 at level 0.9) -------------------------

GEOMETRIC = ["ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate"]


@pytest.fixture(scope="module")
def golden() -> dict[str, np.ndarray]:
    return dict(np.load(GOLDEN / "imgaug_level09.npz"))


@pytest.fixture
def one_thread():
    """Thousands of small calls: one thread, as in a DataLoader worker, is several times faster
    than two on a busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def as_clip(frame: np.ndarray) -> torch.Tensor:
    """HWC uint8 -> a one-frame (1, C, H, W) clip."""
    return torch.from_numpy(frame).permute(2, 0, 1)[None].contiguous()


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


@needs_golden
@pytest.mark.parametrize("name", [op for op in REFERENCE_OPS if op != "Cutout"])
def test_reference_op_matches_imgaug(name, golden, record_property):
    """Each op with sign +1 reproduces imgaug's own output on a real frame; interpolating ops to
    30 dB over the whole image (borders included), lookup-table ops to one grey level."""
    ours = apply_reference_op(as_clip(golden["frame"]), name, level=0.9, sign=1)[0].permute(1, 2, 0).numpy()
    ref = golden[name]
    quality, max_diff = psnr(ours, ref), int(np.abs(ours.astype(int) - ref).max())
    record_property("psnr_db", quality)
    record_property("max_abs_diff", max_diff)
    print(f"{name}: PSNR {quality:.2f} dB, max |diff| {max_diff}")
    if name in ("Posterize", "Solarize", "Invert", "Equalize", "Autocontrast"):
        assert max_diff <= 1
    else:
        assert quality >= 30


@needs_golden
def test_reference_solarize_threshold_is_truncated(golden):
    """imgaug's uint8 table cuts the threshold 230.4 to 230: the reference inverts 230 itself."""
    frame, ref = golden["frame"], golden["Solarize"]
    assert (frame == 230).any() and (ref[frame == 230] == 25).all()
    assert (ref[frame == 229] == 229).all()


@needs_golden
def test_reference_cutout_matches_imgaug(golden, one_thread):
    """imgaug centres the square uniformly over the image, so it may hang over an edge: the
    golden's fraction (one random draw) must be one our Cutout produces, never above the full
    18 % square, with the same grey, and on average the clipped area of a uniform centre."""
    frame = as_clip(golden["frame"])
    fill = torch.from_numpy(golden["Cutout_fill"].reshape(-1))
    torch.manual_seed(0)
    aug = ReferenceStrongAug(ops=["Cutout"])
    fractions = []
    for _ in range(500):
        out = aug(frame)
        changed = (out != frame).any(dim=1)[0]
        fractions.append(float(changed.float().mean()))
        assert (out[0][:, changed] == fill[:, None]).all()
    fractions = np.array(fractions)
    side = 0.18 * 224
    assert fractions.max() <= (math.ceil(side) / 224) ** 2
    assert np.abs(fractions - float(golden["Cutout_fraction"])).min() < 1e-3
    expected_mean = ((side - side**2 / (4 * 224)) / 224) ** 2  # E[covered length] per axis, squared
    assert abs(fractions.mean() - expected_mean) < 0.05 * expected_mean


@needs_golden
def test_reference_aug_change_distribution(golden, one_thread):
    """Mean |output - input| per pixel of the whole transform over 2000 draws matches imgaug's."""
    frame = as_clip(golden["frame"])
    ref = golden["someof_mean_abs_change"]
    torch.manual_seed(0)
    aug = ReferenceStrongAug()
    changes = np.array([float((aug(frame).float() - frame.float()).abs().mean()) for _ in range(2000)])
    print(
        f"mean |change| {changes.mean():.1f} (imgaug {ref.mean():.1f}), "
        f"median {np.median(changes):.1f} (imgaug {np.median(ref):.1f})"
    )
    assert abs(changes.mean() - ref.mean()) <= 0.15 * ref.mean()
    assert abs(np.median(changes) - np.median(ref)) <= 0.15 * np.median(ref)


def test_reference_rotate_moves_a_pixel_clockwise():
    """27 degrees about the centre (32, 32); imgaug's positive angle turns clockwise on screen
    (y down), so (+20, 0) from the centre lands at 20 * (cos 27, sin 27)."""
    img = torch.zeros(1, 1, 65, 65, dtype=torch.uint8)
    img[..., 32, 52] = 255
    for sign in (1, -1):
        out = apply_reference_op(img, "Rotate", 0.9, sign)[0, 0].double()
        want = (32 + 20 * math.cos(math.radians(27)), 32 + sign * 20 * math.sin(math.radians(27)))
        ys, xs = torch.meshgrid(
            torch.arange(65.0, dtype=torch.float64), torch.arange(65.0, dtype=torch.float64), indexing="ij"
        )
        centroid = (float((out * xs).sum() / out.sum()), float((out * ys).sum() / out.sum()))
        assert math.dist(centroid, want) < 0.3
        y, x = divmod(int(out.argmax()), 65)
        assert (x, y) == (round(want[0]), round(want[1]))


def all_values_clip() -> torch.Tensor:
    return torch.arange(256, dtype=torch.uint8).reshape(1, 1, 16, 16).expand(2, 3, 16, 16).clone()


def test_reference_posterize_keeps_top_three_bits():
    clip = all_values_clip()
    out = apply_reference_op(clip, "Posterize", 0.9)
    torch.testing.assert_close(out, clip & 0b11100000)


def test_reference_solarize_inverts_from_230():
    clip = all_values_clip()
    out = apply_reference_op(clip, "Solarize", 0.9)
    torch.testing.assert_close(out, torch.where(clip >= 230, 255 - clip, clip))


def test_reference_cutout_square_is_18_percent_of_the_side():
    clip = torch.randint(0, 128, (3, 3, 200, 300), dtype=torch.uint8)  # never the grey 128
    out = apply_reference_op(clip, "Cutout", 0.9, centre=(0.5, 0.5))
    changed = (out != clip).any(dim=1)
    rows, cols = changed[0].any(dim=1).nonzero(), changed[0].any(dim=0).nonzero()
    assert len(rows) == len(cols) == 36  # a square of 0.18 x the height, also on a wide image
    assert int(changed[0].sum()) == 36 * 36 and (out[:, :, changed[0]] == 128).all()
    assert (changed == changed[:1]).all()  # the same square in every frame


def test_reference_aug_same_draw_for_every_frame():
    torch.manual_seed(5)
    clip = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    clip[:] = clip[0]
    for fill in (0, transforms.TG_NEUTRAL):
        aug = ReferenceStrongAug(fill=fill)
        for _ in range(40):
            out = aug(clip)
            assert out.shape == clip.shape and out.dtype == torch.uint8
            torch.testing.assert_close(out, out[:1].expand_as(out))


def test_reference_image_statistics_are_per_frame():
    """Equalize, Autocontrast and Contrast on a clip give what each frame alone would get."""
    torch.manual_seed(12)
    clip = torch.randint(0, 256, (3, 3, 20, 20), dtype=torch.uint8)
    clip[1] = clip[1] // 3 + 40  # frames with different ranges and means
    clip[2] = clip[2] // 2
    for name in ("Equalize", "Autocontrast", "EnhanceContrast"):
        alone = torch.cat([apply_reference_op(frame[None], name) for frame in clip])
        torch.testing.assert_close(apply_reference_op(clip, name), alone)


def test_reference_aug_draws_independently_per_call():
    """The RGB and the TG view are two calls: they get their own ops, signs and positions."""
    torch.manual_seed(6)
    clip = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    aug = ReferenceStrongAug()
    pairs = [(aug(clip), aug(clip)) for _ in range(20)]
    assert sum(not torch.equal(a, b) for a, b in pairs) >= 15
    drawn = [tuple(name for name, _, _ in aug.draw()) for _ in range(300)]
    assert all(len(set(d)) == 2 for d in drawn)  # two distinct ops
    assert len(set(drawn)) > 60 and {name for d in drawn for name in d} == set(REFERENCE_OPS)
    assert all(REFERENCE_OPS.index(a) < REFERENCE_OPS.index(b) for a, b in drawn)


def test_reference_aug_applies_ops_in_table_order():
    """Posterize comes before Invert in the table, whatever order ``ops`` lists them in."""
    torch.manual_seed(7)
    clip = all_values_clip()
    aug = ReferenceStrongAug(ops=["Invert", "Posterize"])
    assert not torch.equal(255 - (clip & 0b11100000), (255 - clip) & 0b11100000)  # the order shows
    for _ in range(10):
        torch.testing.assert_close(aug(clip), 255 - (clip & 0b11100000))


def test_reference_aug_single_op_subset():
    torch.manual_seed(8)
    clip = all_values_clip()
    for _ in range(3):
        torch.testing.assert_close(ReferenceStrongAug(ops=["Invert"])(clip), 255 - clip)
    for bad in (["Identity"], [], ["Invert", "Brightness"]):
        with pytest.raises(ValueError, match="ShearX"):
            ReferenceStrongAug(ops=bad)


def test_reference_aug_reproducible_under_manual_seed():
    clip = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    aug = ReferenceStrongAug()
    outs = []
    for _ in range(2):
        torch.manual_seed(9)
        outs.append([aug(clip) for _ in range(5)])
    for a, b in zip(*outs):
        torch.testing.assert_close(a, b)


def test_reference_level_zero_is_identity_for_geometry_and_cutout():
    torch.manual_seed(10)
    clip = torch.randint(0, 256, (3, 3, 24, 40), dtype=torch.uint8)
    for name in [*GEOMETRIC, "Cutout"]:
        for sign in (1, -1):
            for fill in (0, transforms.TG_NEUTRAL):
                torch.testing.assert_close(apply_reference_op(clip, name, 0.0, sign, fill, (0.3, 0.6)), clip)
    aug = ReferenceStrongAug(level=0.0, ops=[*GEOMETRIC, "Cutout"])
    for _ in range(10):
        torch.testing.assert_close(aug(clip), clip)
    with pytest.raises(ValueError, match="level"):
        ReferenceStrongAug(level=1.5)


def test_reference_geometry_fill_blends_edges_once():
    """The pixel half over the edge mixes image and fill by its share once, as imgaug (cv2)
    does: TranslateX moves a 224-wide image by 40.32 px, so column 40 reads x = -0.32."""
    clip = torch.full((1, 3, 8, 224), 200, dtype=torch.uint8)
    for fill in (0, transforms.TG_NEUTRAL):
        out = apply_reference_op(clip, "TranslateX", 0.9, 1, fill)[0, 0, 4]
        assert int(out[39]) == fill and int(out[41]) == 200
        assert int(out[40]) == round(0.68 * 200 + 0.32 * fill)


def test_reference_tg_fill_keeps_a_still_clip_still():
    torch.manual_seed(11)
    still = torch.full((4, 3, 24, 24), transforms.TG_NEUTRAL, dtype=torch.uint8)
    neutral = ReferenceStrongAug(fill=transforms.TG_NEUTRAL, ops=GEOMETRIC)
    black = ReferenceStrongAug(ops=GEOMETRIC)
    for _ in range(5):
        assert (neutral(still) == transforms.TG_NEUTRAL).all()
    assert all((black(still) == 0).any() for _ in range(5))


# --- the batched reference augmentation (data.strong_on=batch) -----------------------------


def textured_clips(b: int, t: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    """uint8 ``(b, t, 3, h, w)``: smooth structure plus noise, a different tint and noise per clip and frame."""
    gen = torch.Generator().manual_seed(seed)
    ys, xs = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    base = torch.stack([torch.sin(7 * xs + 3 * ys), torch.cos(5 * ys - 2 * xs), torch.sin(11 * xs * ys)])
    noise, tint = torch.randn(b, t, 3, h, w, generator=gen), torch.randn(b, 1, 3, 1, 1, generator=gen)
    return (base * 100 + 128 + 20 * noise + 20 * tint).clamp(0, 255).to(torch.uint8)


def per_clip(clips: torch.Tensor, draws: ClipDraws, level: float = 0.9, fill: int = 0) -> torch.Tensor:
    """What ``ReferenceStrongAug`` does with each clip's draw: its ops one by one, in row order."""
    out = []
    for clip, ops, signs, centres in zip(clips, draws.ops.tolist(), draws.signs.tolist(), draws.centres.tolist()):
        for op, sign, centre in zip(ops, signs, centres):
            clip = apply_reference_op(clip, REFERENCE_OPS[op], level, sign, fill, tuple(centre))
        out.append(clip)
    return torch.stack(out)


@pytest.mark.parametrize("fill", [0, transforms.TG_NEUTRAL])
@pytest.mark.parametrize("sign", [1, -1])
@pytest.mark.parametrize("name", REFERENCE_OPS)
def test_batched_op_matches_the_per_clip_op(name, sign, fill, one_thread, record_property):
    """Every op on 4 clips of 3 wide frames, each with its own cutout centre (and, for TranslateY,
    its own sign), equals the per-clip op within one grey level, whether an op call takes one clip
    (the CPU's default) or the whole batch (an accelerator's). Only the geometric ops differ at all:
    affine_grid's grid and F.affine's round a few pixels apart (at most 1 level, 88-103 dB)."""
    clips = textured_clips(4, 3, 40, 56)
    gen = torch.Generator().manual_seed(REFERENCE_OPS.index(name))
    signs = torch.tensor([[sign], [-sign], [sign], [sign]]) if name == "TranslateY" else torch.full((4, 1), sign)
    draws = ClipDraws(torch.full((4, 1), REFERENCE_OPS.index(name)), signs, torch.rand(4, 1, 2, generator=gen))
    one, whole = (BatchReferenceStrongAug(0.9, fill, clips_per_pass=n).apply(clips, draws) for n in (1, 4))
    assert torch.equal(one, whole)
    got = one
    want = per_clip(clips, draws, fill=fill)
    quality, max_diff = psnr(got.numpy(), want.numpy()), int((got.int() - want.int()).abs().max())
    record_property("psnr_db", quality)
    record_property("max_abs_diff", max_diff)
    assert max_diff <= 1 and quality >= 40
    if name not in GEOMETRIC:
        assert max_diff == 0


@pytest.mark.parametrize("fill", [0, transforms.TG_NEUTRAL])
def test_batched_pairs_apply_in_table_order(fill, one_thread):
    """All 105 pairs at once, signs and centres drawn: the same as each clip's two ops in a row.
    Pairs of ungeometric ops agree exactly; a geometric op's one-level rounding differences pass
    through the second op (Posterize or Autocontrast can widen them), so those pairs get 40 dB."""
    pairs = torch.tensor(list(combinations(range(len(REFERENCE_OPS)), 2)))
    gen = torch.Generator().manual_seed(fill)
    draws = ClipDraws(
        pairs, torch.randint(0, 2, pairs.shape, generator=gen) * 2 - 1, torch.rand(*pairs.shape, 2, generator=gen)
    )
    clips = textured_clips(len(pairs), 2, 32, 48)
    got = BatchReferenceStrongAug(0.9, fill, clips_per_pass=len(pairs)).apply(clips, draws)
    assert torch.equal(got, BatchReferenceStrongAug(0.9, fill).apply(clips, draws))  # one clip a pass
    want = per_clip(clips, draws, fill=fill)
    for (a, b), g, w in zip(pairs.tolist(), got, want):
        if REFERENCE_OPS[a] in GEOMETRIC:
            assert psnr(g.numpy(), w.numpy()) >= 40, (REFERENCE_OPS[a], REFERENCE_OPS[b])
        else:
            assert torch.equal(g, w), (REFERENCE_OPS[a], REFERENCE_OPS[b])


def test_batched_aug_per_clip_draws_and_its_own_generator():
    """One draw per clip, the same for all its frames; the generator alone decides it; the global
    RNG is left as it was; level 0 leaves geometry and cutout alone; a still TG clip stays still."""
    clips = textured_clips(16, 1, 24, 24).expand(16, 4, 3, 24, 24).contiguous()  # identical frames
    aug = BatchReferenceStrongAug()
    state = torch.get_rng_state()
    out = aug(clips, torch.Generator().manual_seed(3))
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(out, aug(clips, torch.Generator().manual_seed(3)))
    assert torch.equal(out, out[:, :1].expand_as(out))
    assert len({o.numpy().tobytes() for o in out}) == 16  # clips draw apart
    zero = BatchReferenceStrongAug(level=0.0, ops=[*GEOMETRIC, "Cutout"])
    assert torch.equal(zero(clips, torch.Generator().manual_seed(4)), clips)
    still = torch.full((8, 2, 3, 24, 24), transforms.TG_NEUTRAL, dtype=torch.uint8)
    neutral = BatchReferenceStrongAug(fill=transforms.TG_NEUTRAL, ops=GEOMETRIC)
    assert (neutral(still, torch.Generator().manual_seed(5)) == transforms.TG_NEUTRAL).all()
    with pytest.raises(ValueError, match="subset"):
        BatchReferenceStrongAug(ops=["Identity"])


def draw_statistics(ops: np.ndarray, signs: np.ndarray, centres: np.ndarray, num_ops: int) -> dict:
    """p-values and binomial z-scores of draws against the intended distribution: pairs uniform
    over the C(num_ops, 2) pairs, each op in 2 / num_ops of the clips, signs fair, cutout centres
    uniform (both draw one centre per op, used by Cutout only). ``ops`` index the op subset,
    ``(n, 2)``, ascending per row."""
    n = len(ops)
    pair_ids = {p: i for i, p in enumerate(combinations(range(num_ops), 2))}
    pairs = np.bincount([pair_ids[tuple(r)] for r in ops.tolist()], minlength=len(pair_ids))
    p_op = 2 / num_ops
    per_op = np.bincount(ops.ravel(), minlength=num_ops)
    centres = centres.reshape(-1, 2)
    return {
        "pairs_p": stats.chisquare(pairs).pvalue,
        "op_z": np.abs(per_op - n * p_op).max() / math.sqrt(n * p_op * (1 - p_op)),
        "sign_z": abs((signs > 0).sum() - signs.size / 2) / math.sqrt(signs.size / 4),
        "centre_p": min(stats.kstest(centres[:, 0], "uniform").pvalue, stats.kstest(centres[:, 1], "uniform").pvalue),
    }


@pytest.mark.parametrize("ops", [None, [*GEOMETRIC, "Cutout"]])
def test_batched_draws_have_the_per_item_distribution(ops, record_property):
    """4000 clips' draws, batched and per item, against the intended distribution: pair counts by
    chi-square, op frequencies and signs within 4 binomial standard deviations, centres by
    Kolmogorov-Smirnov. p-values are held above 1e-3: a correct draw fails 1 run in 1000 per
    check, and the seeds are fixed. Also: two distinct ops per clip, in table order."""
    n = 4000
    batched = BatchReferenceStrongAug(ops=ops)
    subset = batched.ops
    draws = batched.draw(n, torch.Generator().manual_seed(0))
    local = np.array([[subset.index(REFERENCE_OPS[o]) for o in row] for row in draws.ops.tolist()])
    assert (np.diff(local, axis=1) > 0).all()
    torch.manual_seed(0)
    item = [ReferenceStrongAug(ops=ops).draw() for _ in range(n)]
    item_ops = np.array([[subset.index(name) for name, _, _ in d] for d in item])
    item_signs = np.array([[s for _, s, _ in d] for d in item])
    item_centres = np.array([[c for _, _, c in d] for d in item])
    for who, args in (
        ("batched", (local, draws.signs.numpy(), draws.centres.numpy())),
        ("per item", (item_ops, item_signs, item_centres)),
    ):
        found = draw_statistics(*args, len(subset))
        print(who, {k: round(float(v), 3) for k, v in found.items()})
        record_property(who, found)
        assert found["pairs_p"] > 1e-3 and found["centre_p"] > 1e-3
        assert found["op_z"] < 4 and found["sign_z"] < 4


@pytest.mark.parametrize("fill, ops", [(0, None), (transforms.TG_NEUTRAL, [*GEOMETRIC, "Posterize", "Cutout"])])
def test_batched_change_per_pixel_matches_per_item(fill, ops, one_thread, record_property):
    """Mean |output - input| per pixel over 4000 draws on one clip, batched against per item,
    within 4 standard errors of their difference."""
    n = 4000
    clip = textured_clips(1, 2, 32, 32)[0]
    batched = BatchReferenceStrongAug(fill=fill, ops=ops)(clip.expand(n, *clip.shape), torch.Generator().manual_seed(1))
    change_b = (batched.float() - clip.float()).abs().mean(dim=(1, 2, 3, 4)).numpy()
    torch.manual_seed(1)
    item = ReferenceStrongAug(fill=fill, ops=ops)
    change_i = np.array([float((item(clip).float() - clip.float()).abs().mean()) for _ in range(n)])
    se = math.sqrt(change_b.var(ddof=1) / n + change_i.var(ddof=1) / n)
    print(
        f"mean |change| batched {change_b.mean():.3f}, per item {change_i.mean():.3f}, "
        f"difference {change_b.mean() - change_i.mean():+.3f} = {(change_b.mean() - change_i.mean()) / se:+.2f} SE"
    )
    record_property("means", (float(change_b.mean()), float(change_i.mean()), se))
    assert abs(change_b.mean() - change_i.mean()) < 4 * se


def test_strong_views_normalise_on_the_device_and_draw_by_step():
    """StrongViews: uint8 weak views in, normalised weak and strong views of the asked streams out;
    the draws are a function of (seed, step, rank, stream)."""
    weak = {
        "rgb_w": textured_clips(3, 2, 16, 16, 1),
        "tg_w": textured_clips(3, 2, 16, 16, 2),
        "label": torch.tensor([0, 1, -1]),
    }
    views = StrongViews(("rgb", "tg"), 0.9, transforms.TG_NEUTRAL, ["Invert"], seed=0)
    out = views(weak, torch.device("cpu"), step=5)
    assert set(out) == {"rgb_w", "tg_w", "rgb_s", "tg_s", "label"}
    torch.testing.assert_close(out["rgb_w"], normalize(weak["rgb_w"]))
    torch.testing.assert_close(out["tg_s"], normalize(255 - weak["tg_w"]))  # TG draws from its own ops
    assert out["rgb_s"].shape == (3, 3, 2, 16, 16)
    again = views(weak, torch.device("cpu"), step=5)
    assert torch.equal(again["rgb_s"], out["rgb_s"])
    assert not torch.equal(views(weak, torch.device("cpu"), step=6)["rgb_s"], out["rgb_s"])
    other_rank = StrongViews(("rgb",), 0.9, 0, None, seed=0, rank=1)(weak, torch.device("cpu"), step=5)
    assert set(other_rank) == {"rgb_w", "rgb_s", "label"} and not torch.equal(other_rank["rgb_s"], out["rgb_s"])
    assert step_generator(0, 5, 0, "rgb").initial_seed() != step_generator(0, 5, 0, "tg").initial_seed()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_batched_aug_on_cuda_matches_cpu():
    """The same draws on CUDA: the draws come from the CPU generator, the ops agree within a grey level."""
    clips = textured_clips(32, 4, 56, 56)
    aug = BatchReferenceStrongAug()
    cpu = aug(clips, torch.Generator().manual_seed(7))
    cuda = aug(clips.cuda(), torch.Generator().manual_seed(7)).cpu()
    assert (cpu.int() - cuda.int()).abs().max() <= 1 and psnr(cpu.numpy(), cuda.numpy()) >= 40


def test_batch_strong_aug_needs_the_reference_ops():
    assert (
        load_config(
            "synthetic_cpu", ["data.strong_aug=reference", "data.strong_ops_tg=null", "data.strong_on=batch"]
        ).data.strong_on
        == "batch"
    )
    with pytest.raises(ConfigError, match="batch strong augmentation is implemented for the reference ops"):
        load_config("synthetic_cpu", ["data.strong_on=batch"])
