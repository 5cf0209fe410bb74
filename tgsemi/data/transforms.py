"""Clip augmentations on uint8 ``(T, C, H, W)`` tensors (torchvision.transforms.v2).

v2 transforms treat leading dimensions as a batch and draw one set of random
parameters per call, so a whole clip gets the same crop, flip and RandAugment
ops. Weak augmentation runs on the decoded frames before the TG is taken
(``datasets.load_rgb_tg``), which gives both modalities the identical crop and
flip the method relies on.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from tgsemi.errors import ArgumentError

# ImageNet statistics on the 0..255 scale, for RGB and TG alike (docs/method.md section 1).
MEAN = torch.tensor([123.675, 116.28, 103.53])
STD = torch.tensor([58.395, 57.12, 57.375])
TG_NEUTRAL = 127  # a TG pixel that did not change; also mid-grey for the cutout
RANDAUGMENT_OPS = tuple(v2.RandAugment._AUGMENTATION_SPACE)


def short_side_size(height: int, width: int, short_side: int) -> tuple[int, int]:
    """The ``(height, width)`` that ``F.resize(frames, short_side)`` gives ``height`` x ``width`` frames."""
    if height <= width:
        return short_side, int(short_side * width / height)
    return int(short_side * height / width), short_side


class WeakAug:
    """Short-side resize to ``resize``, RandomResizedCrop (area ``area``, ratio 3/4-4/3) to ``crop``
    x ``crop``, flip 0.5, then with ``hue`` > 0 a hue rotation drawn from [-hue, hue] of the colour
    circle: one draw for all the frames of a ``(..., C, H, W)`` uint8 tensor. The hue rotation is not
    the paper's: at 0.5 a clip's colours say nothing about its class, so a network cannot learn a
    colour shortcut that a biased training set offers (docs/demo_findings.md).

    Done with one resize instead of two: the box is drawn on the size the frames would have at short
    side ``resize``, with torchvision's RandomResizedCrop and the same draws, mapped to the frames'
    own pixels (edges rounded to whole pixels) and only that region is resized, straight to the crop
    size. Resizing whole UCF-101-sized frames to 256 lines and then the box to 224x224 wrote 2.7x
    the pixels and took 2.7x as long (docs/benchmarks.md); the views differ by interpolation and
    by the box's rounding, at most half a pixel an edge (tests/test_transforms.py).
    """

    def __init__(self, resize: int, crop: int, area: tuple[float, float] = (0.08, 1.0), hue: float = 0.0):
        if not 0 <= hue <= 0.5:
            raise ArgumentError(f"hue must be in [0, 0.5] (half the colour circle), got {hue}")
        self.resize, self.crop, self.hue = resize, crop, hue
        self._random_crop = v2.RandomResizedCrop(crop, scale=area, ratio=(3 / 4, 4 / 3))

    def box(self, height: int, width: int) -> tuple[int, int, int, int]:
        """``(top, left, height, width)`` of a random crop of ``height`` x ``width`` frames."""
        size = short_side_size(height, width, self.resize)
        drawn = self._random_crop.make_params([torch.empty((0, *size), dtype=torch.uint8)])  # reads the size only
        sy, sx = height / size[0], width / size[1]
        top, left = round(drawn["top"] * sy), round(drawn["left"] * sx)
        bottom, right = round((drawn["top"] + drawn["height"]) * sy), round((drawn["left"] + drawn["width"]) * sx)
        return top, left, max(bottom - top, 1), max(right - left, 1)

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        view = F.resized_crop(frames, *self.box(*frames.shape[-2:]), [self.crop, self.crop], antialias=True)
        view = F.horizontal_flip(view) if torch.rand(1) < 0.5 else view  # RandomHorizontalFlip(0.5)'s draw
        if self.hue:  # drawn only when asked, so that runs without it draw as before
            view = F.adjust_hue(view, float(torch.empty(1).uniform_(-self.hue, self.hue)))
        return view


class _RandAugment(v2.RandAugment):
    """torchvision's RandAugment drawing from a subset of its ops."""

    def __init__(self, ops: Sequence[str] | None, **kw):
        super().__init__(**kw)
        if ops is not None:
            unknown = set(ops) - set(RANDAUGMENT_OPS)
            if unknown or not ops:
                raise ArgumentError(
                    f"RandAugment ops must be a non-empty subset of {list(RANDAUGMENT_OPS)}, got {list(ops)}"
                )
            self._AUGMENTATION_SPACE = {k: v for k, v in v2.RandAugment._AUGMENTATION_SPACE.items() if k in ops}


class StrongAug:
    """RandAugment (2 ops, magnitude 9) then a cutout, applied to a weak view; ``fill``
    is what geometric ops leave where the image moved away, ``ops`` a subset of
    RandAugment's ops (None: all)."""

    def __init__(
        self,
        num_ops: int = 2,
        magnitude: int = 9,
        cutout_scale: tuple[float, float] = (0.02, 0.2),
        fill: int = 0,
        ops: Sequence[str] | None = None,
    ):
        self.t = v2.Compose(
            [
                _RandAugment(ops, num_ops=num_ops, magnitude=magnitude, fill=fill),
                v2.RandomErasing(p=1.0, scale=cutout_scale, value=TG_NEUTRAL),
            ]
        )

    def __call__(self, clip: torch.Tensor) -> torch.Tensor:
        return self.t(clip)


