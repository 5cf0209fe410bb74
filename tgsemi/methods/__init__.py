"""Training methods as pure loss functions, and the registry that is the only list of them.

Config validation, ``Config.streams``, the engine, the demo, analysis labels and the widget
choices all read ``METHODS``: a new method is one module defining a ``Method`` plus its
``register`` line below (docs/architecture.md shows one).
"""

from tgsemi.errors import ArgumentError
from tgsemi.methods.base import Batch, Method
from tgsemi.methods.fixmatch import FIXMATCH
from tgsemi.methods.supervised import SUPERVISED
from tgsemi.methods.tg_fixmatch import TG_FIXMATCH

METHODS: dict[str, Method] = {}  # name -> method, in the order tables list them


def register(method: Method) -> Method:
    """Make ``method.name`` a valid ``method=`` everywhere; a name is registered once."""
    if method.name in METHODS:
        raise ArgumentError(f"a method named {method.name!r} is already registered")
    METHODS[method.name] = method
    return method


def get_method(name: str) -> Method:
    try:
        return METHODS[name]
    except KeyError:
        raise ArgumentError(f"unknown method {name!r}; choose from {', '.join(METHODS)}") from None


register(SUPERVISED)
register(FIXMATCH)
register(TG_FIXMATCH)

__all__ = ["METHODS", "Batch", "Method", "get_method", "register"]
