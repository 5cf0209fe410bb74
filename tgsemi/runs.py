"""Trained runs as objects: load a run folder or checkpoint, evaluate it.

Everything downstream of training (``tgsemi eval``, robustness, Grad-CAM,
t-SNE, the report, the notebooks) starts from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from tgsemi import checkpoint
from tgsemi.config import Config, DataConfig, config_from_dict
from tgsemi.data.annotations import Sample, check_exists, read_list
from tgsemi.data.build import build_splits, list_paths
from tgsemi.data.datasets import EvalDataset
from tgsemi.data.video import Decoding
from tgsemi.errors import AnnotationError, ArgumentError, CheckpointError, MissingFilesError
from tgsemi.evaluate import evaluate
from tgsemi.methods import get_method
from tgsemi.models import TwoStream, create_model
from tgsemi.predict import Prediction, predict_files
from tgsemi.runfiles import RunPaths, data_to_read
from tgsemi.runtime import pick_device, use_amp


@dataclass
class Run:
    path: Path  # the run folder (or the checkpoint's folder)
    cfg: Config
    model: TwoStream
    class_names: list[str]
    step: int
    data: DataConfig  # cfg.data with the paths to read now (``data_to_read``)
    own_test_list: bool = False  # the user named the test list (else it is the checkpoint's)

    @property
    def name(self) -> str:
        return self.path.name

    def net(self, modality: str | None = None) -> torch.nn.Module:
        """The network used for inference: RGB unless asked otherwise."""
        modality = modality or self.model.primary
        if modality not in self.model.nets:
            raise ArgumentError(f"run {self.path} has no {modality!r} network (it has {list(self.model.streams)})")
        return self.model.nets[modality]

    def samples(self, split: str = "test") -> list[Sample]:
        """A split's videos. ``test`` reads the test list alone, labelled by the run's own class
        names, so a test set evaluates without the train list; the others redraw the run's split."""
        d = self.data
        if split not in ("test", "train", "labeled"):
            raise ArgumentError(f"unknown split {split!r}: test, train or labeled")
        try:
            if split == "test":
                test = read_list(list_paths(d)["test"], class_index=self.class_names, subset="test").samples
                return check_exists(d.root, test, d.on_missing, d.allow_outside_root, d.follow_symlinks)
            s = build_splits(d, self.cfg.seed)
            return s.unlabeled if split == "train" else s.labeled
        except (AnnotationError, MissingFilesError) as exc:
            if split == "test" and self.own_test_list:
                raise
            # a list the checkpoint named: a crafted checkpoint must not make us quote any file's lines
            where = f"{exc.file}, line {exc.line}" if isinstance(exc, AnnotationError) else f"under {d.root}"
            raise CheckpointError(
                f"{self.path}: the {split} data its checkpoint names cannot be read ({type(exc).__name__} in "
                f"{where}); give the list on the command line (--test-list) or the data (--data-root)"
            ) from None

    def dataset(
        self,
        split: str = "test",
        clips: int = 1,
        crops: int = 1,
        corruption: Callable[..., np.ndarray] | None = None,
    ) -> EvalDataset:
        return self.eval_dataset(self.data.root, self.samples(split), clips, crops, corruption)

    def eval_dataset(
        self,
        root: str | Path,
        samples: list[Sample],
        clips: int = 1,
        crops: int = 1,
        corruption: Callable[..., np.ndarray] | None = None,
        trusted: bool = False,
    ) -> EvalDataset:
        """``samples`` through the run's test pipeline; ``trusted``: paths the user named, which
        may lie anywhere (no data-root boundary)."""
        d = self.data
        crop = self.cfg.eval.crop or d.crop if crops == 3 else d.crop  # 1 crop: the validation pipeline's
        return EvalDataset(
            root,
            samples,
            d.clip_len,
            d.frame_interval,
            backend=Decoding.of(d),  # the backend, input guards and decode-time short side
            num_clips=clips,
            num_crops=crops,
            resize=d.resize,
            crop=crop,
            corruption=corruption,
            allow_outside_root=trusted or d.allow_outside_root,
        )

    def file_dataset(
        self, paths: Sequence[str | Path], clips: int = 1, crops: int = 1, corruption: Callable | None = None
    ) -> EvalDataset:
        """Videos the user named, anywhere (no data-root boundary), through the run's test pipeline."""
        samples = [Sample(str(Path(p).resolve()), -1) for p in paths]
        return self.eval_dataset("/", samples, clips, crops, corruption, trusted=True)

    def predict(self, paths: str | Path | Sequence[str | Path], **options) -> Prediction | list[Prediction]:
        """Class names and probabilities for one video (a file or rawframe folder), or a list of
        them for several paths or a folder of videos;
        ``options``: those of ``tgsemi.predict.predict_files`` (clips, crops, topk, device, ...)."""
        single = isinstance(paths, (str, Path))
        found = predict_files(self, [paths] if single else paths, **options)  # type: ignore[list-item]
        return found[0] if single and [Path(p.path) for p in found] == [Path(paths)] else found  # type: ignore[arg-type]


def load_run(
    path: str | Path, device: str | torch.device = "cpu", data_root: str | None = None, test_list: str | None = None
) -> Run:
    """A run folder, its ``checkpoints/`` folder, or a checkpoint file (``last.pt``, ``best.pt``,
    ``step_*.pt``) -> Run in eval mode. ``data_root`` relocates the data the run trained on;
    ``test_list`` names another test list."""
    ckpt = checkpoint.load(path, map_location="cpu")
    cfg = config_from_dict(ckpt["config"])
    method = get_method(cfg.method)
    model = create_model(cfg.model, len(ckpt["class_names"]), cfg.streams(), method.needs_projection)
    checkpoint.load_state(model, ckpt["model"], path)
    data = data_to_read(cfg.data, ckpt.get("data_paths"), data_root)
    if test_list:
        data = data.model_copy(update={"test_list": str(Path(test_list).resolve())})
    return Run(
        RunPaths.named_by(path).root,
        cfg,
        model.to(pick_device(str(device)) if isinstance(device, str) else device).eval(),
        list(ckpt["class_names"]),
        ckpt["position"]["step"],
        data,
        own_test_list=bool(test_list),
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
    device: str = "auto",
    progress: bool = False,
) -> dict:
    """Top-1/top-5/mean-class accuracy of one network of a run on a split (sharded across ranks
    under torch.distributed)."""
    modality = modality or run.model.primary
    ds = run.dataset(split, clips, crops, corruption)
    dev = pick_device(device)
    res = evaluate(
        run.net(modality).to(dev),
        ds,
        modality,
        len(run.class_names),
        dev,
        batch_size,
        num_workers,
        amp=use_amp(run.cfg.train.amp, dev),
        progress=progress,
    )
    return {"run": str(run.path), "split": split, "modality": modality, "clips": clips, "crops": crops, **res}
