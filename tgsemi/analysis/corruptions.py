"""Test-time corruptions of a decoded video, in four suites.

A corruption is ``f(frames, rng, severity)``: uint8 frames ``(N, H, W, 3)`` of one
video in, the same shape and dtype out, a pure function of the frames, the
state of ``rng`` and the severity (1-5). ``EvalDataset`` applies it to the raw
decoded frames *before* the temporal gradient, so a TG network sees what the
corruption does to the change between frames. Appearance corruptions draw their
parameters once per video unless the source draws them per frame (noise, rain,
per-frame rotation): a static video stays static under a global change.

Suites (``SUITES``):

- ``paper``: supplement Table 5. Contrast and brightness noise (PIL
  ``ImageEnhance`` with a random factor per video, as imgaug's
  EnhanceContrast/EnhanceBrightness, whose default factor range (0.5, 1.5) is
  severity 3 here) and grayscale (no severity).
- ``extended``: tgsemi's own: gaussian noise, blur, JPEG, frame drops (the
  previous frame repeats, as a player does on a stall) and jitter (camera shake).
- ``mini-kinetics-c``: the 12 corruptions of Mini Kinetics-C (Yi et al., NeurIPS
  2021 Datasets and Benchmarks, arXiv 2110.06513) with the levels of their
  generation scripts; metrics mPC and rPC.
- ``schiappa``: the perturbations of Schiappa et al. (CVPR 2023, arXiv
  2207.01398) with the levels of their code; metric relative robustness.

Where two sources parametrise one family differently, the name carries the
source: ``_mkc`` (Yi et al.) or ``_sch`` (Schiappa et al.). Sizes the sources
give in pixels are for their 224-pixel input and are scaled here to the short
side of the frames (``_px``), so that a corruption covers the same share of a
small synthetic frame as of a Kinetics one.

**Temporal corruptions** rebuild the video from its own frames: the corrupted
video's frame ``t`` is ``frames[m[t]]`` for a frame map ``m``. ``EvalDataset``
hands over the frames a clip needs, sorted by index and unique: the union of the
pairs ``{i, i + 1}``. With ``frame_interval`` <= 2 (the demo) that is one run of
consecutive frames, a piece of the video, and the map acts on it as on the whole
video; the TG of a frame is then that frame minus the next frame *of the
corrupted video*. Reversal is exact for every interval: reversing the sorted
pairs ``(i, i + 1)`` yields pairs ``(i + 1, i)``, a frame of the reversed video
and its successor there. For larger intervals the other maps see pairs of
neighbours with gaps between them and only approximate; they would be exact if
``load_rgb_tg`` let a corruption see every frame before the clip is sampled.
Window sizes and rates are in video frames; Schiappa et al. applied them to the
frames of a clip, which are the same when the clip is dense.

**Codec corruptions** re-encode the frames with PyAV (libx264/libx265 at the
default preset, as the sources' ffmpeg calls; one thread, so the bitstream is
reproducible), damage the encoded packets for bit errors and packet loss, and
decode with FFmpeg's error concealment. A frame the decoder cannot produce is
replaced by the last one it did (a player's freeze), black before the first.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Callable

import av
import numpy as np
import torch
from av.codec.context import Flags
from torch.nn import functional as nnf
from torchvision.io import decode_jpeg, encode_jpeg
from torchvision.transforms.v2 import functional as F

from tgsemi.data.datasets import to_tchw
from tgsemi.errors import ArgumentError

Corruption = Callable[[np.ndarray, np.random.Generator, int], np.ndarray]

SEVERITIES = (1, 2, 3, 4, 5)
REFERENCE_SIDE = 224  # the sources' input size, in which their pixel sizes are given

# paper and extended (tgsemi's levels)
ENHANCE_SPREAD = (0.1, 0.25, 0.5, 0.75, 0.9)  # factor ~ U(1 - s, 1 + s)
NOISE_STD = (8.0, 16.0, 24.0, 36.0, 48.0)  # on the 0..255 scale
BLUR_SIGMA = (0.5, 1.0, 1.5, 2.0, 3.0)  # pixels
JPEG_QUALITY = (25, 18, 15, 10, 7)  # ImageNet-C's levels, also Schiappa et al.'s
DROP_PROB = (0.1, 0.2, 0.3, 0.45, 0.6)
JITTER_PX = (1, 2, 3, 4, 6)

# Mini Kinetics-C (Yi et al.'s scripts)
SHOT_PHOTONS_MKC = (60, 25, 12, 5, 3)
TEMPORAL_BLUR_FRAMES = (3, 5, 7, 9, 11)
RAIN = ((770, 10, 0.8), (770, 30, 0.8), (770, 60, 0.7), (500, 60, 0.6), (400, 80, 0.5))  # px/drop, length, contrast
FOG = ((1.5, 2.0), (2.0, 2.0), (2.5, 1.7), (2.5, 1.5), (3.0, 1.4))  # strength, fractal decay
CONTRAST_MKC = (0.5, 0.4, 0.3, 0.2, 0.1)
BRIGHTNESS_MKC = (0.1, 0.2, 0.3, 0.4, 0.5)  # added to HSV value
SATURATE = ((0.3, 0.0), (0.1, 0.0), (2.0, 0.0), (5.0, 0.1), (20.0, 0.2))  # HSV saturation * a + b
BIT_ERROR_BYTES = (100_000, 50_000, 30_000, 20_000, 10_000)  # one damaged byte in this many
PACKET_LOSS = (0.01, 0.02, 0.05, 0.1, 0.2)  # the source gives no levels: chosen, see packet_loss
H264_CRF = (23, 30, 37, 44, 51)
H265_CRF = (27, 33, 39, 45, 51)
FRAME_RATE_FPS = (20, 16, 12, 9, 6)  # from Kinetics' 30 fps
# Schiappa et al. (their code)
NOISE_STD_SCH = (0.08, 0.12, 0.18, 0.26, 0.38)  # on the 0..1 scale
SHOT_PHOTONS_SCH = (250, 100, 50, 30, 15)
IMPULSE_AMOUNT = (0.03, 0.06, 0.09, 0.17, 0.27)
SPECKLE_STD = (0.15, 0.2, 0.25, 0.3, 0.35)
DEFOCUS = ((3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5))  # disk radius (px), anti-alias sigma
MOTION_BLUR_SCH = ((10, 3), (15, 5), (15, 8), (15, 12), (20, 15))  # ImageMagick radius, sigma (px)
ZOOM_BLUR = ((1.11, 0.01), (1.16, 0.01), (1.21, 0.02), (1.26, 0.02), (1.31, 0.03))  # zooms 1..stop by step
TRANSLATE_PX = (8, 16, 24, 32, 40)
ROTATE_DEG = (7, 13, 19, 25, 31)  # per frame, uniform integer in [-d, d]
STATIC_ROTATE_DEG = (7.5, 15.0, 30.0, 45.0, 90.0)
SAMPLING_RATE = (2, 4, 8, 16, 32)
JUMBLE_WINDOW = (32, 16, 8, 4, 2)  # the source's order: severity 1 shuffles the widest windows
BOX_JUMBLE_SEGMENT = (4, 9, 16, 25, 36)
FREEZE_UPDATES = ((0.4, 2), (0.2, 2), (0.1, 2), (0.05, 2), (0.0, 1))  # share of frames that update, at least


# ---------------------------------------------------------------- helpers


def _unit(frames: np.ndarray) -> np.ndarray:
    return frames.astype(np.float32) / 255


def _uint8(x: np.ndarray | torch.Tensor, scale: float = 255) -> np.ndarray:
    """Clip to 0..scale and truncate to uint8 on 0..255, as the sources' ``np.uint8(... * 255)``."""
    x = x.numpy() if isinstance(x, torch.Tensor) else x
    return (np.clip(x, 0, scale) * (255 / scale)).astype(np.uint8)


