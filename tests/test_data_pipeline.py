"""The training clip pipeline: TG on resized frames, items built on one thread."""

from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from tgsemi.data import datasets
from tgsemi.data.annotations import Sample
from tgsemi.data.datasets import EvalDataset, FrameCache, UnlabeledDataset, load_rgb_tg
from tgsemi.data.sampling import train_clip_indices
from tgsemi.data.synth import static_clip, write_video
from tgsemi.data.transforms import MEAN, STD, WeakAug, normalize
from tgsemi.data.video import BACKENDS, available_backends, num_frames

W, H, FRAMES = 96, 72, 40


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    rng = np.random.default_rng
    path = tmp_path_factory.mktemp("clip") / "clip.avi"
    write_video(
        path, static_clip("Circle", rng(0), rng(1), None, FRAMES, (W, H), 1.0, 3, 2.0).video, bits_per_pixel=2.0
    )
    return path


def test_resizing_before_the_tg_matches_resizing_after(video):
    """Evaluation resizes the decoded frames, then takes the TG: as resizing the TG, up to rounding."""
    idx = np.array([[0, 5, 10, 30], [2, 7, 12, 32]])
    rgb, tg = load_rgb_tg(video, idx)
    small_rgb, small_tg = load_rgb_tg(video, idx, spatial=partial(F.resize, size=40, antialias=True))
    assert small_rgb.shape == small_tg.shape == (2, 4, 3, 40, 53)
    assert torch.equal(small_rgb, F.resize(rgb, 40, antialias=True))
    diff = (small_tg.int() - F.resize(tg, 40, antialias=True).int()).abs()
    assert diff.max() <= 1 and (small_tg != 127).float().mean() > 0.1  # and the TG is not blank


def test_the_tg_of_the_weak_views_is_the_weak_view_of_the_tg(video):
    """Training crops and resizes the decoded frames (one draw for the clip), then takes the TG:
    as cropping and resizing the full-size TG with the same draw, up to rounding."""
    idx = np.array([[1, 4, 9, 20, 33]])
    rgb, tg = load_rgb_tg(video, idx)
    weak = WeakAug(40, 32, (0.08, 1.0))
    for seed in range(5):
        torch.manual_seed(seed)
        weak_rgb, weak_tg = load_rgb_tg(video, idx, spatial=weak)
        torch.manual_seed(seed)
        assert torch.equal(weak_rgb, weak(rgb))
        torch.manual_seed(seed)
        assert (weak_tg.int() - weak(tg).int()).abs().max() <= 1


def test_weak_views_match_resizing_the_frames_first(video):
    """The views of an item against the weak augmentation as it was (TG at full size, then
    torchvision's resize of the whole frame, RandomResizedCrop and flip, RGB and TG together), under
    the same seeds: the same crops, apart from interpolation. Bounds on the mean and 99th percentile
    of the differences in grey levels, for this clip's sharp rendered edges."""
    before = v2.Compose(
        [
            v2.Resize(40, antialias=True),
            v2.RandomResizedCrop(32, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), antialias=True),
            v2.RandomHorizontalFlip(0.5),
        ]
    )
    ds = UnlabeledDataset(video.parent, [Sample(video.name, 3)], 4, 3, resize=40, crop=32, strong_on="batch")
    for seed in range(20):
        item = ds[(0, seed)]
        rgb, tg = load_rgb_tg(video, train_clip_indices(FRAMES, 4, 3, 1, np.random.default_rng(seed)))
        torch.manual_seed(seed)
        old_rgb, old_tg = before(torch.cat([rgb[0], tg[0]])).split(4)
        # measured: at most 1.8 and 16 (RGB), 0.8 and 10 (TG); another draw's crop: medians 10 and 122, 2.5 and 35
        for new, old, bounds in ((item["rgb_w"], old_rgb, (2.5, 24)), (item["tg_w"], old_tg, (1.2, 16))):
            levels = (new.int() - old.int()).abs().float()
            assert levels.mean() < bounds[0] and levels.quantile(0.99) < bounds[1], seed
        assert (item["tg_w"] != 127).float().mean() > 0.1


def test_items_are_built_on_one_thread_and_the_count_is_restored(video):
    threads_seen = []

    class Spy(UnlabeledDataset):
        def make_item(self, *args):
            threads_seen.append(torch.get_num_threads())
            return super().make_item(*args)

    ds = Spy(video.parent, [Sample(video.name, 3)], 4, 3, resize=40, crop=32)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        two = ds[(0, 9)]
        assert torch.get_num_threads() == 2
        torch.set_num_threads(1)
        one = ds[(0, 9)]
    finally:
        torch.set_num_threads(before)
    assert threads_seen == [1, 1]
    for key in ("rgb_w", "tg_w", "rgb_s", "tg_s"):
        assert torch.equal(one[key], two[key])


