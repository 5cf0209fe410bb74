"""Arrays and figures -> PNG bytes for ``ipywidgets.Image``, plus the TG colour map."""
from __future__ import annotations

import io

import ipywidgets as widgets
import matplotlib
import numpy as np
import torch
from matplotlib.figure import Figure
from PIL import Image

from tgsemi.data.transforms import MEAN, STD

WIDTH = 240  # display width of one frame in a panel, pixels


def png(image: np.ndarray, width: int = WIDTH) -> bytes:
    """uint8 ``(H, W, 3)`` -> PNG scaled to ``width`` (nearest neighbour when
    enlarging, so the pixels of a 28-pixel model input stay visible)."""
    im = Image.fromarray(np.ascontiguousarray(image))
    height = max(1, round(im.height * width / im.width))
    im = im.resize((width, height), Image.NEAREST if width > im.width else Image.BILINEAR)
    buf = io.BytesIO()
    im.save(buf, format="png")
    return buf.getvalue()


def figure_png(fig: Figure, dpi: int = 80) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return buf.getvalue()


def tg_colour(tg: np.ndarray, vmax: float = 24.0) -> np.ndarray:
    """Signed TG (channel mean, 127.5 = no change) through a diverging map: red
    where a pixel got darker from this frame to the next, blue where it got brighter."""
    signed = tg.astype(np.float32).mean(-1) - 127.5
    rgba = matplotlib.colormaps["RdBu_r"](np.clip(0.5 + signed / (2 * vmax), 0, 1))
    return (rgba[..., :3] * 255).astype(np.uint8)


def unnormalize(clip: torch.Tensor) -> np.ndarray:
    """A normalised model input ``(C, T, H, W)`` -> uint8 frames ``(T, H, W, 3)``."""
    x = clip.permute(1, 2, 3, 0) * STD + MEAN
    return x.round().clamp(0, 255).to(torch.uint8).numpy()


def captioned(title: str, image: widgets.Image) -> widgets.VBox:
    return widgets.VBox([widgets.HTML(f"<b>{title}</b>"), image])
