"""Shared by the notebook tests (headless and in a browser): the notebooks, the
quick-mode environment their kernels get, and one workspace per test session.

The workspace is shared so that the runs one notebook (or one test file) trains
are found by the others, as on a user's machine; everything lands under a
temporary ``TGSEMI_HOME``, never in the repository.
"""

from __future__ import annotations

import os
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
NAMES = [p.stem for p in NOTEBOOKS]

_home: list[Path] = []


def session_home(tmp_path_factory) -> Path:
    """The session's ``TGSEMI_HOME`` (created on first use)."""
    if not _home:
        _home.append(tmp_path_factory.mktemp("tgsemi_home"))
    return _home[0]


def kernel_env(home: Path) -> dict[str, str]:
    """Quick mode, the temporary workspace, and this checkout's package first on the path."""
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "TGSEMI_QUICK": "1", "TGSEMI_HOME": str(home), "PYTHONPATH": path}


def code_cells(nb: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [c for c in nb.cells if c.cell_type == "code"]


def outputs(nb: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [o for c in code_cells(nb) for o in c.get("outputs", [])]


def errors(nb: nbformat.NotebookNode) -> list[str]:
    """``ename: evalue`` of every error output."""
    return [f"{o.ename}: {o.evalue}" for o in outputs(nb) if o.output_type == "error"]
