"""Test-time input corruptions (supplement section B, Table 5) and their effect on accuracy.

A corruption acts on the raw decoded frames of a video, before the temporal
gradient is taken, with one parameter draw per video shared by all its frames,
so that a TG network sees what the corruption does to the *change* between
frames: a global contrast or brightness change largely cancels in the TG.

The paper's three: contrast and brightness noise (PIL ``ImageEnhance`` with a
random factor per video, as imgaug's EnhanceContrast/EnhanceBrightness, whose
default factor range (0.5, 1.5) is severity 3 here) and grayscale (which has
no severity). The extended suite, five severities each: gaussian noise, blur,
JPEG compression, frame drops (the previous frame repeats, as a player does on
a stall) and jitter (camera shake: a random shift per frame).
"""
from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torchvision.io import decode_jpeg, encode_jpeg
from torchvision.transforms.v2 import functional as F
from tqdm import tqdm

from tgsemi.analysis import as_runs, labels, predict_views, top1, views_of
from tgsemi.errors import TgsemiError
from tgsemi.runs import Run

SEVERITIES = (1, 2, 3, 4, 5)
ENHANCE_SPREAD = (0.1, 0.25, 0.5, 0.75, 0.9)  # factor ~ U(1 - s, 1 + s)
NOISE_STD = (8.0, 16.0, 24.0, 36.0, 48.0)  # on the 0..255 scale
BLUR_SIGMA = (0.5, 1.0, 1.5, 2.0, 3.0)  # pixels
JPEG_QUALITY = (25, 18, 15, 10, 7)  # ImageNet-C's levels
DROP_PROB = (0.1, 0.2, 0.3, 0.45, 0.6)
JITTER_PX = (1, 2, 3, 4, 6)


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


def gaussian_noise(frames: np.ndarray, rng: np.random.Generator, severity: int) -> np.ndarray:
    noise = rng.standard_normal(frames.shape, dtype=np.float32) * NOISE_STD[severity - 1]
    return np.clip(frames + noise, 0, 255).astype(np.uint8)


def _tensor(frames: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)


def blur(frames: np.ndarray, rng: np.random.Generator, severity: int) -> np.ndarray:
    sigma = BLUR_SIGMA[severity - 1]
    k = 2 * int(np.ceil(3 * sigma)) + 1
    return F.gaussian_blur(_tensor(frames), [k, k], [sigma, sigma]).permute(0, 2, 3, 1).numpy()


def jpeg(frames: np.ndarray, rng: np.random.Generator, severity: int) -> np.ndarray:
    encoded = encode_jpeg(list(_tensor(frames)), quality=JPEG_QUALITY[severity - 1])
    return torch.stack(decode_jpeg(encoded)).permute(0, 2, 3, 1).numpy()


def frame_drop(frames: np.ndarray, rng: np.random.Generator, severity: int) -> np.ndarray:
    """Each frame after the first is lost with probability p and the last kept one
    shows instead. ``frames`` are the ones decoded for the clips (pairs ``i, i+1``),
    so a lost ``i+1`` zeroes that TG frame and a lost ``i`` is a longer stall."""
    keep = rng.random(len(frames)) >= DROP_PROB[severity - 1]
    keep[0] = True
    return frames[np.maximum.accumulate(np.where(keep, np.arange(len(frames)), 0))]


def jitter(frames: np.ndarray, rng: np.random.Generator, severity: int) -> np.ndarray:
    """Camera shake: every frame shifted by up to ``JITTER_PX`` pixels (edges repeated)."""
    d = JITTER_PX[severity - 1]
    shifts = np.rint(rng.uniform(-1, 1, (len(frames), 2)) * d).astype(int) + d
    h, w = frames.shape[1:3]
    padded = np.pad(frames, ((0, 0), (d, d), (d, d), (0, 0)), mode="edge")
    return np.stack([p[y:y + h, x:x + w] for p, (y, x) in zip(padded, shifts)])


Corruption = Callable[[np.ndarray, np.random.Generator, int], np.ndarray]
PAPER = ("contrast", "brightness", "grayscale")
EXTENDED = ("gaussian_noise", "blur", "jpeg", "frame_drop", "jitter")
CORRUPTIONS: dict[str, Corruption] = {
    "contrast": contrast, "brightness": brightness, "grayscale": grayscale, "gaussian_noise": gaussian_noise,
    "blur": blur, "jpeg": jpeg, "frame_drop": frame_drop, "jitter": jitter,
}
NO_SEVERITY = {"grayscale"}
TITLES = {"contrast": "Contrast Noise", "brightness": "Brightness Noise", "grayscale": "Grayscale",
          "gaussian_noise": "Gaussian Noise", "blur": "Blur", "jpeg": "JPEG", "frame_drop": "Frame Drop",
          "jitter": "Jitter"}


