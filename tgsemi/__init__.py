"""tgsemi: semi-supervised action recognition that learns from the temporal gradient."""

from tgsemi.tg import temporal_gradient

__version__ = "0.1.0"
__all__ = ["temporal_gradient", "__version__"]