# The reference's strong augmentation: imgaug 0.4.0 ``SomeOf(2)`` of these ops, in this order
# (docs/method.md section 4).
REFERENCE_OPS: tuple[str, ...] = (
    "ShearX",
    "ShearY",
    "TranslateX",
    "TranslateY",
    "Rotate",
    "Posterize",
    "Solarize",
    "EnhanceColor",
    "EnhanceContrast",
    "EnhanceBrightness",
    "EnhanceSharpness",
    "Autocontrast",
    "Equalize",
    "Invert",
    "Cutout",
)
CUTOUT_FILL = 128  # imgaug Cutout's default grey, whatever the geometric fill
GEOMETRIC_OPS = REFERENCE_OPS[:5]  # first in the table, so a clip's geometric ops come before the others


def reference_affine(name: str, level: float, sign: int, h: int, w: int) -> tuple[float, list[float], list[float]]:
    """``(angle, translate, shear)`` of ``F.affine`` for a geometric op of ``REFERENCE_OPS`` on
    ``h`` x ``w`` frames (see ``apply_reference_op`` for the conventions)."""
    shear = sign * 17.19 * level
    move = sign * 0.2 * level
    angle, translate, shears = 0.0, [0.0, 0.0], [0.0, 0.0]
    if name == "ShearX":
        shears = [shear, 0.0]
    elif name == "ShearY":
        shears = [0.0, -shear]
    elif name == "TranslateX":
        translate = [move * w, 0.0]  # sub-pixel, as imgaug's percent translation
    elif name == "TranslateY":
        translate = [0.0, move * h]
    elif name == "Rotate":
        angle = sign * 30.0 * level
    else:
        raise ArgumentError(f"{name!r} is not one of the geometric ops {list(GEOMETRIC_OPS)}")
    return angle, translate, shears


def reference_cutout_box(level: float, centre: tuple[float, float], h: int, w: int) -> tuple[int, int, int, int]:
    """``(y1, x1, y2, x2)``, the Cutout square on ``h`` x ``w`` frames; empty when ``x2 <= x1`` or
    ``y2 <= y1``. imgaug: the centre is uniform over the image, so the square may hang over an edge
    and be clipped; "squared" takes the side from the height; corners are truncated with int()."""
    half = 0.2 * level * h / 2
    x, y = centre[0] * w, centre[1] * h
    x1, x2 = (min(max(int(v), 0), w) for v in (x - half, x + half))
    y1, y2 = (min(max(int(v), 0), h) for v in (y - half, y + half))
    return y1, x1, y2, x2


def apply_reference_op(
    clip: torch.Tensor,
    name: str,
    level: float = 0.9,
    sign: int = 1,
    fill: int = 0,
    centre: tuple[float, float] = (0.5, 0.5),
) -> torch.Tensor:
    """One op of ``REFERENCE_OPS`` on a uint8 ``(..., C, H, W)`` clip, every frame alike, as
    imgaug 0.4.0 does it at magnitude ``level`` (0..1); checked against imgaug's own outputs
    (tests/test_transforms.py reads them from shared/reference_aug_golden). ``sign`` (+1/-1) is
    the direction of shear, translate and rotate; ``centre`` is the cutout square's centre as
    fractions of (width, height).

    Conventions found on the goldens: imgaug's positive rotation is clockwise on screen, which is
    ``F.affine``'s positive ``angle``; positive ShearX and translations agree too, ShearY has the
    opposite sign in ``F.affine``. Both centre affine maps on ((W - 1) / 2, (H - 1) / 2).
    Statistics (contrast mean, autocontrast range, equalize histogram) are per frame, as imgaug
    applying one deterministic augmenter to each frame computes them.
    """
    if name in GEOMETRIC_OPS:
        angle, translate, shears = reference_affine(name, level, sign, *clip.shape[-2:])
        # F.affine's own ``fill`` weights an edge pixel's in-image share twice, imgaug's cv2 once
        # (whole-image PSNR 45 instead of 63 dB on the goldens); zero padding blends once, so we
        # shift ``fill`` to 0 instead.
        kw = dict(
            angle=angle,
            translate=translate,
            scale=1.0,
            shear=shears,
            interpolation=F.InterpolationMode.BILINEAR,
            fill=None,
        )
        if fill == 0:
            return F.affine(clip, **kw)
        moved = F.affine(clip.float() - fill, **kw)
        return moved.add_(fill).round_().clamp_(0, 255).to(clip.dtype)
    if name == "Posterize":
        return F.posterize(clip, max(1, int(4 * level)))
    if name == "Solarize":
        # imgaug's uint8 lookup table truncates the threshold: 256 * 0.9 = 230.4 inverts 230 and up
        threshold = int(256 * level)
        return clip if threshold > 255 else F.solarize(clip, threshold)
    factor = 1.8 * level + 0.1  # PIL ImageEnhance: 1 keeps the image, 0 gives the degenerate one
    if name == "EnhanceColor":
        return F.adjust_saturation(clip, factor)
    if name == "EnhanceContrast":
        return F.adjust_contrast(clip, factor)
    if name == "EnhanceBrightness":
        return F.adjust_brightness(clip, factor)
    if name == "EnhanceSharpness":
        return F.adjust_sharpness(clip, factor)
    if name == "Autocontrast":
        return F.autocontrast(clip)
    if name == "Equalize":
        return F.equalize(clip)
    if name == "Invert":
        return F.invert(clip)
    if name == "Cutout":
        y1, x1, y2, x2 = reference_cutout_box(level, centre, *clip.shape[-2:])
        if x2 <= x1 or y2 <= y1:
            return clip
        return F.erase(clip, y1, x1, y2 - y1, x2 - x1, torch.tensor(CUTOUT_FILL, dtype=clip.dtype))
    raise ArgumentError(f"unknown op {name!r}; valid: {list(REFERENCE_OPS)}")