def _px(frames: np.ndarray, size: float) -> float:
    """A size the sources give in pixels of a 224-pixel frame, on these frames."""
    return size * min(frames.shape[1:3]) / REFERENCE_SIDE


def _filter(frames: np.ndarray, kernel: torch.Tensor) -> np.ndarray:
    """Correlate every channel of every frame with a 2-D ``kernel`` of odd sides, edges replicated."""
    x = to_tchw(frames).float()
    n, c, h, w = x.shape
    ky, kx = kernel.shape
    x = nnf.pad(x.reshape(n * c, 1, h, w), (kx // 2, kx // 2, ky // 2, ky // 2), mode="replicate")
    out = nnf.conv2d(x, kernel.float()[None, None]).reshape(n, c, h, w)
    return _uint8(out.permute(0, 2, 3, 1).round())


def _warp(frames: np.ndarray, degrees: np.ndarray, shift: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """Rotate frame ``n`` counter-clockwise by ``degrees[n]`` about its centre and shift it by
    ``shift`` (dy, dx) pixels; nearest neighbour, black where nothing maps: PIL's ``rotate``."""
    x = to_tchw(frames).float()
    n, _, h, w = x.shape
    a = np.deg2rad(np.broadcast_to(degrees, (n,)))
    cos, sin = np.cos(a), np.sin(a)
    # affine_grid maps output to input in [-1, 1] coordinates; convert pixels via the aspect
    theta = np.zeros((n, 2, 3), dtype=np.float32)
    theta[:, 0, 0], theta[:, 0, 1], theta[:, 0, 2] = cos, -sin * h / w, -2 * shift[1] / w
    theta[:, 1, 0], theta[:, 1, 1], theta[:, 1, 2] = sin * w / h, cos, -2 * shift[0] / h
    grid = nnf.affine_grid(torch.from_numpy(theta), [n, 3, h, w], align_corners=False)
    out = nnf.grid_sample(x, grid, mode="nearest", padding_mode="zeros", align_corners=False)
    return out.permute(0, 2, 3, 1).to(torch.uint8).numpy()


def _latest(keep: np.ndarray) -> np.ndarray:
    """For each frame, the last kept frame at or before it (the first is always kept)."""
    keep = keep.copy()
    keep[0] = True
    return np.maximum.accumulate(np.where(keep, np.arange(len(keep)), 0))


# ---------------------------------------------------------------- paper (Table 5)


def luma(frames: np.ndarray) -> np.ndarray:
    """ITU-R 601 luma in PIL's fixed-point arithmetic (``Image.convert("L")``): ``(..., H, W)`` uint8."""
    rgb = frames.astype(np.uint32)
    return ((rgb[..., 0] * 19595 + rgb[..., 1] * 38470 + rgb[..., 2] * 7471 + 0x8000) >> 16).astype(np.uint8)


def _blend(degenerate: np.ndarray | float, frames: np.ndarray, factor: float) -> np.ndarray:
    """PIL ``Image.blend(degenerate, image, factor)``: float32 interpolation, clipped, truncated."""
    out = degenerate + np.float32(factor) * (frames.astype(np.float32) - degenerate)
    return np.clip(out, 0, 255).astype(np.uint8)


def enhance_contrast(frames: np.ndarray, factor: float) -> np.ndarray:
    """PIL ``ImageEnhance.Contrast``: blend each frame with the grey of its mean luma."""
    mean = np.floor(luma(frames).mean(axis=(-2, -1), dtype=np.float64) + 0.5)
    return _blend(mean[..., None, None, None].astype(np.float32), frames, factor)


def enhance_brightness(frames: np.ndarray, factor: float) -> np.ndarray:
    """PIL ``ImageEnhance.Brightness``: blend with black."""
    return _blend(np.float32(0), frames, factor)


def _enhance_factor(rng: np.random.Generator, severity: int) -> float:
    # One uniform draw scaled by the severity's spread: for a given rng the
    # distortion grows with severity, so severity curves compare like with like.
    return 1.0 + ENHANCE_SPREAD[severity - 1] * rng.uniform(-1.0, 1.0)


def contrast(frames: np.ndarray, rng: np.random.Generator, severity: int) -> np.ndarray:
    return enhance_contrast(frames, _enhance_factor(rng, severity))


def brightness(frames: np.ndarray, rng: np.random.Generator, severity: int) -> np.ndarray:
    return enhance_brightness(frames, _enhance_factor(rng, severity))


def grayscale(frames: np.ndarray, rng: np.random.Generator, severity: int) -> np.ndarray:
    return np.repeat(luma(frames)[..., None], 3, axis=-1)


# ---------------------------------------------------------------- extended (tgsemi)


def _additive_noise(frames: np.ndarray, rng: np.random.Generator, std: float, scale: float = 255) -> np.ndarray:
    """``frames + N(0, std)`` with ``std`` on the 0..``scale`` range."""
    noise = rng.standard_normal(frames.shape, dtype=np.float32) * np.float32(std * 255 / scale)
    return np.clip(frames + noise, 0, 255).astype(np.uint8)


def gaussian_noise(frames: np.ndarray, rng: np.random.Generator, severity: int) -> np.ndarray:
    return _additive_noise(frames, rng, NOISE_STD[severity - 1])


def blur(frames: np.ndarray, rng: np.random.Generator, severity: int) -> np.ndarray:
    sigma = BLUR_SIGMA[severity - 1]
    k = 2 * int(np.ceil(3 * sigma)) + 1
    return F.gaussian_blur(to_tchw(frames), [k, k], [sigma, sigma]).permute(0, 2, 3, 1).numpy()


def jpeg(frames: np.ndarray, rng: np.random.Generator, severity: int) -> np.ndarray:
    encoded = encode_jpeg(list(to_tchw(frames)), quality=JPEG_QUALITY[severity - 1])
    return torch.stack(decode_jpeg(encoded)).permute(0, 2, 3, 1).numpy()


def frame_drop(frames: np.ndarray, rng: np.random.Generator, severity: int) -> np.ndarray:
    """Each frame after the first is lost with probability p and the last kept one
    shows instead. ``frames`` are the ones decoded for the clips (pairs ``i, i+1``),
    so a lost ``i+1`` zeroes that TG frame and a lost ``i`` is a longer stall."""
    return frames[_latest(rng.random(len(frames)) >= DROP_PROB[severity - 1])]


def jitter(frames: np.ndarray, rng: np.random.Generator, severity: int) -> np.ndarray:
    """Camera shake: every frame shifted by up to ``JITTER_PX`` pixels (edges repeated)."""
    d = JITTER_PX[severity - 1]
    shifts = np.rint(rng.uniform(-1, 1, (len(frames), 2)) * d).astype(int) + d
    h, w = frames.shape[1:3]
    padded = np.pad(frames, ((0, 0), (d, d), (d, d), (0, 0)), mode="edge")
    return np.stack([p[y : y + h, x : x + w] for p, (y, x) in zip(padded, shifts)])


# ---------------------------------------------------------------- noise (both sources)


def _shot_noise(frames: np.ndarray, rng: np.random.Generator, photons: float) -> np.ndarray:
    """Poisson noise: ``photons`` expected counts at full intensity."""
    return _uint8(rng.poisson(_unit(frames) * photons) / photons, 1)


def shot_noise_mkc(frames: np.ndarray, rng: np.random.Generator, severity: int) -> np.ndarray:
    return _shot_noise(frames, rng, SHOT_PHOTONS_MKC[severity - 1])


def shot_noise_sch(frames: np.ndarray, rng: np.random.Generator, severity: int) -> np.ndarray:
    return _shot_noise(frames, rng, SHOT_PHOTONS_SCH[severity - 1])


def gaussian_noise_sch(frames: np.ndarray, rng: np.random.Generator, severity: int) -> np.ndarray:
    return _additive_noise(frames, rng, NOISE_STD_SCH[severity - 1], scale=1)


def impulse_noise(frames: np.ndarray, rng: np.random.Generator, severity: int) -> np.ndarray:
    """Salt and pepper on every channel value with probability ``amount``, half each
    (scikit-image's ``random_noise(mode="s&p")``)."""
    u = rng.random(frames.shape, dtype=np.float32)
    amount = IMPULSE_AMOUNT[severity - 1]
    salt = rng.random(frames.shape, dtype=np.float32) < 0.5
    return np.where(u < amount, np.where(salt, 255, 0), frames).astype(np.uint8)


def speckle_noise(frames: np.ndarray, rng: np.random.Generator, severity: int) -> np.ndarray:
    x = _unit(frames)
    return _uint8(x + x * rng.standard_normal(x.shape, dtype=np.float32) * SPECKLE_STD[severity - 1], 1)


# ---------------------------------------------------------------- blur


def motion_blur_mkc(frames: np.ndarray, rng: np.random.Generator, severity: int) -> np.ndarray:
    """Temporal motion blur: each frame the mean of the ``c`` frames centred on it
    (fewer at the ends). The paper speaks of averaging 3-11 frames; its script
    averages the 2c frames from c before to c - 1 after, we keep the paper's
    centred window, which does not shift the video in time."""
    c = TEMPORAL_BLUR_FRAMES[severity - 1]
    x = torch.from_numpy(frames.astype(np.float32))
    sums = nnf.pad(x.cumsum(0), (0, 0, 0, 0, 0, 0, 1, 0))  # sums[t] = frames[:t].sum()
    t = np.arange(len(frames))
    lo, hi = np.clip(t - c // 2, 0, len(frames)), np.clip(t + c // 2 + 1, 0, len(frames))
    mean = (sums[hi] - sums[lo]) / torch.from_numpy(hi - lo).float()[:, None, None, None]
    return _uint8(mean)


def _disk(radius: float, alias_sigma: float) -> torch.Tensor:
    """A normalised disk, smoothed by a small Gaussian against aliasing (ImageNet-C's defocus)."""
    r = max(int(np.ceil(radius)), 1) + 1
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    disk = torch.from_numpy((xx**2 + yy**2 <= max(radius, 0.5) ** 2).astype(np.float32))
    disk = F.gaussian_blur(disk[None, None], [3, 3], [alias_sigma, alias_sigma])[0, 0]
    return disk / disk.sum()


def defocus_blur(frames: np.ndarray, rng: np.random.Generator, severity: int) -> np.ndarray:
    radius, alias = DEFOCUS[severity - 1]
    return _filter(frames, _disk(_px(frames, radius), alias))


def motion_blur_sch(frames: np.ndarray, rng: np.random.Generator, severity: int) -> np.ndarray:
    """ImageMagick's motion blur: a one-sided line of ``radius`` pixels with Gaussian
    weights (``sigma``) behind each pixel, at an angle ~ U(-45, 45) degrees. The
    source draws the angle per frame; here one per video, so a static video stays static."""
    radius, sigma = (_px(frames, v) for v in MOTION_BLUR_SCH[severity - 1])
    angle = np.deg2rad(rng.uniform(-45, 45))
    steps = np.arange(int(np.ceil(radius)) + 1)
    weights = np.exp(-(steps**2) / (2 * sigma**2))
    r = len(steps) - 1
    kernel = np.zeros((2 * r + 1, 2 * r + 1), dtype=np.float32)
    ys = r - np.rint(steps * np.sin(angle)).astype(int)
    xs = r - np.rint(steps * np.cos(angle)).astype(int)
    np.add.at(kernel, (ys, xs), weights)
    return _filter(frames, torch.from_numpy(kernel / kernel.sum()))


def zoom_blur(frames: np.ndarray, rng: np.random.Generator, severity: int) -> np.ndarray:
    """The mean of the frame and of its centre zoomed by each factor from 1 by ``step``
    (below ``stop``), bilinear."""
    stop, step = ZOOM_BLUR[severity - 1]
    x = to_tchw(frames).float()
    h, w = x.shape[-2:]
    total = x.clone()
    zooms = np.arange(1, stop, step)
    for z in zooms:
        ch, cw = int(np.ceil(h / z)), int(np.ceil(w / z))
        top, left = (h - ch) // 2, (w - cw) // 2
        total += nnf.interpolate(
            x[..., top : top + ch, left : left + cw], size=(h, w), mode="bilinear", align_corners=False
        )
    return _uint8((total / (len(zooms) + 1)).permute(0, 2, 3, 1))


# ---------------------------------------------------------------- weather and digital (Mini Kinetics-C)


def rain(frames: np.ndarray, rng: np.random.Generator, severity: int) -> np.ndarray:
    """New streaks in every frame: one per ``area`` pixels, ``length`` long, slanted by
    one pixel, grey 220; a streak lightens what is under it the more the darker the
    frame is, is softened by a 3x3 box blur, and the frame's contrast drops to ``darken``."""
    area, length, darken = RAIN[severity - 1]
    n, h, w, _ = frames.shape
    length = max(int(round(_px(frames, length))), 1)
    drops = max(h * w // area, 1)
    mask = np.zeros((n, h, w), dtype=np.float32)
    u = np.linspace(0, 1, length + 1)
    f = np.repeat(np.arange(n), drops)
    x0, y0 = rng.integers(0, w, n * drops), rng.integers(0, max(h - length, 1), n * drops)
    ys = np.clip(y0[:, None] + np.rint(u * length).astype(int), 0, h - 1)
    xs = np.clip(x0[:, None] - np.rint(u).astype(int), 0, w - 1)
    mask[np.repeat(f, len(u)), ys.ravel(), xs.ravel()] = 220 / 255
    x = frames.astype(np.float32)
    dark = 1 - x.mean(axis=(1, 2, 3), keepdims=True) / 255
    streaked = np.clip(x + mask[..., None] * (255 - x) * dark, 0, 255).astype(np.uint8)
    soft = _filter(streaked, torch.full((3, 3), 1 / 9)).astype(np.float32)
    out = soft * mask[..., None] + x * (1 - mask[..., None])
    mean = out.mean(axis=(1, 2), keepdims=True)
    return _uint8((out - mean) * darken + mean)


def _plasma(size: int, decay: float, rng: np.random.Generator) -> np.ndarray:
    """Diamond-square fractal noise on a ``size`` x ``size`` torus (a power of two), in
    0..1. Each octave's noise is ``decay**2`` times weaker than the last, as in the
    fog of ImageNet-C and Mini Kinetics-C."""
    m = np.zeros((size, size))
    step, amp = size, 1.0
    while step > 1:
        half = step // 2
        corners = m[::step, ::step]
        m[half::step, half::step] = (
            corners + np.roll(corners, -1, 0) + np.roll(corners, -1, 1) + np.roll(corners, (-1, -1), (0, 1))
        ) / 4 + amp * rng.uniform(-1, 1, corners.shape)
        centres = m[half::step, half::step]
        m[::step, half::step] = (
            corners + np.roll(corners, -1, 1) + centres + np.roll(centres, 1, 0)
        ) / 4 + amp * rng.uniform(-1, 1, corners.shape)
        m[half::step, ::step] = (
            corners + np.roll(corners, -1, 0) + centres + np.roll(centres, 1, 1)
        ) / 4 + amp * rng.uniform(-1, 1, corners.shape)
        step, amp = half, amp / decay**2
    return (m - m.min()) / (m.max() - m.min())


def fog(frames: np.ndarray, rng: np.random.Generator, severity: int) -> np.ndarray:
    """One fractal fog layer for the whole clip (the source's 256-pixel map, stretched
    over the frame), added, then each frame rescaled by ``max / (max + strength)``."""
    strength, decay = FOG[severity - 1]
    layer = torch.from_numpy(_plasma(256, decay, rng)).float()[None, None]
    layer = nnf.interpolate(layer, size=frames.shape[1:3], mode="bilinear", align_corners=False)[0, 0].numpy()
    x = _unit(frames)
    top = x.max(axis=(1, 2, 3), keepdims=True)
    return _uint8((x + strength * layer[..., None]) * top / (top + strength), 1)


def contrast_mkc(frames: np.ndarray, rng: np.random.Generator, severity: int) -> np.ndarray:
    """Each frame's channels pulled towards their means by the factor ``c``."""
    x = _unit(frames)
    mean = x.mean(axis=(1, 2), keepdims=True)
    return _uint8((x - mean) * CONTRAST_MKC[severity - 1] + mean, 1)


def brightness_mkc(frames: np.ndarray, rng: np.random.Generator, severity: int) -> np.ndarray:
    """HSV value + c at the same hue and saturation: the RGB values scale by V'/V
    (black becomes grey V')."""
    x = _unit(frames)
    value = x.max(-1, keepdims=True)
    new = np.minimum(value + BRIGHTNESS_MKC[severity - 1], 1)
    return _uint8(np.where(value > 0, x * new / np.maximum(value, 1e-12), new), 1)


def saturate(frames: np.ndarray, rng: np.random.Generator, severity: int) -> np.ndarray:
    """HSV saturation * a + b at the same hue and value: each channel's distance below
    the value scales by S'/S. Severities 1-2 desaturate, 3-5 oversaturate, so the
    distortion does not grow monotonically. Grey pixels (no hue) stay grey."""
    a, b = SATURATE[severity - 1]
    x = _unit(frames)
    value = x.max(-1, keepdims=True)
    sat = np.divide(value - x.min(-1, keepdims=True), value, out=np.zeros_like(value), where=value > 0)
    new = np.clip(sat * a + b, 0, 1)
    ratio = np.divide(new, sat, out=np.ones_like(sat), where=sat > 0)
    return _uint8(value - (value - x) * ratio, 1)


# ---------------------------------------------------------------- codecs (Mini Kinetics-C)

# Reproducible bitstreams: x264's assembly made about 1 encode in 150 differ from the others in
# one process (same input, one thread); its C code does not, at ~2x the time (~20 ms a demo clip).
# x265 runs on one thread, silent, on frames of at least 80 pixels a side: below 64 it corrupted
# the heap, at 64 half of its CRF 51 encodes differed.
CODEC_OPTIONS = {
    "libx264": {"x264-params": "asm=0"},
    "libx265": {"x265-params": "log-level=none:pools=none:frame-threads=1"},
}
MIN_SIDE = {"libx264": 16, "libx265": 80}


def _encode(frames: np.ndarray, codec: str, crf: int) -> tuple[bytes, list[av.Packet]]:
    """The parameter sets (as a container would keep them, out of the damage's reach) and
    one packet per frame, ``pts`` = frame index."""
    ctx = av.CodecContext.create(codec, "w")
    ctx.height, ctx.width = frames.shape[1:3]
    ctx.pix_fmt, ctx.time_base, ctx.framerate = "yuv420p", Fraction(1, 30), 30
    ctx.thread_count = 1
    ctx.flags |= Flags.global_header
    ctx.options = {"crf": str(crf), **CODEC_OPTIONS[codec]}
    packets = []
    for t, frame in enumerate(frames):
        # swscale on one thread, as items are built
        picture = av.VideoFrame.from_ndarray(frame, format="rgb24").reformat(format="yuv420p", threads=1)
        picture.pts = t
        packets += ctx.encode(picture)
    packets += ctx.encode(None)
    return bytes(ctx.extradata or b""), packets


def _decode(codec: str, extradata: bytes, packets: list[av.Packet], like: np.ndarray) -> np.ndarray:
    """Decode with FFmpeg's error concealment; frames it cannot produce repeat the last
    one it did (black before the first), as a player shows them."""
    ctx = av.CodecContext.create(codec, "r")
    ctx.thread_count = 1
    ctx.extradata = extradata
    ctx.flags |= Flags.output_corrupt
    shown: dict[int, np.ndarray] = {}
    for packet in [*packets, None]:
        try:
            shown.update((f.pts, f.to_ndarray(format="rgb24", threads=1)) for f in ctx.decode(packet))
        except av.FFmpegError:  # damage the concealment gave up on: that frame is missing
            continue
    out = np.zeros_like(like)
    for t in range(len(like)):
        if t in shown:
            out[t] = shown[t]
        elif t:
            out[t] = out[t - 1]
    return out


def _transcode(
    frames: np.ndarray, codec: str, crf: int, damage: Callable[[list[av.Packet]], list[av.Packet]] | None = None
) -> np.ndarray:
    """Encode, optionally damage the packets, decode. 4:2:0 needs even sides, the codecs a
    ``MIN_SIDE``: frames are padded to that by repeating the edge, and cropped again."""
    h, w = frames.shape[1:3]
    pad = [max(MIN_SIDE[codec], side + side % 2) - side for side in (h, w)]
    padded = np.pad(frames, ((0, 0), (0, pad[0]), (0, pad[1]), (0, 0)), mode="edge")
    extradata, packets = _encode(padded, codec, crf)
    decoder = {"libx264": "h264", "libx265": "hevc"}[codec]
    return _decode(decoder, extradata, damage(packets) if damage else packets, padded)[:, :h, :w]


def _packet(data: bytes, like: av.Packet) -> av.Packet:
    packet = av.Packet(data)
    packet.pts, packet.dts = like.pts, like.dts
    return packet


def h264_crf(frames: np.ndarray, rng: np.random.Generator, severity: int) -> np.ndarray:
    return _transcode(frames, "libx264", H264_CRF[severity - 1])


def h265_crf(frames: np.ndarray, rng: np.random.Generator, severity: int) -> np.ndarray:
    return _transcode(frames, "libx265", H265_CRF[severity - 1])


def bit_error(frames: np.ndarray, rng: np.random.Generator, severity: int) -> np.ndarray:
    """H.264 at CRF 23 with each byte of the coded frames replaced by a random one with
    probability 1/n (ffmpeg's ``noise`` bitstream filter, the source's tool, at its
    levels). The source damaged whole files; a demo clip's 16 frames code to ~3.3 KB,
    so at these rates 3 % (s1) to 28 % (s5) of clips take a hit, and one in the
    keyframe spoils every later frame, as a hit did in the source until the next keyframe."""
    rate = 1 / BIT_ERROR_BYTES[severity - 1]

    def flip(packets: list[av.Packet]) -> list[av.Packet]:
        out = []
        for p in packets:
            data = np.frombuffer(bytes(p), np.uint8).copy()
            hit = rng.random(len(data)) < rate
            data[hit] = rng.integers(0, 256, int(hit.sum()))
            out.append(_packet(data.tobytes(), p))
        return out

    return _transcode(frames, "libx264", 23, flip)


def packet_loss(frames: np.ndarray, rng: np.random.Generator, severity: int) -> np.ndarray:
    """H.264 at CRF 23 sent as RTP packets of 1400 bytes, each lost with probability p.
    x264 codes a frame as one slice, whose fragments are useless without all the
    others, so a frame is lost with ``1 - (1 - p)**packets``; the decoder conceals
    the gap and the frames that referenced it drift. The source names packet loss
    without levels: p = 1, 2, 5, 10, 20 % spans watchable glitches to an unusable
    stream."""
    p = PACKET_LOSS[severity - 1]

    def lose(packets: list[av.Packet]) -> list[av.Packet]:
        survive = [(1 - p) ** -(-packet.size // 1400) for packet in packets]
        return [packet for packet, s in zip(packets, survive) if rng.random() < s]

    return _transcode(frames, "libx264", 23, lose)


# ---------------------------------------------------------------- camera (Schiappa et al.)


def translate(frames: np.ndarray, rng: np.random.Generator, severity: int) -> np.ndarray:
    """The whole video shifted up and left by up to ``d`` pixels on each axis (one draw,
    black fill), as the source's offset crop."""
    d = max(int(round(_px(frames, TRANSLATE_PX[severity - 1]))), 1)
    dy, dx = rng.integers(0, d, 2)
    return _warp(frames, np.zeros(1), (-float(dy), -float(dx)))


def rotate(frames: np.ndarray, rng: np.random.Generator, severity: int) -> np.ndarray:
    """Every frame rotated by its own whole-degree angle in [-d, d]: a shaking camera."""
    d = ROTATE_DEG[severity - 1]
    return _warp(frames, rng.integers(-d, d + 1, len(frames)).astype(float))


def static_rotate(frames: np.ndarray, rng: np.random.Generator, severity: int) -> np.ndarray:
    return _warp(frames, np.array([STATIC_ROTATE_DEG[severity - 1]]))


# ---------------------------------------------------------------- temporal


def _hold(n: int, ratio: float, rng: np.random.Generator) -> np.ndarray:
    """Frame map of a video recorded at ``1/ratio`` of the frame rate and shown on the
    original timeline: every ``ratio``-th frame, each shown until the next, at a random
    phase. Before the first kept frame, frame 0 stands in for the kept one before it."""
    phase = rng.uniform(0, ratio)
    kept_time = np.floor((np.arange(n) + phase) / ratio) * ratio - phase
    return np.clip(np.floor(kept_time), 0, n - 1).astype(int)


def frame_rate(frames: np.ndarray, rng: np.random.Generator, severity: int) -> np.ndarray:
    """The video at 20, 16, 12, 9 or 6 fps instead of 30 (the source re-encodes with
    ffmpeg's ``-r``), each frame held until the next, as a loader that samples by time
    sees it. An index-sampling loader fed the shorter file would see a faster clip
    instead; that needs the corruption to see the whole video (module docstring)."""
    return frames[_hold(len(frames), 30 / FRAME_RATE_FPS[severity - 1], rng)]


def sampling(frames: np.ndarray, rng: np.random.Generator, severity: int) -> np.ndarray:
    """Every k-th frame kept, k = 2..32, each repeated k times: the source's subsampled
    clip brought back to its length as its (later removed) ``repeat_interleave`` did."""
    return frames[_hold(len(frames), SAMPLING_RATE[severity - 1], rng)]


def reversal(frames: np.ndarray, rng: np.random.Generator, severity: int) -> np.ndarray:
    """The video played backwards. No severity: the source reverses a clip it first
    subsampled at ``sampling``'s rates; keeping reversal pure separates the effect of
    order from that of the frame rate, which ``sampling`` measures."""
    return frames[::-1].copy()


def jumble(frames: np.ndarray, rng: np.random.Generator, severity: int) -> np.ndarray:
    """Frames shuffled within consecutive windows of 32, 16, 8, 4, 2 frames (the source's
    order: severity 1 has the widest windows, so the most displaced frames)."""
    w, n = JUMBLE_WINDOW[severity - 1], len(frames)
    return frames[np.concatenate([s + rng.permutation(min(w, n - s)) for s in range(0, n, w)])]


def box_jumble(frames: np.ndarray, rng: np.random.Generator, severity: int) -> np.ndarray:
    """Consecutive segments of 4, 9, 16, 25, 36 frames played in a random order other
    than the original. Segments are at most half the frames, so that there are two to
    swap (the source had 128 frames; a demo clip decodes 16)."""
    n = len(frames)
    s = max(min(BOX_JUMBLE_SEGMENT[severity - 1], n // 2), 1)
    segments = np.array_split(np.arange(n), range(s, n, s))
    order = np.arange(len(segments))
    while len(order) > 1 and (order == np.arange(len(order))).all():
        order = rng.permutation(len(segments))
    return frames[np.concatenate([segments[i] for i in order])]


def freeze(frames: np.ndarray, rng: np.random.Generator, severity: int) -> np.ndarray:
    """Only a share of frames updates (40, 20, 10, 5 %, then just the first); every other
    frame repeats the last update. The source picks the updates at random and starts
    the video at the first; here the first frame is always one. It keeps at least 2
    at 5 %; so do severities 1-3 here, or 10 % of a demo clip's 16 frames (1 update)
    would freeze more than 5 % does."""
    n = len(frames)
    share, least = FREEZE_UPDATES[severity - 1]
    updates = min(max(int(share * n), least), n)
    keep = np.zeros(n, dtype=bool)
    keep[1 + rng.permutation(n - 1)[: updates - 1]] = True  # and frame 0
    return frames[_latest(keep)]


# ---------------------------------------------------------------- registry

PAPER = ("contrast", "brightness", "grayscale")
EXTENDED = ("gaussian_noise", "blur", "jpeg", "frame_drop", "jitter")
MINI_KINETICS_C = (
    "shot_noise_mkc",
    "motion_blur_mkc",
    "rain",
    "fog",
    "contrast_mkc",
    "brightness_mkc",
    "saturate",
    "bit_error",
    "packet_loss",
    "h264_crf",
    "h265_crf",
    "frame_rate",
)
SCHIAPPA = (
    "gaussian_noise_sch",
    "shot_noise_sch",
    "impulse_noise",
    "speckle_noise",
    "defocus_blur",
    "motion_blur_sch",
    "zoom_blur",
    "jpeg",
    "translate",
    "rotate",
    "static_rotate",
    "sampling",
    "reversal",
    "jumble",
    "box_jumble",
    "freeze",
)
SUITES: dict[str, tuple[str, ...]] = {
    "paper": PAPER,
    "extended": EXTENDED,
    "mini-kinetics-c": MINI_KINETICS_C,
    "schiappa": SCHIAPPA,
}
TEMPORAL = ("frame_drop", "frame_rate", "sampling", "reversal", "jumble", "box_jumble", "freeze")  # frame maps
NO_SEVERITY = {"grayscale", "reversal"}
CORRUPTIONS: dict[str, Corruption] = {name: globals()[name] for suite in SUITES.values() for name in suite}
TITLES = {
    "contrast": "Contrast Noise",
    "brightness": "Brightness Noise",
    "grayscale": "Grayscale",
    "gaussian_noise": "Gaussian Noise",
    "blur": "Blur",
    "jpeg": "JPEG",
    "frame_drop": "Frame Drop",
    "jitter": "Jitter",
    "shot_noise_mkc": "Shot Noise",
    "motion_blur_mkc": "Motion Blur (temporal)",
    "rain": "Rain",
    "fog": "Fog",
    "contrast_mkc": "Contrast",
    "brightness_mkc": "Brightness",
    "saturate": "Saturate",
    "bit_error": "Bit Error",
    "packet_loss": "Packet Loss",
    "h264_crf": "H.264 CRF",
    "h265_crf": "H.265 CRF",
    "frame_rate": "Frame Rate",
    "gaussian_noise_sch": "Gaussian Noise",
    "shot_noise_sch": "Shot Noise",
    "impulse_noise": "Impulse Noise",
    "speckle_noise": "Speckle Noise",
    "defocus_blur": "Defocus Blur",
    "motion_blur_sch": "Motion Blur",
    "zoom_blur": "Zoom Blur",
    "translate": "Translate",
    "rotate": "Rotate",
    "static_rotate": "Static Rotate",
    "sampling": "Sampling Rate",
    "reversal": "Reversal",
    "jumble": "Jumble",
    "box_jumble": "Box Jumble",
    "freeze": "Freeze",
}


def corrupt(frames: np.ndarray, name: str, severity: int = 3, rng: np.random.Generator | None = None) -> np.ndarray:
    """Corrupt uint8 frames ``(M, H, W, 3)`` of one video; same shape and dtype back.

    ``functools.partial(corrupt, name=..., severity=...)`` is an ``EvalDataset``
    corruption (it passes a per-video ``rng``).
    """
    if name not in CORRUPTIONS:
        raise ArgumentError(f"unknown corruption {name!r}; choose from {list(CORRUPTIONS)}")
    if severity not in SEVERITIES:
        raise ArgumentError(f"severity of {name}: must be one of {SEVERITIES}, got {severity}")
    return CORRUPTIONS[name](frames, rng if rng is not None else np.random.default_rng(0), severity)
