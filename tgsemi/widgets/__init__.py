"""Interactive panels for the notebooks (ipywidgets), one per claim of the paper,
and the workspace helpers that let a notebook run on a fresh machine."""

from tgsemi.extras import missing

try:
    from tgsemi.widgets.attention import gradcam_viewer
    from tgsemi.widgets.embedding import embedding_viewer
    from tgsemi.widgets.explorer import tg_explorer, tg_figure
    from tgsemi.widgets.robustness import robustness_probe
    from tgsemi.widgets.training import training_monitor
    from tgsemi.widgets.workspace import (
        analysis_dir,
        ensure_data,
        ensure_runs,
        home,
        quick,
        sample_videos,
        synthetic_videos,
    )
except ModuleNotFoundError as e:  # ipywidgets and the rest of the [notebooks] extra
    raise missing(e, "the notebook widgets") from e

__all__ = [
    "tg_explorer",
    "tg_figure",
    "training_monitor",
    "robustness_probe",
    "gradcam_viewer",
    "embedding_viewer",
    "ensure_data",
    "ensure_runs",
    "home",
    "quick",
    "analysis_dir",
    "sample_videos",
    "synthetic_videos",
]
