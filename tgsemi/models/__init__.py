"""Backbones and heads: R3D-18 per stream, wrapped as independent RGB/TG networks."""

from tgsemi.models.r3d import R3D18, StreamOutput
from tgsemi.models.two_stream import STREAMS, TwoStream, create_model

__all__ = ["R3D18", "STREAMS", "StreamOutput", "TwoStream", "create_model"]
