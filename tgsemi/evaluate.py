"""Inference and evaluation: multi-clip x multi-crop logit averaging, top-1/top-5/mean-class
accuracy and the confusion matrix.

``predict`` is the one inference path: validation during training, ``tgsemi eval`` and
``predict``, robustness, Grad-CAM's predictions, t-SNE features and the widgets all run networks
through it, so a clip is scored the same way wherever it is scored. Videos that cannot be decoded
are counted and reported, never silently left out of the denominator's story.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from tgsemi import distributed
from tgsemi.data.datasets import EvalDataset
from tgsemi.errors import ArgumentError
from tgsemi.runtime import autocast, to_device

Net = tuple[nn.Module, str]  # a network and the stream it reads ("rgb" or "tg")


@torch.no_grad()
def predict(
    nets: Sequence[Net],
    dataset: EvalDataset,
    device: torch.device,
    batch_size: int = 8,
    num_workers: int = 0,
    amp: bool = False,
    channels_last: bool = False,
    progress: bool = False,
) -> list[dict]:
    """Per network: per-video logits and pooled features averaged over the dataset's views,
    with labels, ``ok`` (decoded), the dataset ``index`` and the decoding ``errors``.

    Every network scores the same decoded batch, so several networks cost one pass over the
    videos (decoding costs as much as a small network's forward pass on a CPU). Under
    torch.distributed each rank scores every world-th video and all ranks receive every video in
    the dataset's order: the numbers equal one process's, in 1/world of the time.
    """
    if len(dataset) == 0:
        raise ArgumentError("no videos to predict: the list is empty (or every file in it is missing)")
    world, rank = distributed.world_size(), distributed.rank()
    if len(dataset) < world:  # a rank without a video would have nothing to gather: all score all
        world = 1
    shard = dataset if world == 1 else Subset(dataset, range(rank, len(dataset), world))
    loader = DataLoader(shard, batch_size=batch_size, num_workers=num_workers, shuffle=False)
    for net, _ in nets:
        net.eval()
    logits: list[list[torch.Tensor]] = [[] for _ in nets]
    pooled: list[list[torch.Tensor]] = [[] for _ in nets]
    meta: dict[str, list] = {"labels": [], "ok": [], "index": [], "errors": []}
    for batch in tqdm(loader, desc=f"predict x{len(nets)}", disable=not progress, leave=False):
        for k, (net, modality) in enumerate(nets):
            x = batch[modality]  # (B, V, C, T, H, W)
            with autocast(device, amp):
                out = net(to_device(x.flatten(0, 1), device, channels_last))
            logits[k].append(out.logits.float().view(*x.shape[:2], -1).mean(1).cpu())
            pooled[k].append(out.pooled.float().view(*x.shape[:2], -1).mean(1).cpu())
        meta["labels"].append(batch["label"])
        meta["ok"].append(batch["ok"])
        meta["index"].append(batch["index"])
        meta["errors"].extend(batch["error"])
    parts = [
        {
            "logits": torch.cat(logits[k]),
            "features": torch.cat(pooled[k]),
            **{key: torch.cat(meta[key]) for key in ("labels", "ok", "index")},
            "errors": meta["errors"],
        }
        for k in range(len(nets))
    ]
    return parts if world == 1 else [_gathered(p) for p in parts]


def _gathered(part: dict) -> dict:
    """Every rank's share of one network's predictions, back in the dataset's order."""
    shares = distributed.all_gather_object(part)
    index = torch.cat([s["index"] for s in shares])
    order = index.argsort()
    out = {key: torch.cat([s[key] for s in shares])[order] for key in ("logits", "features", "labels", "ok", "index")}
    errors = [e for s in shares for e in s["errors"]]
    out["errors"] = [errors[i] for i in order.tolist()]
    return out


def metrics(logits: torch.Tensor, labels: torch.Tensor, ok: torch.Tensor, num_classes: int) -> dict:
    """Accuracy over the videos that decoded; ``failed`` says how many did not."""
    logits, labels = logits[ok], labels[ok]
    n = len(labels)
    top5 = logits.topk(min(5, logits.shape[1]), dim=1).indices
    pred = top5[:, 0]
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(confusion, (labels.numpy(), pred.numpy()), 1)
    per_class = confusion.diagonal() / np.maximum(confusion.sum(1), 1)
    present = confusion.sum(1) > 0
    return {
        "top1": float((pred == labels).float().mean()) * 100 if n else float("nan"),
        "top5": float((top5 == labels[:, None]).any(1).float().mean()) * 100 if n else float("nan"),
        "mean_class": float(per_class[present].mean()) * 100 if n else float("nan"),
        "scored": n,
        "failed": int((~ok).sum()),
        "confusion": confusion.tolist(),
    }


def evaluate(
    net: nn.Module,
    dataset: EvalDataset,
    modality: str,
    num_classes: int,
    device: torch.device,
    batch_size: int = 8,
    num_workers: int = 0,
    amp: bool = False,
    channels_last: bool = False,
    progress: bool = False,
) -> dict:
    """``metrics`` of one network on ``dataset`` (sharded across ranks under torch.distributed)."""
    pred = predict([(net, modality)], dataset, device, batch_size, num_workers, amp, channels_last, progress)[0]
    return metrics(pred["logits"], pred["labels"], pred["ok"], num_classes)
