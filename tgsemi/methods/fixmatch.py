"""FixMatch on one stream (the paper's Baseline-RGB / Baseline-TG) and its pseudo-label core."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from tgsemi.config import LossConfig
from tgsemi.methods.base import (
    Batch,
    Gather,
    Method,
    accuracy,
    masked_ce,
    only_stream,
    pseudo_labels,
    split,
)
from tgsemi.models.r3d import StreamOutput


def fixmatch_terms(
    streams: list[StreamOutput],
    batch: Batch,
    cfg: LossConfig,
    gather: Gather,
    voters: tuple[int, ...] | None = None,
    agree: bool = False,
    students: tuple[int, ...] | None = None,
) -> tuple[dict[str, Tensor], dict[str, Tensor], Tensor]:
    """Supervised and pseudo-label losses, each averaged over ``streams`` (summed with
    ``cfg.sum_streams``), and the pseudo-labels (-1 below the threshold).

    The pseudo-labels come from the softmax of the *averaged* weak logits of the ``voters`` (stream
    indices; all by default), so RGB and TG vote jointly; with one stream this is plain FixMatch.
    ``agree`` also drops every clip where some stream's own argmax (of its raw weak logits, before
    any distribution alignment) differs: a confident, wrong network then cannot outvote the other.
    Only the ``students`` (stream indices; all by default) learn from the pseudo-labels, each at its
    usual weight. Train accuracy is the first stream's.
    """
    parts = [split(s.logits.float(), batch) for s in streams]
    every = tuple(range(len(parts)))
    n_averaged = 1 if cfg.sum_streams else len(parts)
    sup = sum(F.cross_entropy(labeled, batch.y) for labeled, _, _ in parts) / n_averaged
    votes = [parts[i][1] for i in (every if voters is None else voters)]
    yhat, mask = pseudo_labels(
        torch.stack(votes).mean(dim=0), cfg.threshold, gather if cfg.distribution_alignment else None
    )
    if agree:
        mask = mask & torch.stack([w.argmax(dim=1) == yhat for _, w, _ in parts]).all(dim=0)
    if batch.unlabeled_on and batch.n_u > 0:
        learners = [parts[i][2] for i in (every if students is None else students)]
        unlabeled = cfg.unlabeled_weight * sum(masked_ce(s, yhat, mask) for s in learners) / n_averaged
    else:
        unlabeled = sup.new_zeros(())
    stats = {"train_acc": accuracy(parts[0][0], batch.y), "mask_rate": mask.float().mean()}
    return {"sup": sup, "unlabeled": unlabeled}, stats, torch.where(mask, yhat, -1)


def fixmatch_loss(
    out: dict[str, StreamOutput], batch: Batch, cfg: LossConfig, gather: Gather
) -> tuple[dict[str, Tensor], dict[str, Tensor], Tensor]:
    return fixmatch_terms([only_stream(out)], batch, cfg, gather)


FIXMATCH = Method(name="fixmatch", label="FixMatch", role="Baseline", loss=fixmatch_loss, uses_unlabeled=True)