def corrupt(frames: np.ndarray, name: str, severity: int = 3, rng: np.random.Generator | None = None) -> np.ndarray:
    """Corrupt uint8 frames ``(M, H, W, 3)`` of one video; same shape and dtype back.

    ``functools.partial(corrupt, name=..., severity=...)`` is an ``EvalDataset``
    corruption (it passes a per-video ``rng``).
    """
    if name not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {name!r}; choose from {list(CORRUPTIONS)}")
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {SEVERITIES}, got {severity}")
    return CORRUPTIONS[name](frames, rng if rng is not None else np.random.default_rng(0), severity)


def robustness(runs: Sequence[Run | str | Path], corruptions: Sequence[str] | None = None,
               severities: Sequence[int] = (3,), modality: str | None = None, clips: int = 1,
               batch_size: int = 8, progress: bool = False) -> dict:
    """Test top-1 of each run's network, clean and under each corruption and severity.

    Accuracies are keyed ``acc[corruption][str(severity)]`` (string keys, so the
    dict survives a JSON round trip unchanged); grayscale is evaluated once and
    listed under every severity.
    """
    names = list(corruptions or CORRUPTIONS)
    unknown = [n for n in names if n not in CORRUPTIONS] + [s for s in severities if s not in SEVERITIES]
    if unknown:
        raise TgsemiError(f"unknown corruption(s) or severities {unknown}: corruptions are {list(CORRUPTIONS)}, "
                          f"severities {list(SEVERITIES)}")
    views = views_of(as_runs(runs), modality)
    severities = list(severities)
    models = [{"label": lab, "run": str(run.path), "method": run.cfg.method, "modality": m, "acc": {}}
              for lab, (run, m) in zip(labels(views), views)]
    conditions = [(None, None)] + [(n, s) for n in names for s in (severities[:1] if n in NO_SEVERITY else severities)]
    for name, s in tqdm(conditions, desc="robustness", disable=not progress):
        f = None if name is None else partial(corrupt, name=name, severity=s)
        for model, pred in zip(models, predict_views(views, "test", clips, f, batch_size)):
            if name is None:
                model["clean"] = top1(pred)
            else:  # a corruption without severity is listed under every severity
                levels = severities if name in NO_SEVERITY else [s]
                model["acc"].setdefault(name, {}).update(dict.fromkeys(map(str, levels), top1(pred)))
    return {"split": "test", "clips": clips, "severities": severities, "corruptions": names, "models": models}


def table_markdown(result: dict) -> str:
    """Table 5's layout: a row per corruption (and severity), a column per model, "acc (drop)"."""
    models = result["models"]
    one = len(result["severities"]) == 1
    lines = ["| Corruption | " + " | ".join(m["label"] for m in models) + " |", "|---" * (len(models) + 1) + "|",
             "| No Corruption | " + " | ".join(f"{m['clean']:.1f}" for m in models) + " |"]
    for name in result["corruptions"]:
        for s in result["severities"][:1] if one or name in NO_SEVERITY else result["severities"]:
            title = TITLES.get(name, name) + ("" if one or name in NO_SEVERITY else f" s{s}")
            cells = [f"{m['acc'][name][str(s)]:.1f} ({m['acc'][name][str(s)] - m['clean']:+.1f})" for m in models]
            lines.append(f"| {title} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_severity_curves(result: dict, path: str | Path) -> Path:
    """Top-1 against severity (0 = clean), one panel per corruption, one line per model."""
    from matplotlib.figure import Figure

    names = result["corruptions"]
    cols = min(4, len(names))
    rows = -(-len(names) // cols)
    fig = Figure(figsize=(3.2 * cols, 2.6 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False, sharey=True).ravel()
    x = [0, *result["severities"]]
    for ax, name in zip(axes, names):
        for m in result["models"]:
            ax.plot(x, [m["clean"], *(m["acc"][name][str(s)] for s in result["severities"])], marker="o",
                    label=m["label"])
        ax.set_title(TITLES.get(name, name) + (" (no severity)" if name in NO_SEVERITY else ""))
        ax.set_xticks(x)
        ax.set_xlabel("severity (0 = clean)")
        ax.grid(alpha=0.3)
    for ax in axes[len(names):]:
        ax.set_visible(False)
    axes[0].set_ylabel("top-1 (%)")
    axes[0].legend(fontsize="small")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path


def save(result: dict, out_dir: str | Path, stem: str = "robustness") -> dict[str, Path]:
    """Write ``stem.json``, ``stem.md`` and ``stem.png`` into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(result, indent=1))
    (out / f"{stem}.md").write_text(table_markdown(result) + "\n")
    return {"json": out / f"{stem}.json", "markdown": out / f"{stem}.md",
            "figure": plot_severity_curves(result, out / f"{stem}.png")}
