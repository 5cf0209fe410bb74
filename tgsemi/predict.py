"""A trained run applied to any video: class names and probabilities per file.

``tgsemi predict`` and ``Run.predict`` score videos that need not be in any list, with the
multi-clip x multi-crop protocol of ``tgsemi eval`` and through the same code
(``evaluate.predict``), so a file's scores equal the ones evaluation gives it. A file that cannot
be decoded is reported in its own result; the others are still predicted.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from tgsemi.data.annotations import video_files
from tgsemi.errors import ArgumentError
from tgsemi.evaluate import predict
from tgsemi.outputs import writing
from tgsemi.runtime import pick_device, use_amp

if TYPE_CHECKING:
    from tgsemi.runs import Run


@dataclass
class Prediction:
    """One video's top-k classes, best first, with their softmax probabilities (in [0, 1])."""

    path: str
    classes: list[str] = field(default_factory=list)
    probs: list[float] = field(default_factory=list)
    error: str = ""  # why the file could not be scored; empty when it was

    @property
    def ok(self) -> bool:
        return not self.error

    @property
    def label(self) -> str | None:
        """The predicted class, or None for a file that could not be decoded."""
        return self.classes[0] if self.classes else None

    def to_dict(self) -> dict:
        return {**asdict(self), "ok": self.ok}


def video_inputs(paths: Iterable[str | Path], prefix: str = "img_") -> list[Path]:
    """Files as given; a folder holding ``{prefix}*.jpg`` frames is one rawframe video, any other
    folder stands for the video files below it (sorted). Missing paths are kept: they are reported
    as undecodable like any other bad input, rather than ending the whole call."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir() and not any(p.glob(f"{prefix}*.jpg")):
            found = video_files(p)
            if not found:
                raise ArgumentError(f"{p}: a folder with neither {prefix}*.jpg frames nor video files")
            out.extend(found)
        else:
            out.append(p)
    return out


def predict_files(
    run: Run,
    paths: Iterable[str | Path],
    clips: int | None = None,
    crops: int | None = None,
    topk: int = 5,
    modality: str | None = None,
    device: str = "auto",
    batch_size: int | None = None,
    num_workers: int = 0,
) -> list[Prediction]:
    """``run``'s predictions for ``paths`` (see ``video_inputs``); clips and crops default to the
    run's evaluation protocol (``eval.clips`` x ``eval.crops``)."""
    if topk < 1:
        raise ArgumentError(f"topk must be >= 1, got {topk}")
    files = video_inputs(paths)
    ds = run.file_dataset(files, clips or run.cfg.eval.clips, crops or run.cfg.eval.crops)
    dev = pick_device(device)
    modality = modality or run.model.primary
    net = run.net(modality).to(dev)
    amp = use_amp(run.cfg.train.amp, dev)
    out = predict([(net, modality)], ds, dev, batch_size or run.cfg.eval.batch_size, num_workers, amp)[0]
    probs = out["logits"].softmax(1)
    top = probs.topk(min(topk, probs.shape[1]), dim=1)
    return [
        Prediction(str(f), [run.class_names[c] for c in idx.tolist()], [round(p, 6) for p in val.tolist()])
        if ok
        else Prediction(str(f), error=err)
        for f, ok, err, idx, val in zip(files, out["ok"].tolist(), out["errors"], top.indices, top.values)
    ]


def write_json(predictions: list[Prediction], path: str | Path) -> Path:
    """One JSON object per video (``Prediction.to_dict``); a failed write names the path."""
    path = Path(path)
    with writing(path):
        path.write_text(json.dumps([p.to_dict() for p in predictions], indent=1))
    return path


def table(predictions: list[Prediction]) -> str:
    """A Markdown table: one row per file, its top-1 with probability and the runners-up."""
    rows = ["| video | top-1 | p | next |", "|---|---|---|---|"]
    for p in predictions:
        if p.ok:
            rest = ", ".join(f"{c} {q:.2f}" for c, q in zip(p.classes[1:], p.probs[1:]))
            rows.append(f"| {p.path} | {p.label} | {p.probs[0]:.3f} | {rest} |")
        else:
            rows.append(f"| {p.path} | not decoded: {p.error} | | |")
    return "\n".join(rows)
