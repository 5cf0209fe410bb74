"""Fig. 4 interactively: Grad-CAM of two networks on one test video, frame by frame."""

from __future__ import annotations

from itertools import combinations
from pathlib import Path

import ipywidgets as widgets
import numpy as np

from tgsemi.analysis import labels
from tgsemi.analysis.gradcam import DEFAULT_LAYER, LAYERS, gradcam, load_clip, overlay, to_frames
from tgsemi.widgets.images import captioned, image_slot, png
from tgsemi.widgets.workspace import as_list, video_choices


class GradCamViewer(widgets.VBox):
    """Video, pair of networks, layer, target class, frame and overlay opacity.

    Maps are computed once per (video, network, layer, target) and cached: moving
    the frame or opacity slider only re-blends.
    """

    def __init__(self, runs, width: int = 200, videos: list[str | Path] | None = None):
        self.runs = as_list(runs)
        self.views = [(run, m) for run in self.runs for m in run.model.streams]
        names = labels(self.views)
        pairs = {f"{names[i]} vs {names[j]}": (i, j) for i, j in combinations(range(len(self.views)), 2)}
        rgb_pairs = [p for p, (i, j) in pairs.items() if self.views[i][1] == self.views[j][1] == "rgb"]
        self.names, self.width = names, width
        classes = self.runs[0].class_names
        self.video = widgets.Dropdown(
            options=video_choices(self.runs[0], videos), description="video", layout=widgets.Layout(width="520px")
        )
        pairs = pairs or {names[0]: (0, 0)}  # a single network: shown twice
        default = pairs[rgb_pairs[0]] if rgb_pairs else next(iter(pairs.values()))
        self.pair = widgets.Dropdown(options=pairs, value=default, description="networks")
        self.layer = widgets.Dropdown(options=LAYERS, value=DEFAULT_LAYER, description="layer")
        self.target = widgets.Dropdown(
            options={
                "predicted class": "pred",
                "true class": "true",
                **{f"class {k}: {c}": k for k, c in enumerate(classes)},
            },
            description="explain",
        )
        self.frame = widgets.IntSlider(0, 0, self.runs[0].cfg.data.clip_len - 1, description="frame")
        self.opacity = widgets.FloatSlider(0.5, min=0.0, max=1.0, step=0.05, description="opacity")
        self.inputs = [image_slot(width) for _ in range(2)]
        self.overlays = [image_slot(width) for _ in range(2)]
        self.captions = [widgets.HTML() for _ in range(2)]
        self._clips: dict = {}
        self._cams: dict = {}
        for w in (self.video, self.pair, self.layer, self.target):
            w.observe(lambda _: self.draw(), "value")
        for w in (self.frame, self.opacity):
            w.observe(lambda _: self.blend(), "value")
        panels = [captioned("input RGB", self.inputs[0]), captioned("input TG", self.inputs[1])]
        panels += [captioned(c, im) for c, im in zip(self.captions, self.overlays)]
        super().__init__(
            [
                widgets.HBox([self.video, self.pair]),
                widgets.HBox([self.layer, self.target]),
                widgets.HBox([self.frame, self.opacity]),
                widgets.HBox(panels),
            ]
        )
        self.draw()

    def _clip(self, run) -> dict:
        key = (run.path, self.video.value)
        if key not in self._clips:
            video = self.video.value  # a test index or a file
            self._clips[key] = load_clip(run, f"test:{video}" if isinstance(video, int) else video)
        return self._clips[key]

    def _cam(self, view: int) -> tuple[np.ndarray, int, int]:
        """(map (T, H, W), predicted class, explained class) of one network, cached."""
        run, modality = self.views[view]
        clip = self._clip(run)
        target = clip["label"] if self.target.value == "true" else self.target.value
        target = "pred" if target == -1 else target  # "true" on a file of unknown class: explain the prediction
        key = (view, self.video.value, self.layer.value, target)
        if key not in self._cams:
            cam, pred = gradcam(run.net(modality), clip[modality], self.layer.value, target)
            self._cams[key] = (cam, pred, pred if target == "pred" else target)
        return self._cams[key]

    def draw(self) -> None:
        for side, view in enumerate(self.pair.value):
            run, modality = self.views[view]
            cam, pred, explained = self._cam(view)
            label = self._clip(run)["label"]
            verdict = "" if label < 0 else " (right)" if pred == label else " (wrong)"
            self.captions[side].value = (
                f"<b>{self.names[view]}</b>: predicts {run.class_names[pred]}{verdict};"
                f"<br>map for {run.class_names[explained]}"
            )
        self.blend()

    def blend(self) -> None:
        t = self.frame.value
        first = self._clip(self.views[self.pair.value[0]][0])
        rgb = to_frames(first["rgb"])
        self.inputs[0].value = png(rgb[t], self.width)
        self.inputs[1].value = png(to_frames(first["tg"])[t], self.width)
        for side, view in enumerate(self.pair.value):
            frames = to_frames(self._clip(self.views[view][0])["rgb"])
            cam = self._cam(view)[0]
            blended = overlay(frames[t : t + 1], cam[t : t + 1], self.opacity.value)[0]
            self.overlays[side].value = png(blended, self.width)


def gradcam_viewer(runs, videos: list[str | Path] | None = None) -> GradCamViewer:
    """``runs``: run folders, checkpoints or loaded runs; ``videos``: any video files to offer besides the
    test videos."""
    return GradCamViewer(runs, videos=videos)
