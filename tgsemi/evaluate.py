"""Evaluation: multi-clip x multi-crop logit averaging, top-1/top-5/mean-class
accuracy and the confusion matrix. Videos that cannot be decoded are counted
and reported, never silently left out of the denominator's story."""

from __future__ import annotations

from typing import Iterable

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from tgsemi.data.datasets import EvalDataset
from tgsemi.runtime import autocast, to_device


@torch.no_grad()
def predict(
    net: nn.Module,
    loader: Iterable[dict],
    modality: str,
    device: torch.device,
    amp: bool = False,
    channels_last: bool = False,
    progress: bool = False,
) -> dict:
    """Per-video averaged logits over all views, plus pooled features (for t-SNE)."""
    net.eval()
    logits, pooled, labels, ok, index = [], [], [], [], []
    for batch in tqdm(loader, desc=f"eval {modality}", disable=not progress, leave=False):
        x = batch[modality]  # (B, V, C, T, H, W)
        b, v = x.shape[:2]
        with autocast(device, amp):
            out = net(to_device(x.flatten(0, 1), device, channels_last))
        logits.append(out.logits.float().view(b, v, -1).mean(1).cpu())
        pooled.append(out.pooled.float().view(b, v, -1).mean(1).cpu())
        labels.append(batch["label"])
        ok.append(batch["ok"])
        index.append(batch["index"])
    return {
        "logits": torch.cat(logits),
        "features": torch.cat(pooled),
        "labels": torch.cat(labels),
        "ok": torch.cat(ok),
        "index": torch.cat(index),
    }


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
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers, shuffle=False)
    pred = predict(net, loader, modality, device, amp, channels_last, progress)
    return metrics(pred["logits"], pred["labels"], pred["ok"], num_classes)
