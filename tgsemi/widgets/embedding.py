"""Fig. 5 interactively: t-SNE of one network's test-set features, one class highlighted."""

from __future__ import annotations

import ipywidgets as widgets
import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

from tgsemi.analysis import labels, predict_views
from tgsemi.analysis.embedding import separability, tsne
from tgsemi.widgets.images import figure_png
from tgsemi.widgets.workspace import as_list


def scatter_figure(emb: np.ndarray, y: np.ndarray, class_names: list[str], highlight: int, title: str) -> Figure:
    """Every class in its colour (``highlight=-1``), or one class in colour over the others in grey."""
    cmap = colormaps["tab10" if len(class_names) <= 10 else "tab20"]
    fig = Figure(figsize=(6.5, 4.5))
    ax = fig.subplots()
    for c in np.unique(y):
        faded = highlight >= 0 and c != highlight
        ax.scatter(
            *emb[y == c].T,
            s=12 if faded else 22,
            color="#ccc" if faded else cmap(int(c) % cmap.N),
            label=class_names[c],
            zorder=1 if faded else 2,
        )
    ax.set_title(title, fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=8, markerscale=1.5)
    fig.tight_layout()
    return fig


class EmbeddingViewer(widgets.VBox):
    """Network, perplexity and highlighted class -> t-SNE scatter plus separability
    (silhouette, 5-NN accuracy) in the feature space and in the map."""

    def __init__(self, runs, clips: int = 1):
        runs = as_list(runs)
        self.views = [(run, m) for run in runs for m in run.model.streams]
        self.class_names = runs[0].class_names
        self.preds = predict_views(self.views, "test", clips)  # one decoding pass for all networks
        n = int(self.preds[0]["ok"].sum())
        cap = max(2, min(50, (n - 1) // 3))  # t-SNE needs perplexity < N; tsne() caps it at (N - 1) / 3
        self.model = widgets.Dropdown(
            options={name: i for i, name in enumerate(labels(self.views))}, description="network"
        )
        self.perplexity = widgets.IntSlider(
            min(30, max(2, cap - 1)), 2, cap, description="perplexity", continuous_update=False
        )
        classes = {c: k for k, c in enumerate(self.class_names)}
        self.highlight = widgets.Dropdown(options={"all classes": -1, **classes}, description="highlight")
        self.plot = widgets.Image(format="png")
        self.scores = widgets.HTML()
        self._emb: dict = {}
        for w in (self.model, self.perplexity, self.highlight):
            w.observe(lambda _: self.draw(), "value")
        super().__init__(
            [widgets.HBox([self.model, self.perplexity, self.highlight]), widgets.HBox([self.plot, self.scores])]
        )
        self.draw()

    def _points(self) -> tuple[np.ndarray, np.ndarray]:
        pred = self.preds[self.model.value]
        ok = pred["ok"].numpy()
        return pred["features"].numpy()[ok], pred["labels"].numpy()[ok]

    def draw(self) -> None:
        x, y = self._points()
        key = (self.model.value, self.perplexity.value)
        if key not in self._emb:
            emb = tsne(x, self.perplexity.value)
            self._emb[key] = emb, {"features": separability(x, y), "t-SNE map": separability(emb, y)}
        emb, scores = self._emb[key]
        self.plot.value = figure_png(
            scatter_figure(
                emb,
                y,
                self.class_names,
                self.highlight.value,
                f"{self.model.label}, perplexity {self.perplexity.value}",
            )
        )
        rows = "".join(
            f"<tr><td>{space}</td><td>{s['silhouette']:.3f}</td><td>{s['knn_acc']:.1f}%</td></tr>"
            for space, s in scores.items()
        )
        self.scores.value = (
            f"<table><tr><th></th><th>silhouette</th><th>5-NN acc.</th></tr>{rows}</table><p>{len(y)} test videos</p>"
        )


def embedding_viewer(runs, clips: int = 1) -> EmbeddingViewer:
    return EmbeddingViewer(runs, clips)
