"""The networks the analysis tools compare, and their predictions.

Every tool compares *networks*: a run plus one of its streams ("rgb"/"tg"), named as the paper
names them (Baseline-RGB, Ours-RGB, Ours-TG, ...). Several networks are evaluated on one decoding
pass, because on a CPU decoding costs as much as the forward passes of the small models the demo
trains.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from tgsemi import cpus
from tgsemi.errors import TgsemiError
from tgsemi.evaluate import metrics, predict
from tgsemi.methods import METHODS, get_method
from tgsemi.runs import Run, load_run
from tgsemi.runtime import intra_op_threads, pick_device, use_amp

View = tuple[Run, str]  # a run and the stream ("rgb" or "tg") of the network to analyse
ROLES = {name: m.role for name, m in METHODS.items()}  # report.py's table order: the registry at import


def as_runs(runs: Sequence[Run | str | Path]) -> list[Run]:
    """Runs, loading the ones given as a run folder or checkpoint path."""
    return [r if isinstance(r, Run) else load_run(r) for r in runs]


def views_of(runs: Sequence[Run], modality: str | None = None) -> list[View]:
    """One network per run: ``modality`` if given, else the run's inference stream."""
    views = [(run, modality or run.model.primary) for run in runs]
    for run, m in views:
        if m not in run.model.streams:
            raise TgsemiError(f"run {run.path} has no {m!r} network (it has {list(run.model.streams)})")
    return views


def labels(views: Sequence[View]) -> list[str]:
    """Paper-style names ("Ours-RGB"); the run's folder name is added where two would clash."""
    names = [f"{get_method(run.cfg.method).role}-{modality.upper()}" for run, modality in views]
    return [f"{n} ({run.name})" if names.count(n) > 1 else n for n, (run, _) in zip(names, views)]


def _data_key(ds) -> tuple:
    return (str(ds.root), tuple(ds.samples), ds.clip_len, ds.frame_interval, ds.backend, ds.resize, ds.crop)


def predict_views(
    views: Sequence[View],
    split: str = "test",
    clips: int = 1,
    corruption: Callable[..., np.ndarray] | None = None,
    batch_size: int = 8,
    progress: bool = False,
    num_workers: int = 0,
    threads: int | None = None,
    device: str = "auto",
) -> list[dict]:
    """Per-video logits and pooled features (averaged over ``clips``) of each network, through
    ``evaluate.predict``; networks whose runs read the same videos the same way share one pass.

    On the CPU items are built in this process by default and the networks run on its intra-op
    threads (``threads`` sets them; default: the usable CPUs the workers leave, as ``cpus.plan``
    counts them): a DataLoader worker beside two OpenMP threads oversubscribes a 2-core machine
    (a pass over the demo test set cost 6x the CPU time), and one worker beside one thread made
    the demo's report take 66 s against 58 s.
    """
    dev = pick_device(device)
    groups: dict[tuple, list[int]] = {}
    datasets = {}
    for i, (run, modality) in enumerate(views):
        ds = run.dataset(split, clips, 1, corruption)
        datasets.setdefault(_data_key(ds), ds)
        groups.setdefault(_data_key(ds), []).append(i)
    out: list[dict] = [{} for _ in views]
    with intra_op_threads(threads or cpus.plan(None, num_workers).threads):
        for key, members in groups.items():
            nets = [(views[i][0].net(views[i][1]).to(dev), views[i][1]) for i in members]
            amp = use_amp(views[members[0]][0].cfg.train.amp, dev)
            preds = predict(nets, datasets[key], dev, batch_size, num_workers, amp=amp, progress=progress)
            for i, pred in zip(members, preds):
                out[i] = pred
    return out


def top1(pred: dict) -> float:
    """Top-1 (%) over the videos that decoded."""
    return metrics(pred["logits"], pred["labels"], pred["ok"], pred["logits"].shape[1])["top1"]
