"""Supervised baseline: cross-entropy on the labeled clips of one stream."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from tgsemi.config import LossConfig
from tgsemi.methods.base import Batch, Gather, Method, accuracy, only_stream, split
from tgsemi.models.r3d import StreamOutput


def supervised_loss(
    out: dict[str, StreamOutput], batch: Batch, cfg: LossConfig, gather: Gather
) -> tuple[dict[str, Tensor], dict[str, Tensor], None]:
    labeled, _, _ = split(only_stream(out).logits.float(), batch)
    return {"sup": F.cross_entropy(labeled, batch.y)}, {"train_acc": accuracy(labeled, batch.y)}, None


SUPERVISED = Method(name="supervised", label="Supervised", role="Supervised", loss=supervised_loss)
