"""Grad-CAM attention maps of 3D CNNs on video clips (supplement section C, Figure 4).

``pytorch_grad_cam`` handles 5-D activations and returns one map per input frame.
The default layer is ``layer3``: it keeps T/4 time steps (``layer4`` has T/8,
a single step for an 8-frame clip, so its map could not move with the action).

A video is either a file / rawframe folder, or ``"test:K"``: the K-th video of
the run's test list, read exactly as evaluation reads it (centre clip and crop).
"""

from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from torch import nn

from tgsemi.analysis import as_runs, labels
from tgsemi.data.transforms import MEAN, STD
from tgsemi.errors import ArgumentError, TgsemiError, VideoReadError
from tgsemi.extras import require
from tgsemi.runs import Run

LAYERS = ("stem", "layer1", "layer2", "layer3", "layer4")  # the stages of R3D18 a map can be taken at
DEFAULT_LAYER = "layer3"


class _Logits(nn.Module):
    """A stream network seen as ``clip -> logits``, the interface Grad-CAM expects."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).logits


@contextlib.contextmanager
def _gradients_from(net: nn.Module, layer: nn.Module) -> Iterator[None]:
    """Backpropagate only from the logits down to ``layer``'s output.

    Grad-CAM needs no weight gradients: with the weights frozen, the layers
    before ``layer`` build no graph and the backward pass stops at its output,
    which more than halves the cost of a map on a CPU.
    """
    flags = [(p, p.requires_grad) for p in net.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    handle = layer.register_forward_hook(lambda module, args, out: out.detach().requires_grad_())
    try:
        yield
    finally:
        handle.remove()
        for p, flag in flags:
            p.requires_grad_(flag)


def gradcam(
    net: nn.Module, clip: torch.Tensor, layer: str = DEFAULT_LAYER, target: str | int = "pred"
) -> tuple[np.ndarray, int]:
    """Grad-CAM of one normalised clip ``(C, T, H, W)`` -> (map ``(T, H, W)`` in [0, 1], predicted class).

    ``target``: "pred" explains the predicted class, an int explains that class.
    """
    GradCAM = require("pytorch_grad_cam", "Grad-CAM").GradCAM
    ClassifierOutputTarget = require("pytorch_grad_cam.utils.model_targets", "Grad-CAM").ClassifierOutputTarget
    if layer not in LAYERS:
        raise ArgumentError(f"no layer {layer!r} for Grad-CAM: choose from {', '.join(LAYERS)}")
    module = getattr(net, layer)
    targets = None if target == "pred" else [ClassifierOutputTarget(int(target))]
    was_training = net.training
    with _gradients_from(net, module), GradCAM(_Logits(net), [module]) as cam:
        maps = cam(clip[None].to(next(net.parameters()).device), targets)
        pred = int(cam.outputs.argmax(1)[0])
    net.train(was_training)
    return np.clip(maps[0], 0.0, 1.0), pred


def overlay(frames: np.ndarray, cam: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend a jet-coloured map ``(T, H, W)`` into uint8 frames ``(T, H, W, 3)``."""
    from matplotlib import colormaps

    if frames.shape[:3] != cam.shape:
        raise ArgumentError(f"frames {frames.shape} and map {cam.shape} differ in (T, H, W)")
    heat = colormaps["jet"](cam)[..., :3] * 255
    return np.clip((1 - alpha) * frames + alpha * heat, 0, 255).astype(np.uint8)


def to_frames(clip: torch.Tensor) -> np.ndarray:
    """Normalised ``(C, T, H, W)`` -> uint8 ``(T, H, W, 3)`` (what the network saw)."""
    x = clip * STD[:, None, None, None] + MEAN[:, None, None, None]
    return x.permute(1, 2, 3, 0).round().clamp(0, 255).to(torch.uint8).numpy()


def load_clip(run: Run, video: str | Path) -> dict:
    """The centre test clip of ``video`` ("test:K" or a path) as ``run`` evaluates it:
    ``{"rgb", "tg"}`` normalised ``(C, T, H, W)``, ``label`` (-1 for a path), ``name``."""
    text = str(video)
    if text.startswith("test:"):
        ds = run.dataset("test")
        k = int(text[5:]) if text[5:].isdigit() else -1
        if not 0 <= k < len(ds):
            raise TgsemiError(
                f"{text}: K must be a test video index, and the test list of {run.path} has "
                f"{len(ds)} videos (0..{len(ds) - 1})"
            )
        name = ds.samples[k].path
    else:
        path = Path(video)
        ds = run.file_dataset([path])
        k, name = 0, str(path)
    item = ds[k]
    if not item["ok"]:
        raise VideoReadError(ds.paths[k], "cannot be decoded (see the warning above)")
    return {"rgb": item["rgb"][0], "tg": item["tg"][0], "label": item["label"], "name": name}