class ReferenceStrongAug:
    """The reference's strong augmentation: 2 distinct ops of ``REFERENCE_OPS`` (``ops``: a
    subset), applied in the table's order (imgaug ``SomeOf(2, random_order=False)``), with one
    draw for the whole clip. ``fill`` is what geometric ops leave where the image moved away
    (0 as imgaug; 127 for TG clips). Randomness comes from torch's global CPU RNG.

    Level 0 is the identity for ShearX/Y, TranslateX/Y, Rotate and Cutout only: the enhance
    factor 1.8 * level + 0.1 is then 0.1 (identity is 1, at level 0.5), Posterize keeps 1 bit
    and Solarize (threshold 0) inverts everything; Autocontrast, Equalize and Invert have no
    magnitude.

    The sign of shear, translate and rotate is drawn per call and per op. The reference draws it
    once, when the pipeline is built (``random.choice([-1, 1])`` in ``default_transforms()``), so
    one run only ever shears/translates/rotates one way: a quirk we do not copy.
    """

    def __init__(self, level: float = 0.9, fill: int = 0, ops: Sequence[str] | None = None):
        if not 0.0 <= level <= 1.0:
            raise ArgumentError(f"level must be in [0, 1], got {level}")
        if ops is not None and (not ops or set(ops) - set(REFERENCE_OPS)):
            raise ArgumentError(f"reference ops must be a non-empty subset of {list(REFERENCE_OPS)}, got {list(ops)}")
        self.level, self.fill = level, fill
        self.ops = REFERENCE_OPS if ops is None else tuple(op for op in REFERENCE_OPS if op in ops)

    def draw(self) -> list[tuple[str, int, tuple[float, float]]]:
        """The ops of one call in the table's order, each with its sign and cutout centre."""
        k = min(2, len(self.ops))
        picked = sorted(torch.randperm(len(self.ops))[:k].tolist())
        signs = (torch.randint(0, 2, (k,)) * 2 - 1).tolist()
        centres = torch.rand(k, 2).tolist()
        return [(self.ops[i], s, (c[0], c[1])) for i, s, c in zip(picked, signs, centres)]

    def __call__(self, clip: torch.Tensor) -> torch.Tensor:
        for name, sign, centre in self.draw():
            clip = apply_reference_op(clip, name, self.level, sign, self.fill, centre)
        return clip


def test_crops(clip: torch.Tensor, resize: int, crop: int, num_crops: int) -> torch.Tensor:
    """``(num_crops, T, C, crop, crop)``: centre crop, or three crops spread
    along the long side (left/centre/right or top/centre/bottom)."""
    clip = F.resize(clip, resize, antialias=True)
    if num_crops == 1:
        return F.center_crop(clip, crop)[None]
    h, w = clip.shape[-2:]
    if w >= h:
        boxes = [((h - crop) // 2, x) for x in (0, (w - crop) // 2, w - crop)]
    else:
        boxes = [(y, (w - crop) // 2) for y in (0, (h - crop) // 2, h - crop)]
    return torch.stack([F.crop(clip, top, left, crop, crop) for top, left in boxes])


def normalize(clip: torch.Tensor) -> torch.Tensor:
    """uint8 ``(..., T, C, H, W)`` -> float32 ``(..., C, T, H, W)``, ImageNet-normalised.

    Reorders while still uint8 (a quarter of the bytes of a float copy) and
    converts inside the subtraction: 2.9x faster than converting first on the
    channels-last views the augmentations return, 1.2x on contiguous ones. Runs on
    ``clip``'s device (``data.strong_on=batch`` normalises on the training device).
    """
    x = clip.transpose(-4, -3).contiguous()
    mean, std = (s.to(x.device)[:, None, None, None] for s in (MEAN, STD))
    return (x - mean).div_(std)
