"""Datasets: annotation samples -> normalised RGB and TG clips ``(C, T, H, W)``.

Randomness (clip offsets, augmentation, replacement of bad videos) comes from a
per-item seed handed in by the sampler with the index, not from worker state:
the same (seed, epoch, position) gives the same clip whatever the number of
DataLoader workers, which is what makes an interrupted run resume exactly.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler
from torchvision.transforms.v2 import functional as F

from tgsemi.config import DataConfig
from tgsemi.data.annotations import Sample, resolve_path
from tgsemi.data.bad_inputs import BadInputs
from tgsemi.data.sampling import test_clip_indices, train_clip_indices
from tgsemi.data.transforms import ReferenceStrongAug, StrongAug, WeakAug, normalize, test_crops
from tgsemi.data.video import Decoding, read_frames
from tgsemi.errors import TgsemiError, TooManyBadInputsError, VideoReadError
from tgsemi.runtime import intra_op_threads
from tgsemi.tg import temporal_gradient

MAX_REPLACEMENTS = 50


def load_rgb_tg(
    path: Path,
    indices: np.ndarray | Callable[[int], np.ndarray],
    backend: Decoding | str | None = None,
    corrupt: Callable[[np.ndarray], np.ndarray] | None = None,
    spatial: Callable[[torch.Tensor], torch.Tensor] | None = None,
    cache: FrameCache | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """RGB frames at ``indices`` and their TG (frame i minus raw frame i+1).

    Decodes the union of ``{i, i+1}`` in one pass (or takes it from ``cache``);
    ``indices`` may be a function of the frame count (a clip sampler), called with
    the count of the file opened for the frames, so that one open does both.
    ``corrupt`` (a test-time corruption) sees those raw frames before the TG is
    taken. ``spatial`` maps them, as one uint8 ``(N, C, H, W)`` tensor, to the frames
    the clip and its TG are cut from, with one draw for all: the weak augmentation in
    training, the short-side resize in evaluation. Resizing and TG are both linear, so
    the TG of resized frames matches the resized TG up to rounding (at most 1 apart),
    and it is taken on the smaller frames. Returns two uint8 tensors of shape
    ``indices.shape + (C, H, W)``; the RGB one may be a view of the frames.
    """
    idx = need = np.empty(0, dtype=int)

    def pairs(total: int) -> np.ndarray:
        nonlocal idx, need
        idx = indices(total) if callable(indices) else indices
        flat = idx.ravel()
        need = np.union1d(flat, flat + 1)
        return need

    if cache is not None and corrupt is None:  # a corruption needs the raw frames
        video = cache.video(path, backend)
        frames = video[pairs(len(video))]
    else:
        frames = read_frames(path, pairs, backend)
        if corrupt is not None:
            frames = corrupt(frames)
    frames = to_tchw(frames)
    if spatial is not None:
        frames = spatial(frames)
    hwc = frames.permute(0, 2, 3, 1).numpy()  # (H, W, C) arrays: indexing channels-last tensors is slower
    flat = idx.ravel()
    if len(need) == 2 * len(flat) and np.array_equal(need[::2], flat):  # disjoint pairs in order: no copy
        cur_nxt = hwc.reshape(len(flat), 2, *hwc.shape[1:]).swapaxes(0, 1)
    else:
        cur_nxt = hwc[np.searchsorted(need, np.stack([flat, flat + 1]))]
    tg = temporal_gradient(cur_nxt)[0]
    shape = idx.shape + hwc.shape[1:]
    rgb, tg = (torch.from_numpy(x.reshape(shape)).movedim(-1, -3) for x in (cur_nxt[0], tg))
    return rgb, tg


class FrameCache:
    """Every frame of a video, decoded once, at its own size (items are cut from it as
    from freshly decoded frames, so that they are the same).

    On a small set that a CPU trains on for many epochs, decoding every clip again
    is a large share of a step (a demo FixMatch step: 0.345 s, 0.29 s with this;
    docs/benchmarks.md). It lives in the process that builds the items, so it
    needs ``num_workers=0`` (a worker's copy would be thrown away with the
    worker). A whole video must decode: a truncated file then fails at once,
    wherever its clips would fall.
    """

    def __init__(self) -> None:
        self._videos: dict[Path, np.ndarray] = {}

    def video(self, path: Path, backend: Decoding | str | None) -> np.ndarray:
        if path not in self._videos:
            self._videos[path] = read_frames(path, np.arange, backend)  # every frame, counted in the same open
        return self._videos[path]


def to_tchw(frames: np.ndarray) -> torch.Tensor:
    """Frames ``(T, H, W, C)`` as decoded -> the ``(T, C, H, W)`` tensor torchvision's transforms take.

    A view, not a copy, whatever the layout: JPEG frames arrive channels-first, and copying them to
    channels-last cost 2.8 ms of a UCF item for bit-identical results. Only negative strides (a
    flipped array), which torch cannot view, are copied."""
    if any(stride < 0 for stride in frames.strides):
        frames = frames.copy()
    return torch.from_numpy(frames).permute(0, 3, 1, 2)


class EpochSampler(Sampler):
    """Yields ``(index, item_seed)``: a seeded permutation per epoch, sharded
    over ranks, resumable at any position within the epoch."""

    def __init__(
        self,
        n: int,
        seed: int,
        epoch: int = 0,
        start: int = 0,
        shuffle: bool = True,
        rank: int = 0,
        world_size: int = 1,
        stream: int = 0,
    ):
        self.n, self.seed, self.epoch, self.start = n, seed, epoch, start
        self.shuffle, self.rank, self.world_size, self.stream = shuffle, rank, world_size, stream

    def __len__(self) -> int:
        return self.n // self.world_size - self.start

    def __iter__(self) -> Iterator[tuple[int, int]]:
        key = [self.seed, self.stream, self.epoch]
        order = np.random.default_rng(key).permutation(self.n) if self.shuffle else np.arange(self.n)
        mine = order[self.rank :: self.world_size][: self.n // self.world_size]
        seeds = np.random.default_rng(key + [1]).integers(0, 2**62, size=self.n)
        for pos in range(self.start, len(mine)):
            yield int(mine[pos]), int(seeds[pos * self.world_size + self.rank])


def failure(exc: Exception) -> str:
    """Why an input could not be used, as bad-input records and predictions report it."""
    return exc.reason if isinstance(exc, VideoReadError) else f"{type(exc).__name__}: {exc}"


class _ClipDataset(Dataset):
    """Shared loading: resolve the path, sample indices, decode, TG, and replace
    an undecodable video by another one (logged once, counted)."""

    def __init__(
        self,
        root: str | Path,
        samples: Sequence[Sample],
        clip_len: int,
        frame_interval: int,
        backend: Decoding | str | None = None,
        bad: BadInputs | None = None,
        allow_outside_root: bool = False,
        cache: FrameCache | None = None,
    ):
        self.root = Path(root)
        self.samples = list(samples)
        self.clip_len, self.frame_interval, self.backend = clip_len, frame_interval, backend
        self.bad, self.cache = bad or BadInputs(), cache
        self.paths = [resolve_path(self.root, s.path, allow_outside_root) for s in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def spatial(self, frames: torch.Tensor) -> torch.Tensor:
        """The decoded frames of an item, uint8 ``(N, C, H, W)``, cut and resized as its clips are."""
        raise NotImplementedError

    def _frames(
        self,
        i: int,
        rng: np.random.Generator | None,
        num_clips: int,
        corrupt: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        path, listed = self.paths[i], self.samples[i].total_frames

        def clip_indices(total: int) -> np.ndarray:
            if rng is None:
                return test_clip_indices(total, self.clip_len, self.frame_interval, num_clips)
            return train_clip_indices(total, self.clip_len, self.frame_interval, num_clips, rng)

        # Without a listed count the sampler runs on the count of the file opened for
        # the frames: one open per item. With one it draws first, so that a file that
        # fails to open leaves ``rng`` where it always did for the replacement draw.
        return load_rgb_tg(
            path, clip_indices(listed) if listed else clip_indices, self.backend, corrupt, self.spatial, self.cache
        )

    def _load_train(self, i: int, rng: np.random.Generator) -> tuple[int, torch.Tensor, torch.Tensor]:
        for _ in range(MAX_REPLACEMENTS):
            try:
                rgb, tg = self._frames(i, rng, 1)
                self.bad.mark_seen(str(self.paths[i]))
                return i, rgb[0], tg[0]
            except TooManyBadInputsError:
                raise
            except (TgsemiError, OSError, RuntimeError, ValueError) as exc:
                self.bad.record(str(self.paths[i]), failure(exc))
                i = int(rng.integers(len(self)))
        raise TooManyBadInputsError(
            f"{MAX_REPLACEMENTS} replacement videos in a row failed to decode under {self.root}"
        )

    @intra_op_threads(1)
    def __getitem__(self, key: tuple[int, int]) -> dict:
        i, seed = key
        rng = np.random.default_rng(seed)
        with torch.random.fork_rng(devices=[]):
            # Augmentation draws from torch's global CPU RNG. torch.manual_seed would
            # also reseed the CUDA generator, which fork_rng does not restore, and
            # its lazy-seeding bookkeeping costs 0.3-1 ms per item.
            torch.default_generator.manual_seed(seed)
            i, rgb, tg = self._load_train(i, rng)
            return self.make_item(rgb, tg, self.samples[i].label)


class LabeledDataset(_ClipDataset):
    """``{"rgb", "tg", "label"}``: one weakly augmented clip per video."""

    def __init__(
        self,
        *args,
        resize: int = 128,
        crop: int = 112,
        crop_area: tuple[float, float] = (0.08, 1.0),
        hue_jitter: float = 0.0,
        **kw,
    ):
        super().__init__(*args, **kw)
        self.weak = WeakAug(resize, crop, crop_area, hue_jitter)

    def spatial(self, frames: torch.Tensor) -> torch.Tensor:
        """The weak augmentation, before the TG: RGB and TG get the same crop and flip."""
        return self.weak(frames)

    def make_item(self, rgb: torch.Tensor, tg: torch.Tensor, label: int) -> dict:
        return {"rgb": normalize(rgb), "tg": normalize(tg), "label": label}


def strong_augmentation(
    kind: str, level: float, fill: int, ops: Sequence[str] | None = None
) -> Callable[[torch.Tensor], torch.Tensor]:
    """``reference``: the authors' 2 of 15 ops at ``level``; ``randaugment``: torchvision's
    RandAugment(2, 9) plus a cutout."""
    if kind == "reference":
        return ReferenceStrongAug(level, fill=fill, ops=ops)
    return StrongAug(fill=fill, ops=ops)


def strong_options(d: DataConfig) -> dict:
    """``UnlabeledDataset``'s strong-view keywords from a run's data config."""
    return dict(
        strong_aug=d.strong_aug,
        strong_level=d.strong_level,
        tg_fill=d.tg_fill,
        strong_ops_tg=d.strong_ops_tg,
        strong_on=d.strong_on,
    )


class UnlabeledDataset(LabeledDataset):
    """Weak and strong views of both modalities; ``label`` is the hidden label
    (or -1), for pseudo-label diagnostics only.

    The strong views of RGB and TG are drawn independently. ``tg_fill`` is what the TG
    view's geometric ops leave uncovered: 127, TG's "no change", where a black fill would
    paint motion edges along the borders (the reference fills with 0). ``strong_ops_tg``
    can restrict the TG view's ops (None: all of them, as for RGB). ``strong_on="batch"``
    leaves the strong views and normalisation to the training device (batch_aug.StrongViews):
    an item is then its uint8 ``(T, C, H, W)`` weak views ``rgb_w``, ``tg_w`` and the label.
    """

    def __init__(
        self,
        *args,
        strong_aug: str = "randaugment",
        strong_level: float = 0.9,
        tg_fill: int = 127,
        strong_ops_tg: Sequence[str] | None = None,
        strong_on: str = "item",
        **kw,
    ):
        super().__init__(*args, **kw)
        self.strong_on = strong_on
        self.strong = strong_augmentation(strong_aug, strong_level, fill=0)
        self.strong_tg = strong_augmentation(strong_aug, strong_level, tg_fill, strong_ops_tg)

    def make_item(self, rgb: torch.Tensor, tg: torch.Tensor, label: int) -> dict:
        if self.strong_on == "batch":
            return {"rgb_w": rgb, "tg_w": tg, "label": label}
        return {
            "rgb_w": normalize(rgb),
            "tg_w": normalize(tg),
            "rgb_s": normalize(self.strong(rgb)),
            "tg_s": normalize(self.strong_tg(tg)),
            "label": label,
        }


class EvalDataset(_ClipDataset):
    """``(clips * crops, C, T, H, W)`` stacks; a video that cannot be decoded is
    returned with ``ok=False`` so evaluation can count it instead of dropping it."""

    def __init__(
        self,
        *args,
        num_clips: int = 1,
        num_crops: int = 1,
        resize: int = 128,
        crop: int = 112,
        corruption: Callable[..., np.ndarray] | None = None,
        **kw,
    ):
        kw.setdefault("bad", BadInputs(max_fraction=1.0))  # evaluating alone: report failures, never stop
        super().__init__(*args, **kw)
        self.resize, self.num_clips, self.num_crops, self.crop = resize, num_clips, num_crops, crop
        self.corruption = corruption  # f(frames, rng=...) on raw uint8 frames, before the TG

    def spatial(self, frames: torch.Tensor) -> torch.Tensor:
        """The short side resized to ``resize``; the test crops are cut from the clips."""
        return F.resize(frames, self.resize, antialias=True)

    def views(self, rgb: torch.Tensor) -> torch.Tensor:
        clips = [test_crops(c, self.resize, self.crop, self.num_crops) for c in rgb]
        return normalize(torch.cat(clips))

    @intra_op_threads(1)
    def __getitem__(self, i: int) -> dict:
        label = self.samples[i].label
        try:
            corrupt = None
            if self.corruption is not None:  # the same draw for a video in every run
                corrupt = partial(self.corruption, rng=np.random.default_rng([i, 7]))
            rgb, tg = self._frames(i, None, self.num_clips, corrupt)
            self.bad.mark_seen(str(self.paths[i]))
        except (TgsemiError, OSError, RuntimeError, ValueError) as exc:
            self.bad.record(str(self.paths[i]), failure(exc))
            v = self.num_clips * self.num_crops
            empty = torch.zeros(v, 3, self.clip_len, self.crop, self.crop)
            return {"rgb": empty, "tg": empty, "label": label, "ok": False, "index": i, "error": failure(exc)}
        return {"rgb": self.views(rgb), "tg": self.views(tg), "label": label, "ok": True, "index": i, "error": ""}