def test_cached_videos_give_the_same_items_and_are_decoded_once(video, monkeypatch):
    args = (video.parent, [Sample(video.name, 3)], 4, 3)
    fresh = UnlabeledDataset(*args, resize=40, crop=32)
    cached = UnlabeledDataset(*args, resize=40, crop=32, cache=FrameCache())
    reads = []
    read = datasets.read_frames

    def counted(*args):
        frames = read(*args)
        reads.append(len(frames))
        return frames

    monkeypatch.setattr(datasets, "read_frames", counted)
    for seed in (1, 2, 3):
        a, b = fresh[(0, seed)], cached[(0, seed)]
        for key in ("rgb_w", "tg_w", "rgb_s", "tg_s"):
            assert torch.equal(a[key], b[key]), (seed, key)
    assert reads.count(FRAMES) == 1 and len(reads) == 4  # the cache read all frames once; fresh read thrice


@pytest.mark.parametrize("backend", available_backends())
def test_a_video_without_a_listed_count_is_opened_once_per_item(video, monkeypatch, backend):
    """The clip is sampled from the count of the file opened for its frames; the items
    equal those of a list that gives the count, read in a separate open as items once were."""
    reader = BACKENDS[backend]
    opens, open_file = [], reader._open
    monkeypatch.setattr(reader, "_open", staticmethod(lambda path: opens.append(path) or open_file(path)))
    unlisted, listed = [Sample(video.name, 3)], [Sample(video.name, 3, num_frames(video, backend))]
    kw = {"backend": backend, "resize": 40, "crop": 32}
    for seed in (1, 2, 3, 4):
        opens.clear()
        item = UnlabeledDataset(video.parent, unlisted, 4, 3, **kw)[(0, seed)]
        assert opens == [video], seed
        expected = UnlabeledDataset(video.parent, listed, 4, 3, **kw)[(0, seed)]
        for key in ("rgb_w", "tg_w", "rgb_s", "tg_s"):
            assert torch.equal(item[key], expected[key]), (seed, key)
    opens.clear()
    item = EvalDataset(video.parent, unlisted, 4, 3, num_clips=2, **kw)[0]
    assert opens == [video] and item["ok"]
    assert torch.equal(item["tg"], EvalDataset(video.parent, listed, 4, 3, num_clips=2, **kw)[0]["tg"])


def test_normalize_any_layout_and_batch_shape():
    clip = torch.randint(0, 256, (2, 4, 3, 6, 5), dtype=torch.uint8)
    expected = torch.stack([(clip[..., c, :, :].float() - MEAN[c]) / STD[c] for c in range(3)], dim=-4)
    torch.testing.assert_close(normalize(clip), expected)
    channels_last = normalize(clip[1].contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(channels_last, expected[1])
    assert channels_last.is_contiguous()


def test_reference_strong_views_draw_the_tg_ops_asked_for(video):
    """strong_aug=reference builds the authors' ops; restricted to Invert, the TG strong view is
    the inverted weak view exactly (normalised 255 - x), while RGB draws from all 15 ops."""
    ds = UnlabeledDataset(
        video.parent,
        [Sample(video.name, 3)],
        4,
        3,
        resize=40,
        crop=32,
        strong_aug="reference",
        strong_ops_tg=["Invert"],
    )
    item = ds[(0, 5)]
    inverted = (
        255 - (item["tg_w"] * STD[:, None, None, None] + MEAN[:, None, None, None]) - MEAN[:, None, None, None]
    ) / STD[:, None, None, None]
    torch.testing.assert_close(item["tg_s"], inverted, atol=1e-4, rtol=0)
    assert not torch.equal(item["rgb_s"], item["rgb_w"])


def test_strong_on_batch_items_are_the_uint8_weak_views(video):
    """strong_on=batch: an item is the weak views as uint8 (T, C, H, W) clips, the ones strong_on=item
    normalises (the strong draws come after the weak ones), and no strong views."""
    args = (video.parent, [Sample(video.name, 3)], 4, 3)
    kw = dict(resize=40, crop=32, strong_aug="reference")
    for seed in (1, 2):
        batch, item = (UnlabeledDataset(*args, strong_on=on, **kw)[(0, seed)] for on in ("batch", "item"))
        assert set(batch) == {"rgb_w", "tg_w", "label"}
        for key in ("rgb_w", "tg_w"):
            assert batch[key].dtype == torch.uint8 and batch[key].shape == (4, 3, 32, 32)
            assert torch.equal(normalize(batch[key]), item[key])
