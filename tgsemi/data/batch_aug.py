"""The reference strong augmentation of a whole batch, on the training device (``data.strong_on=batch``).

Built per item on the loader's CPUs, the two strong views of an unlabeled clip cost about as
much as decoding it (docs/benchmarks.md, "Data pipeline"). With ``strong_on=batch`` the loader
ships the weak views as uint8 ``(T, C, H, W)`` clips, a quarter of the bytes of float ones, and
``StrongViews`` builds the strong views of the batch where it trains, then normalises all views.
Each clip keeps a draw of its own (op pair, signs, cutout centre) for all its frames, and each op
computes what ``apply_reference_op`` computes on that clip (tests/test_transforms.py measures how
closely).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch.nn import functional as nnf

from tgsemi.data.transforms import (
    CUTOUT_FILL,
    GEOMETRIC_OPS,
    REFERENCE_OPS,
    ReferenceStrongAug,
    apply_reference_op,
    normalize,
    reference_affine,
    reference_cutout_box,
)

STREAMS = ("rgb", "tg")  # a stream's place here keys its generator, whichever streams train


class ClipDraws(NamedTuple):
    """The parameters of a batch, one row per clip."""

    ops: torch.Tensor  # (B, k) int64 indices into REFERENCE_OPS, ascending in each row
    signs: torch.Tensor  # (B, k) +1/-1: the direction of shear, translate and rotate
    centres: torch.Tensor  # (B, k, 2) cutout centres as fractions of (width, height)


class BatchReferenceStrongAug:
    """``ReferenceStrongAug`` on a uint8 ``(B, T, C, H, W)`` batch on any device: each clip draws
    its own ops, signs and cutout centre, the same for all its frames, from the CPU
    ``torch.Generator`` handed in. Drawing on the CPU keeps the draws the same on every device
    and leaves the global RNG alone."""

    def __init__(
        self, level: float = 0.9, fill: int = 0, ops: Sequence[str] | None = None, clips_per_pass: int | None = None
    ):
        """``clips_per_pass``: how many clips one op call processes; None: the whole batch on an
        accelerator, one clip on the CPU, where a clip's float intermediates stay in cache (one pass
        over 8 clips of 8x112x112 ran 1.5x (grid_sample) to 8x (EnhanceBrightness) slower there
        than 8 one-clip passes)."""
        spec = ReferenceStrongAug(level, fill, ops)  # checks ``ops`` and puts them in table order
        self.level, self.fill, self.ops = spec.level, spec.fill, spec.ops
        self.clips_per_pass = clips_per_pass
        self._table = torch.tensor([REFERENCE_OPS.index(op) for op in self.ops])

    def draw(self, n: int, generator: torch.Generator) -> ClipDraws:
        """Per clip, what ``ReferenceStrongAug.draw`` draws: a uniform pair of distinct ops (the
        two smallest of independent uniform keys), uniform signs and centres."""
        k = min(2, len(self.ops))
        picked = torch.rand(n, len(self.ops), generator=generator).argsort(dim=1)[:, :k].sort(dim=1).values
        signs = torch.randint(0, 2, (n, k), generator=generator) * 2 - 1
        return ClipDraws(self._table[picked], signs, torch.rand(n, k, 2, generator=generator))

    def __call__(self, clips: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return self.apply(clips, self.draw(len(clips), generator))

    def apply(self, clips: torch.Tensor, draws: ClipDraws) -> torch.Tensor:
        """Each clip's ops in table order. The geometric ops lead the table, so they go first: one
        resampling of the clips whose k-th op is geometric, for k = 1, 2; then each other op on
        the clips that drew it (in passes of ``clips_per_pass`` clips)."""
        out = clips.clone()
        h, w = clips.shape[-2:]
        ops, signs, centres = draws.ops.tolist(), draws.signs.tolist(), draws.centres.tolist()
        size = self.clips_per_pass or (1 if clips.device.type == "cpu" else len(clips))
        for slot in range(draws.ops.shape[1]):
            rows = [i for i, row in enumerate(ops) if REFERENCE_OPS[row[slot]] in GEOMETRIC_OPS]
            for part in (rows[i : i + size] for i in range(0, len(rows), size)):
                moves = [reference_affine(REFERENCE_OPS[ops[i][slot]], self.level, signs[i][slot], h, w) for i in part]
                _put(out, part, self._resample(_take(out, part), _grid_theta(moves, h, w)))
        for name in (name for name in self.ops if name not in GEOMETRIC_OPS):
            op = REFERENCE_OPS.index(name)
            rows = [i for i, row in enumerate(ops) if op in row]
            for part in (rows[i : i + size] for i in range(0, len(rows), size)):
                if name == "Cutout":
                    boxes = [reference_cutout_box(self.level, centres[i][ops[i].index(op)], h, w) for i in part]
                    _put(out, part, _cutout(_take(out, part), boxes))
                else:  # no parameter of its own: the per-clip op runs on these clips at once
                    _put(out, part, apply_reference_op(_take(out, part), name, self.level))
        return out

    def _resample(self, clips: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        """Bilinear resampling of each clip by its own matrix, frames and channels as the channels
        of one image. Zero padding blends an edge pixel with ``fill`` once, as imgaug does, once
        ``fill`` is shifted to 0 (see ``apply_reference_op``)."""
        x = clips.flatten(1, 2).float().sub_(self.fill)
        grid = nnf.affine_grid(theta.to(x.device, torch.float32), list(x.shape), align_corners=False)
        x = nnf.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        return x.add_(self.fill).round_().clamp_(0, 255).to(clips.dtype).unflatten(1, clips.shape[1:3])


def _consecutive(rows: list[int]) -> slice | None:
    return slice(rows[0], rows[-1] + 1) if rows[-1] - rows[0] == len(rows) - 1 else None


def _take(clips: torch.Tensor, rows: list[int]) -> torch.Tensor:
    """Clips ``rows`` (ascending): a view where they are consecutive (always, one clip a pass on
    the CPU, where uint8 index_select and index_copy_ cost as much as a cheap op), else a copy."""
    run = _consecutive(rows)
    return clips[run] if run else clips.index_select(0, torch.tensor(rows, device=clips.device))


def _put(clips: torch.Tensor, rows: list[int], values: torch.Tensor) -> None:
    """``clips[rows] = values`` (see ``_take``)."""
    run = _consecutive(rows)
    if run:
        clips[run] = values
    else:
        clips.index_copy_(0, torch.tensor(rows, device=clips.device), values)


def _grid_theta(moves: list[tuple[float, list[float], list[float]]], h: int, w: int) -> torch.Tensor:
    """``affine_grid``'s ``(n, 2, 3)`` matrices (float64) for ``F.affine``'s ``(angle, translate, shear)``.

    ``F.affine`` moves a pixel p, in coordinates from the frame's centre, to
    R(angle) SHy(sy) SHx(sx) p + t with SHx(s) = [[1, -tan s], [0, 1]] and SHy(s) = [[1, 0], [-tan s, 1]]
    (torchvision's documented convention). The grid reads each output pixel q from the inverse,
    SHx(-sx) SHy(-sy) R(-angle) (q - t), in affine_grid's units of half the width and height.
    """
    angle, move, shear = (torch.tensor(v, dtype=torch.float64) for v in zip(*moves))
    a, tan_x, tan_y = angle.deg2rad(), shear[:, 0].deg2rad().tan(), shear[:, 1].deg2rad().tan()
    one, zero = torch.ones_like(a), torch.zeros_like(a)
    rot = torch.stack([a.cos(), a.sin(), -a.sin(), a.cos()], -1).view(-1, 2, 2)
    shear_y = torch.stack([one, zero, tan_y, one], -1).view(-1, 2, 2)
    shear_x = torch.stack([one, tan_x, zero, one], -1).view(-1, 2, 2)
    inv = shear_x @ shear_y @ rot
    half = torch.tensor([w / 2, h / 2], dtype=torch.float64)
    return torch.cat([inv * half / half[:, None], -(inv @ move[..., None]) / half[:, None]], dim=2)


def _cutout(clips: torch.Tensor, boxes: list[tuple[int, int, int, int]]) -> torch.Tensor:
    """``CUTOUT_FILL`` inside clip i's box ``(y1, x1, y2, x2)``, in all its frames."""
    h, w = clips.shape[-2:]
    y1, x1, y2, x2 = torch.tensor(boxes, device=clips.device).T[..., None]  # each (n, 1)
    ys, xs = torch.arange(h, device=clips.device), torch.arange(w, device=clips.device)
    inside = ((ys >= y1) & (ys < y2))[:, :, None] & ((xs >= x1) & (xs < x2))[:, None, :]
    return clips.masked_fill(inside[:, None, None], CUTOUT_FILL)


def step_generator(seed: int, step: int, rank: int, stream: str) -> torch.Generator:
    """The CPU generator of one stream's strong views at ``step`` on ``rank``: a function of the
    run's position alone, which a checkpoint restores, so a resumed run redraws the same views
    (the global RNG is not involved); ranks and streams draw apart."""
    key = np.random.SeedSequence([seed, step, rank, STREAMS.index(stream)]).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(key))


class StrongViews:
    """``data.strong_on=batch``: an unlabeled batch of uint8 weak views -> the normalised weak and
    strong views of ``streams`` on the training device, as ``UnlabeledDataset`` builds per item
    with ``strong_on=item`` (RGB fills with 0, TG with ``tg_fill`` and draws from ``tg_ops``)."""

    def __init__(
        self, streams: Sequence[str], level: float, tg_fill: int, tg_ops: Sequence[str] | None, seed: int, rank: int = 0
    ):
        augs = {"rgb": BatchReferenceStrongAug(level), "tg": BatchReferenceStrongAug(level, tg_fill, tg_ops)}
        self.augs = {s: augs[s] for s in streams}
        self.seed, self.rank = seed, rank

    def __call__(self, unl: dict, device: torch.device, step: int) -> dict:
        out = {"label": unl["label"]}
        for s, aug in self.augs.items():
            weak = unl[f"{s}_w"].to(device, non_blocking=True)
            strong = aug(weak, step_generator(self.seed, step, self.rank, s))
            out[f"{s}_w"], out[f"{s}_s"] = normalize(weak), normalize(strong)
        return out
