"""What a method is: a pure function from model outputs to weighted loss terms.

The engine runs the forward pass and the optimiser; a method only turns outputs into losses,
so every formula of docs/method.md section 3 is testable on plain tensors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

import torch.nn.functional as F
from torch import Tensor

from tgsemi.config import LossConfig
from tgsemi.errors import ArgumentError
from tgsemi.models.r3d import StreamOutput

Gather = Callable[[Tensor], Tensor]


@dataclass
class Batch:
    """The engine's view of one step, after the forward pass."""

    y: Tensor  # (n_l,) labels of the labeled clips
    n_l: int  # output rows are [labeled (n_l) | weak (n_u) | strong (n_u)]
    n_u: int  # unlabeled clips; 0 for supervised
    unlabeled_on: bool  # warm-up over: the unlabeled loss counts


LossFn = Callable[
    [dict[str, StreamOutput], Batch, LossConfig, Gather], tuple[dict[str, Tensor], dict[str, Tensor], Tensor | None]
]
Role = Literal["Supervised", "Baseline", "Ours"]  # a method's part in the paper's comparison


@dataclass(frozen=True, kw_only=True)
class Method:
    """Everything the package knows about a method. Config validation, the engine, the demo, the
    reports and the widgets read it from the registry (``tgsemi.methods``) instead of listing methods.

    ``loss(outputs, batch, cfg, gather) -> (terms, diagnostics, pseudo)``: the terms are weighted
    scalar tensors summing to the total loss; diagnostics are detached scalar tensors (``train_acc``,
    ``mask_rate``), read out only on the steps the engine logs: a float here would wait for the device;
    ``pseudo`` is the ``(n_u,)`` pseudo-label per unlabeled clip, -1 below the threshold (None for a
    method without pseudo-labels). The hidden labels of unlabeled clips never reach a loss: the
    engine scores ``pseudo`` against them (``pseudo_label_accuracy``)."""

    name: str  # the config's ``method`` value; names run folders
    label: str  # how tables print it ("TG-FixMatch")
    role: Role  # analysis names its networks "<role>-<STREAM>" ("Ours-RGB")
    loss: LossFn
    streams: tuple[str, ...] | None = None  # the networks it trains; None: the one ``model.modality`` names
    uses_unlabeled: bool = False  # the engine loads unlabeled clips (weak + strong views)
    needs_projection: bool = False  # the model runs its projection heads

    def streams_for(self, modality: str) -> tuple[str, ...]:
        """The networks a run trains, given the config's ``model.modality``."""
        return self.streams or (modality,)


def split(t: Tensor, batch: Batch) -> tuple[Tensor, Tensor, Tensor]:
    """The labeled, weak and strong rows of a per-clip tensor."""
    n_l, n_u = batch.n_l, batch.n_u
    if t.shape[0] != n_l + 2 * n_u:
        raise ArgumentError(f"expected {n_l} + 2 x {n_u} rows (labeled + weak + strong), got {t.shape[0]}")
    return t[:n_l], t[n_l : n_l + n_u], t[n_l + n_u :]


def only_stream(out: dict[str, StreamOutput]) -> StreamOutput:
    if len(out) != 1:
        raise ArgumentError(f"a single-stream method needs exactly one stream's outputs, got {sorted(out)}")
    return next(iter(out.values()))


def pseudo_labels(weak_logits: Tensor, threshold: float, align: Gather | None = None) -> tuple[Tensor, Tensor]:
    """Hard pseudo-labels and the confidence mask ``max p >= threshold``, without gradient.

    ``p`` is the softmax; with ``align`` (a gather over ranks) it is first divided by its mean
    over the global unlabeled batch and renormalised: distribution alignment toward a uniform
    class prior (ReMixMatch's, from the batch instead of a running mean, so no state to
    checkpoint). A weak network otherwise pseudo-labels most clips as the class it currently
    favours and trains itself further into it.
    """
    p = weak_logits.detach().float().softmax(dim=1)
    if align is not None:
        p = p / align(p).mean(dim=0)
        p = p / p.sum(dim=1, keepdim=True)
    confidence, labels = p.max(dim=1)
    return labels, confidence >= threshold


def pseudo_label_accuracy(pseudo: Tensor, y_u: Tensor) -> Tensor:
    """How often a confident pseudo-label (>= 0) equals the hidden label of its clip (-1: unknown),
    over the clips that have both; NaN when none has. A scalar tensor, like every diagnostic."""
    known = (pseudo >= 0) & (y_u >= 0)
    return (known & (pseudo == y_u)).sum() / known.sum()  # 0/0 -> NaN


def masked_ce(logits: Tensor, targets: Tensor, mask: Tensor) -> Tensor:
    """``(1/B_u) sum_j m_j CE_j``: divided by all unlabeled clips, not only the confident ones."""
    per_clip = F.cross_entropy(logits.float(), targets, reduction="none")
    return (per_clip * mask).sum() / max(len(mask), 1)


def accuracy(logits: Tensor, y: Tensor) -> Tensor:
    return (logits.detach().argmax(dim=1) == y).float().mean()
