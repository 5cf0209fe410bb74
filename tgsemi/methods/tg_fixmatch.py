"""TG-FixMatch (docs/method.md section 3): joint RGB+TG FixMatch, TG->RGB feature alignment and a
cross-modal contrastive loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from tgsemi import distributed
from tgsemi.config import LossConfig
from tgsemi.errors import ArgumentError
from tgsemi.methods.base import Batch, Gather, Method
from tgsemi.methods.fixmatch import fixmatch_terms
from tgsemi.models.r3d import StreamOutput


def alignment(rgb: list[Tensor], tg: list[Tensor], n: int, stages: list[int]) -> Tensor:
    """``sum_k 1 - mean cos(F_k, stopgrad G_k)`` over the first ``n`` clips and every (t, h, w):
    the TG net teaches, so none of this gradient reaches it."""
    total = rgb[0].new_zeros((), dtype=torch.float32)
    for k in stages:
        f, g = rgb[k][:n], tg[k][:n].detach()
        if f.shape != g.shape:
            raise ArgumentError(f"stage {k}: RGB features {tuple(f.shape)} and TG features {tuple(g.shape)} differ")
        total = total + 1 - F.cosine_similarity(f.float(), g.float(), dim=1).mean()
    return total


def nce(a: Tensor, b: Tensor, temperature: float, gather: Gather) -> Tensor:
    """InfoNCE of ``a`` against every rank's ``b``: ``b_i`` is the positive of ``a_i`` and the other
    ``b`` rows the only negatives (no ``a``-``a`` pairs)."""
    b_all = gather(b)
    world = distributed.world_size()
    if len(b_all) != len(b) * world:
        raise ArgumentError(f"gather returned {len(b_all)} rows for {len(b)} per rank on {world} rank(s)")
    with torch.autocast(a.device.type, enabled=False):  # keep the similarities in float32
        logits = a.float() @ b_all.float().T / temperature
    targets = torch.arange(len(a), device=a.device) + distributed.rank() * len(a)
    return F.cross_entropy(logits, targets)


def cross_modal_contrast(
    q: Tensor | None, r: Tensor | None, n: int, temperature: float, gather: Gather, tg_teaches: bool = False
) -> Tensor:
    """``0.5 (NCE(q, r) + NCE(r, q))`` on L2-normalised RGB (q) and TG (r) projections; with
    ``tg_teaches`` r is detached (its gradient is zero), so that the TG network is not pulled toward
    the RGB one."""
    if q is None or r is None:
        raise ArgumentError("tg_fixmatch needs both streams' projections: run the model with n_project = n_l + n_u")
    if len(q) != n or len(r) != n:
        raise ArgumentError(
            f"projections must cover the {n} labeled + weak clips, got {len(q)} (rgb) and {len(r)} (tg)"
        )
    q, r = F.normalize(q.float(), dim=1), F.normalize(r.float(), dim=1)
    if tg_teaches:  # a zero gradient, not none: DDP (no find_unused_parameters) needs every weight used
        r = r.detach() + 0.0 * r
    return 0.5 * (nce(q, r, temperature, gather) + nce(r, q, temperature, gather))


# loss.pseudo_labels -> (the streams whose logits vote, whether every stream must agree); streams: [rgb, tg]
VOTES: dict[str, tuple[tuple[int, ...], bool]] = {"mean": ((0, 1), False), "tg": ((1,), False), "agree": ((0, 1), True)}


def tg_fixmatch_loss(
    out: dict[str, StreamOutput], batch: Batch, cfg: LossConfig, gather: Gather
) -> tuple[dict[str, Tensor], dict[str, Tensor], Tensor]:
    if set(out) != {"rgb", "tg"}:
        raise ArgumentError(f"tg_fixmatch needs the 'rgb' and 'tg' streams' outputs, got {sorted(out)}")
    rgb, tg = out["rgb"], out["tg"]
    voters, agree = VOTES[cfg.pseudo_labels]
    students = (0, 1) if cfg.tg_unlabeled else (0,)
    terms, stats, pseudo = fixmatch_terms([rgb, tg], batch, cfg, gather, voters, agree, students)
    n = batch.n_l + batch.n_u
    terms["align"] = cfg.align_weight * alignment(rgb.features, tg.features, n, cfg.align_stages)
    terms["contrast"] = cfg.contrast_weight * cross_modal_contrast(
        rgb.projection, tg.projection, n, cfg.temperature, gather, cfg.contrast == "tg_teaches"
    )
    return terms, stats, pseudo


TG_FIXMATCH = Method(
    name="tg_fixmatch",
    label="TG-FixMatch",
    role="Ours",
    loss=tg_fixmatch_loss,
    streams=("rgb", "tg"),
    uses_unlabeled=True,
    needs_projection=True,
)
