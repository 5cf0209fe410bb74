"""The training clip pipeline: TG on resized frames, items built on one thread."""

from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.transforms import v2

from tgsemi.data import datasets
from tgsemi.data.annotations import Sample
from tgsemi.data.datasets import EvalDataset, FrameCache, UnlabeledDataset, load_rgb_tg
from tgsemi.data.sampling import train_clip_indices
from tgsemi.data.synth import render_clip, write_video
from tgsemi.data.transforms import MEAN, STD, WeakAug, normalize
from tgsemi.data.video import BACKENDS, available_backends, num_frames

W, H, FRAMES = 96, 72, 40


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    rng = np.random.default_rng
    path = tmp_path_factory.mktemp("clip") / "clip.avi"
    write_video(path, render_clip("Circle", rng(0), rng(1), None, FRAMES, (W, H), 1.0, 3, 2.0), bits_per_pixel=2.0)
    return path


def _tchw(frames: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(frames.reshape(-1, *frames.shape[-3:])).permute(0, 3, 1, 2)


def test_resizing_before_the_tg_matches_resizing_after(video):
    idx = np.array([[0, 5, 10, 30], [2, 7, 12, 32]])
    rgb, tg = load_rgb_tg(video, idx)
    small_rgb, small_tg = load_rgb_tg(video, idx, short_side=40)
    assert small_rgb.shape == small_tg.shape == (2, 4, 40, 53, 3)
    resize = v2.Resize(40, antialias=True)
    assert torch.equal(_tchw(small_rgb), resize(_tchw(rgb)))
    diff = (_tchw(small_tg).int() - resize(_tchw(tg)).int()).abs()
    assert diff.max() <= 1 and (_tchw(small_tg) != 127).float().mean() > 0.1  # and the TG is not blank


def test_weak_views_match_augmenting_full_size_frames(video):
    """The dataset resizes before the TG; the views equal the original order's
    (TG at full size, then WeakAug) for RGB exactly and for TG up to rounding."""
    seed = 123
    ds = UnlabeledDataset(video.parent, [Sample(video.name, 3)], 4, 3, resize=40, crop=32)
    item = ds[(0, seed)]
    rgb, tg = load_rgb_tg(video, train_clip_indices(FRAMES, 4, 3, 1, np.random.default_rng(seed)))
    torch.manual_seed(seed)
    weak_rgb, weak_tg = WeakAug(40, 32)(_tchw(rgb), _tchw(tg))
    assert torch.equal(item["rgb_w"], normalize(weak_rgb))
    levels = ((item["tg_w"] - normalize(weak_tg)) * STD[:, None, None, None]).abs()
    assert levels.max() < 2.01 and levels.mean() < 0.5


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