def _resolve_target(target: str | int, label: int, num_classes: int) -> str | int:
    if target == "pred":
        return target
    if target == "true":
        if label < 0:
            raise TgsemiError("--target true needs a labelled video: use test:K")
        return label
    k = int(target)
    if not 0 <= k < num_classes:
        raise TgsemiError(f"target class {k} out of range: the model has {num_classes} classes")
    return k


def gradcam_video(
    runs: Sequence[Run | str | Path],
    video: str | Path,
    out_dir: str | Path,
    layer: str = DEFAULT_LAYER,
    target: str | int = "pred",
    modalities: Sequence[str] | None = None,
    alpha: float = 0.5,
) -> dict[str, Path]:
    """Grad-CAM of every chosen network (default: every stream of every run) on one video.

    Writes ``gradcam_<video>.png`` (rows: the input RGB and TG frames, then one
    row of overlays per network, all on the RGB frames), ``.gif`` (the same,
    frame by frame) and ``.json`` (predictions per row); returns their paths.
    """
    runs = as_runs(runs)
    views = [(run, m) for run in runs for m in run.model.streams if modalities is None or m in modalities]
    if not views:
        raise TgsemiError(f"none of the runs has a network for modalities {list(modalities or [])}")
    rows, meta = [], []
    clips = {}
    for (run, modality), label in zip(views, labels(views)):
        if run.path not in clips:
            clips[run.path] = load_clip(run, video)
        clip = clips[run.path]
        tgt = _resolve_target(target, clip["label"], len(run.class_names))
        cam, pred = gradcam(run.net(modality), clip[modality], layer, tgt)
        verdict = "" if clip["label"] < 0 else (" (right)" if pred == clip["label"] else " (wrong)")
        rows.append((f"{label}\n{run.class_names[pred]}{verdict}", overlay(to_frames(clip["rgb"]), cam, alpha)))
        meta.append(
            {
                "label": label,
                "run": str(run.path),
                "modality": modality,
                "pred": pred,
                "pred_name": run.class_names[pred],
                "target": tgt,
            }
        )
    first = clips[views[0][0].path]
    rows = [("input RGB", to_frames(first["rgb"])), ("input TG", to_frames(first["tg"]))] + rows
    true = views[0][0].class_names[first["label"]] if first["label"] >= 0 else None
    title = f"{first['name']}" + (f" (true: {true})" if true else "") + f", Grad-CAM at {layer}"
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    text = str(video)
    stem = "gradcam_" + (f"test{text[5:]}" if text.startswith("test:") else re.sub(r"[^\w-]", "_", Path(text).stem))
    paths = {"png": out / f"{stem}.png", "gif": out / f"{stem}.gif", "json": out / f"{stem}.json"}
    _save_grid(rows, title, paths["png"])
    _save_gif(rows, paths["gif"])
    paths["json"].write_text(json.dumps({"video": first["name"], "true": true, "layer": layer, "rows": meta}, indent=1))
    return paths


def _save_grid(rows: list[tuple[str, np.ndarray]], title: str, path: Path) -> None:
    from matplotlib.figure import Figure

    t = max(len(frames) for _, frames in rows)
    fig = Figure(figsize=(1.3 * t + 1.5, 1.4 * len(rows) + 0.4), layout="constrained")
    axes = fig.subplots(len(rows), t, squeeze=False)
    for r, (name, frames) in enumerate(rows):
        for i, ax in enumerate(axes[r]):
            ax.set_xticks([])
            ax.set_yticks([])
            if i < len(frames):
                ax.imshow(frames[i])
            if r == 0:
                ax.set_title(f"t={i}", fontsize="small")
        axes[r][0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize="small")
    fig.suptitle(title, fontsize="medium")
    fig.savefig(path, dpi=100)


def _save_gif(rows: list[tuple[str, np.ndarray]], path: Path, tile: int = 192, ms_per_frame: int = 250) -> None:
    """One GIF frame per time step: the rows' tiles stacked side by side, each captioned."""
    from PIL import Image, ImageDraw

    t = min(len(frames) for _, frames in rows)
    images = []
    for i in range(t):
        tiles = []
        for name, frames in rows:
            im = Image.fromarray(frames[i]).resize(
                (tile, tile * frames.shape[1] // frames.shape[2]), Image.Resampling.NEAREST
            )
            ImageDraw.Draw(im).text((3, 2), name, fill="white", stroke_width=2, stroke_fill="black")
            tiles.append(im)
        canvas = Image.new("RGB", (tile * len(tiles), max(im.height for im in tiles)))
        for j, im in enumerate(tiles):
            canvas.paste(im, (j * tile, 0))
        images.append(canvas)
    images[0].save(path, save_all=True, append_images=images[1:], duration=ms_per_frame, loop=0)
