"""Training methods as pure loss functions; the engine looks them up by name."""
from tgsemi.methods.base import Batch, Method
from tgsemi.methods.fixmatch import FIXMATCH
from tgsemi.methods.supervised import SUPERVISED
from tgsemi.methods.tg_fixmatch import TG_FIXMATCH

METHODS: dict[str, Method] = {m.name: m for m in (SUPERVISED, FIXMATCH, TG_FIXMATCH)}


def get_method(name: str) -> Method:
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}; choose from {', '.join(METHODS)}") from None


__all__ = ["METHODS", "Batch", "Method", "get_method"]
