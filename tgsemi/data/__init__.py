"""Data pipeline: annotation lists -> clips of RGB frames and temporal gradients."""

from tgsemi.data.video import available_backends, default_backend, num_frames, read_frames

__all__ = ["read_frames", "num_frames", "available_backends", "default_backend"]
