"""Optional dependencies: which pip extra of pyproject.toml brings each, and one clear error when
a feature needs one that is missing.

A core install (``pip install tgsemi``) trains, evaluates and writes the report; the notebooks,
the decord backend and ONNX export each need an extra. Importing through ``require`` turns a
``ModuleNotFoundError`` from deep inside a feature into a message that says what to install.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from tgsemi.errors import MissingExtraError

# import name -> (distribution on PyPI, extra that installs it); tests check these against pyproject.toml
EXTRAS: dict[str, tuple[str, str]] = {
    "pytorch_grad_cam": ("grad-cam", "notebooks"),
    "ipywidgets": ("ipywidgets", "notebooks"),
    "skvideo": ("scikit-video", "notebooks"),
    "decord": ("decord", "decord"),
    "onnx": ("onnx", "export"),
    "onnxscript": ("onnxscript", "export"),
    "onnxruntime": ("onnxruntime", "export"),
}


def install_hint(module: str) -> str:
    """``pip install 'tgsemi[EXTRA]'`` for a module an extra brings, else ``pip install MODULE``."""
    dist, extra = EXTRAS.get(module, (module, None))
    return f"pip install 'tgsemi[{extra}]'" if extra else f"pip install {dist}"


def missing(error: ModuleNotFoundError, feature: str) -> Exception:
    """The error to raise for ``error`` met while loading ``feature``: a MissingExtraError naming the
    extra when the missing module is one an extra brings, else ``error`` itself (a broken core install)."""
    top = (error.name or "").split(".")[0]
    if top not in EXTRAS:
        return error
    return MissingExtraError(f"{feature} needs {EXTRAS[top][0]}, which is not installed: {install_hint(top)}")


def require(module: str, feature: str) -> ModuleType:
    """``module`` imported, or a MissingExtraError naming ``feature``, the package and the extra."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        raise missing(e, feature) from e
