"""Temporal gradient: the difference between adjacent raw frames (docs/method.md section 1)."""

from __future__ import annotations

import numpy as np
import torch

from tgsemi.errors import ArgumentError

Frames = np.ndarray | torch.Tensor


def temporal_gradient(frames: Frames) -> Frames:
    """TG of ``T+1`` uint8 frames ``(T+1, H, W, C)`` -> ``(T, H, W, C)`` uint8.

    ``tg[t] = (f[t] - f[t+1] + 255) // 2`` in a wide integer type: previous minus
    next, shifted to 0..255 so that 127 means "no change". Works on ndarrays and
    on tensors (CPU or CUDA) and returns the same kind it was given.
    """
    if frames.dtype not in (np.uint8, torch.uint8):
        raise TypeError(f"temporal_gradient expects uint8 frames, got {frames.dtype}")
    if frames.shape[0] < 2:
        raise ArgumentError(f"temporal_gradient needs at least 2 frames, got {frames.shape[0]}")
    if isinstance(frames, torch.Tensor):
        wide = frames.to(torch.int16)
        return torch.div(wide[:-1] - wide[1:] + 255, 2, rounding_mode="floor").to(torch.uint8)
    wide = frames.astype(np.int16)
    return ((wide[:-1] - wide[1:] + 255) // 2).astype(np.uint8)
