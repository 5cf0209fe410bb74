"""Trained runs as objects: load a run folder or checkpoint, evaluate it.

Everything downstream of training (``tgsemi eval``, robustness, Grad-CAM,
t-SNE, the report, the notebooks) starts from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from tgsemi import checkpoint
from tgsemi.config import Config, config_from_dict
from tgsemi.data.build import Splits, build_splits
from tgsemi.data.datasets import EvalDataset
from tgsemi.errors import ArgumentError
from tgsemi.evaluate import evaluate
from tgsemi.methods import get_method
from tgsemi.models import TwoStream, create_model
from tgsemi.runfiles import RunPaths


@dataclass
class Run:
    path: Path  # the run folder (or the checkpoint's folder)
    cfg: Config
    model: TwoStream
    class_names: list[str]
    step: int

    @property
    def name(self) -> str:
        return self.path.name

    def net(self, modality: str | None = None) -> torch.nn.Module:
        """The network used for inference: RGB unless asked otherwise."""
        modality = modality or self.model.primary
        if modality not in self.model.nets:
            raise ArgumentError(f"run {self.path} has no {modality!r} network (it has {list(self.model.streams)})")
        return self.model.nets[modality]

    def splits(self, data_root: str | None = None) -> Splits:
        data = self.cfg.data if data_root is None else self.cfg.data.model_copy(update={"root": data_root})
        return build_splits(data, self.cfg.seed)

    def dataset(
        self,
        split: str = "test",
        clips: int = 1,
        crops: int = 1,
        corruption: Callable[..., np.ndarray] | None = None,
        data_root: str | None = None,
    ) -> EvalDataset:
        s = self.splits(data_root)
        samples = {"test": s.test, "train": s.unlabeled, "labeled": s.labeled}[split]
        d = self.cfg.data
        crop = self.cfg.eval.crop or d.crop if crops == 3 else d.crop  # 1 crop: the validation pipeline's
        return EvalDataset(
            data_root or d.root,
            samples,
            d.clip_len,
            d.frame_interval,
            backend=d.backend,
            num_clips=clips,
            num_crops=crops,
            resize=d.resize,
            crop=crop,
            corruption=corruption,
            allow_outside_root=d.allow_outside_root,
        )


def load_run(path: str | Path, device: str | torch.device = "cpu") -> Run:
    """A run folder, its ``checkpoints/`` folder, or a checkpoint file -> Run in eval mode."""
    ckpt = checkpoint.load(path, map_location="cpu")
    cfg = config_from_dict(ckpt["config"])
    method = get_method(cfg.method)
    model = create_model(cfg.model, len(ckpt["class_names"]), cfg.streams(), method.needs_projection)
    model.load_state_dict(ckpt["model"])
    return Run(
        RunPaths.named_by(path).root, cfg, model.to(device).eval(), list(ckpt["class_names"]), ckpt["position"]["step"]
    )


def eval_run(
    run: Run,
    split: str = "test",
    clips: int = 1,
    crops: int = 1,
    modality: str | None = None,
    corruption: Callable[..., np.ndarray] | None = None,
    batch_size: int = 8,
    num_workers: int = 0,
    device: str = "cpu",
    progress: bool = False,
    data_root: str | None = None,
) -> dict:
    """Top-1/top-5/mean-class accuracy of one network of a run on a split."""
    modality = modality or run.model.primary
    ds = run.dataset(split, clips, crops, corruption, data_root)
    dev = torch.device(device)
    res = evaluate(
        run.net(modality).to(dev),
        ds,
        modality,
        len(run.class_names),
        dev,
        batch_size,
        num_workers,
        amp=dev.type == "cuda",
        progress=progress,
    )
    return {"run": str(run.path), "split": split, "modality": modality, "clips": clips, "crops": crops, **res}
