"""Train a run from a notebook and watch its curves come in (read from metrics.jsonl)."""

from __future__ import annotations

import html
import threading
from pathlib import Path

import ipywidgets as widgets
import numpy as np
from matplotlib.figure import Figure

from tgsemi.config import Config
from tgsemi.engine import train
from tgsemi.methods import METHODS
from tgsemi.runfiles import RunPaths, read_metrics  # read_metrics: also for the notebooks
from tgsemi.widgets.images import figure_png
from tgsemi.widgets.workspace import is_trained, mode, run_dir, train_config

PANELS = {  # subplot title -> metrics drawn as lines (smoothed) or, for val/*, as markers
    "loss": ("loss", "loss/sup", "loss/unlabeled", "loss/align", "loss/contrast"),
    "pseudo-labels": ("mask_rate", "pl_acc"),
    "accuracy (%)": ("train_acc", "val/rgb/top1", "val/tg/top1"),
}


def smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average (the first points average what exists so far)."""
    if window <= 1 or len(values) < 2:
        return values
    cum = np.cumsum(np.insert(values, 0, 0.0))
    n = np.arange(1, len(values) + 1)
    lo = np.maximum(n - window, 0)
    return (cum[n] - cum[lo]) / (n - lo)


def curves_figure(rows: list[dict], window: int = 1, title: str = "") -> Figure:
    fig = Figure(figsize=(11, 3))
    for ax, (name, keys) in zip(fig.subplots(1, 3), PANELS.items()):
        for key in keys:
            pts = [(r["step"], r[key]) for r in rows if r.get(key) is not None]
            if not pts:
                continue
            steps, values = np.array(pts, dtype=float).T
            if key == "train_acc":  # a fraction, drawn beside the percentages of val/*
                values = values * 100
            if key.startswith("val/"):
                ax.plot(steps, values, "o-", label=key)
            else:
                ax.plot(steps, smooth(values, window), label=key, marker="." if len(steps) < 20 else None)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("step")
        if ax.lines:
            ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


class TrainingMonitor(widgets.VBox):
    """Method, label fraction and steps; Train runs ``tgsemi.engine.train`` in a
    background thread while the plots follow ``metrics.jsonl``. ``start(wait=True)``
    does the same from code (and blocks), for notebooks run headless."""

    def __init__(
        self,
        method: str = "tg_fixmatch",
        fraction: float | None = None,
        steps: int | None = None,
        refresh_s: float = 1.0,
    ):
        m = mode()
        self.method = widgets.Dropdown(options=list(METHODS), value=method, description="method")
        self.fraction = widgets.FloatSlider(
            m["fraction"] if fraction is None else fraction,
            min=0.05,
            max=1.0,
            step=0.05,
            description="labeled",
            readout_format=".0%",
        )
        self.steps = widgets.BoundedIntText(
            steps or m["steps"] or 0, min=0, max=10**6, description="steps", tooltip="0: the preset's full schedule"
        )
        self.button = widgets.Button(description="Train", button_style="primary", icon="play")
        self.smoothing = widgets.IntSlider(1, 1, 25, description="smoothing", continuous_update=False)
        self.status = widgets.HTML()
        self.plot = widgets.Image(format="png")
        self.refresh_s = refresh_s
        self.error: BaseException | None = None
        self._worker: threading.Thread | None = None
        self._follower: threading.Thread | None = None
        for w in (self.method, self.fraction, self.steps):
            w.observe(lambda _: self._select(), "value")
        self.smoothing.observe(lambda _: self.refresh(), "value")
        self.button.on_click(lambda _: self.start())
        super().__init__(
            [
                widgets.HBox([self.method, self.fraction, self.steps, self.button]),
                widgets.HBox([self.smoothing, self.status]),
                self.plot,
            ]
        )
        self.refresh()

    def _select(self) -> None:
        if not self.running:
            self.error = None  # belongs to the run selected before
            self.refresh()

    @property
    def run_dir(self) -> Path:
        return run_dir(self.method.value, self.fraction.value, self.steps.value or None)

    @property
    def running(self) -> bool:
        return self._worker is not None and self._worker.is_alive()

    def refresh(self, out: Path | None = None) -> None:
        """Redraw the curves of ``out`` (default: the selected run) and the status line."""
        out = out or self.run_dir
        rows = read_metrics(RunPaths(out).metrics)
        self.plot.value = figure_png(curves_figure(rows, self.smoothing.value, out.name))
        step = f"step {rows[-1]['step']}" if rows else "not trained yet"
        loss = next((r["loss"] for r in reversed(rows) if r.get("loss") is not None), None)
        if self.error is not None:
            self.status.value = f"<span style='color:#b00'>training failed: {html.escape(str(self.error))}</span>"
        elif self.running:
            self.status.value = f"training: {step}" + (f", loss {loss:.3f}" if loss is not None else "")
        else:
            done = " (finished)" if is_trained(out) else ""
            self.status.value = f"<span title='{html.escape(str(out))}'>{html.escape(out.name)}: {step}{done}</span>"

    def start(self, wait: bool = False) -> None:
        """Train (or resume) the selected run unless it has finished; with ``wait``
        block until it ends and re-raise a training error."""
        if not self.running:
            if is_trained(self.run_dir):
                self.refresh()
                return
            cfg = train_config(self.method.value, self.fraction.value, self.steps.value or None)
            out, self.error = self.run_dir, None
            self._worker = threading.Thread(target=self._train, args=(cfg, out), daemon=True)
            self._follower = threading.Thread(target=self._follow, args=(out,), daemon=True)
            self._worker.start()
            self._follower.start()
        if wait:
            self._follower.join()
            if self.error is not None:
                raise self.error

    def _train(self, cfg: Config, out: Path) -> None:
        try:
            train(cfg, out)
        except Exception as exc:  # shown in the panel; start(wait=True) re-raises it
            self.error = exc

    def _follow(self, out: Path) -> None:
        """Redraw whenever metrics.jsonl grows, until training ends."""
        controls = (self.method, self.fraction, self.steps, self.button)
        for w in controls:
            w.disabled = True
        seen, metrics = -1, RunPaths(out).metrics
        while self.running:
            size = metrics.stat().st_size if metrics.exists() else 0
            if size != seen:
                seen = size
                self.refresh(out)
            self._worker.join(self.refresh_s)
        for w in controls:
            w.disabled = False
        self.refresh(out)


def training_monitor(
    method: str = "tg_fixmatch", fraction: float | None = None, steps: int | None = None
) -> TrainingMonitor:
    return TrainingMonitor(method, fraction, steps)
