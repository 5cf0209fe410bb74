"""tgsemi: semi-supervised action recognition that learns from the temporal gradient.

The public API is importable from the top level; each name loads its module (and torch, about 2 s)
on first use, so ``import tgsemi`` and ``tgsemi --help`` stay fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"  # the package version (pyproject.toml reads it from here)

# public name -> module that defines it
_LAZY = {
    "load_run": "tgsemi.runs",
    "eval_run": "tgsemi.runs",
    "read_frames": "tgsemi.data.video",
    "temporal_gradient": "tgsemi.tg",
    "create_model": "tgsemi.models.two_stream",
    "load_config": "tgsemi.config",
}
__all__ = ["__version__", *_LAZY]

if TYPE_CHECKING:  # what type checkers and IDEs resolve the lazy names to ("as": re-exported)
    from tgsemi.config import load_config as load_config
    from tgsemi.data.video import read_frames as read_frames
    from tgsemi.models.two_stream import create_model as create_model
    from tgsemi.runs import eval_run as eval_run
    from tgsemi.runs import load_run as load_run
    from tgsemi.tg import temporal_gradient as temporal_gradient


def __getattr__(name: str) -> object:
    """Import a public name's module on first access (PEP 562) and keep the name bound here."""
    if name not in _LAZY:
        raise AttributeError(f"module 'tgsemi' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
