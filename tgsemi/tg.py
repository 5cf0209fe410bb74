"""Temporal gradient: the difference between adjacent raw frames (docs/method.md section 1)."""

from __future__ import annotations

import numpy as np
import torch

from tgsemi.errors import ArgumentError

Frames = np.ndarray | torch.Tensor


def temporal_gradient(frames: Frames) -> Frames:
    """TG of ``T+1`` uint8 frames ``(T+1, H, W, C)`` -> ``(T, H, W, C)`` uint8.

    ``tg[t] = (f[t] - f[t+1] + 255) // 2``: previous minus next, shifted to 0..255
    so that 127 means "no change". Works on ndarrays and on tensors (CPU or CUDA)
    and returns the same kind it was given.
    """
    if frames.dtype not in (np.uint8, torch.uint8):
        raise TypeError(f"temporal_gradient expects uint8 frames, got {frames.dtype}")
    if frames.shape[0] < 2:
        raise ArgumentError(f"temporal_gradient needs at least 2 frames, got {frames.shape[0]}")
    # Computed in uint8 as the floor of the mean of f[t] and 255 - f[t+1] = ~f[t+1], with
    # floor((a + b) / 2) = (a & b) + ((a ^ b) >> 1): two fresh arrays instead of five int16 ones,
    # 2x faster than widening with numpy and over 10x with torch (8 pairs of 224x224 frames).
    tg = ~frames[1:]
    half = frames[:-1] ^ tg
    half >>= 1
    tg &= frames[:-1]
    tg += half
    return tg
