"""Arrays and figures -> PNG bytes for ``ipywidgets.Image``, plus the TG colour map."""

from __future__ import annotations

import io

import ipywidgets as widgets
import matplotlib
import numpy as np
from matplotlib.figure import Figure
from PIL import Image

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


def image_slot(width: int = WIDTH) -> widgets.Image:
    """An image of fixed display width (a flex box would otherwise stretch it)."""
    return widgets.Image(format="png", width=str(width))


def captioned(caption: str | widgets.Widget, image: widgets.Image) -> widgets.VBox:
    """A caption (bold text, or any widget) above an image, as wide as the image."""
    label = widgets.HTML(f"<b>{caption}</b>") if isinstance(caption, str) else caption
    return widgets.VBox([label, image], layout=widgets.Layout(width=f"{int(image.width) + 6}px"))
