"""t-SNE of globally averaged backbone features (supplement section D, Figure 5).

A t-SNE picture alone invites reading into it, so every panel comes with two
separability numbers, in the 2-D embedding and in the feature space itself:
the silhouette score (cluster tightness against separation, -1..1) and the
accuracy of a 5-nearest-neighbour classifier under 5-fold cross-validation.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

from tgsemi.analysis import as_runs, labels, predict_views, views_of
from tgsemi.errors import ArgumentError
from tgsemi.runs import Run


def tsne(features: np.ndarray, perplexity: float = 30.0, seed: int = 0) -> np.ndarray:
    """``(N, D)`` -> ``(N, 2)``; the perplexity is capped at (N - 1) / 3 for small sets.

    Runs on one OpenMP thread: on the busy 2-core machine, 100 points took 18 s
    with sklearn's default threads and 0.6 s with one.
    """
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    x = np.asarray(features, dtype=np.float32)
    perplexity = min(perplexity, max(1.0, (len(x) - 1) / 3))
    with threadpool_limits(1):
        return TSNE(2, perplexity=perplexity, init="pca", learning_rate="auto", random_state=seed).fit_transform(x)


def separability(features: np.ndarray, labels: np.ndarray, k: int = 5, folds: int = 5) -> dict:
    """Silhouette score and k-NN cross-validated accuracy (%) of labelled points."""
    from sklearn.metrics import silhouette_score
    from sklearn.model_selection import KFold, StratifiedKFold, cross_val_score
    from sklearn.neighbors import KNeighborsClassifier

    x, y = np.asarray(features, dtype=np.float64), np.asarray(labels)
    counts = np.unique(y, return_counts=True)[1]
    if len(counts) < 2 or len(y) <= len(counts):
        raise ArgumentError(
            f"separability needs 2+ classes and more points than classes, got {len(y)} points in {len(counts)} classes"
        )
    if counts.min() >= 2:  # every fold sees every class when the smallest class allows
        cv = StratifiedKFold(min(folds, counts.min()), shuffle=True, random_state=0)
    else:
        cv = KFold(min(folds, len(y)), shuffle=True, random_state=0)
    smallest_train_fold = len(y) - int(np.ceil(len(y) / cv.get_n_splits()))
    k = min(k, smallest_train_fold)
    knn = cross_val_score(KNeighborsClassifier(k), x, y, cv=cv).mean() * 100
    return {"silhouette": float(silhouette_score(x, y)), "knn_acc": float(knn)}


def tsne_figure(
    runs: Sequence[Run | str | Path],
    out_path: str | Path,
    modality: str | None = None,
    clips: int | None = None,
    perplexity: float = 30.0,
    seed: int = 0,
    batch_size: int = 8,
    progress: bool = False,
) -> dict:
    """Side-by-side t-SNE of each run's test-set features, coloured by class.

    ``clips`` per video are averaged (default: the first run's ``eval.clips``).
    Writes the figure and a JSON of the separability numbers beside it;
    returns that JSON's content plus the two paths.
    """
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    runs = as_runs(runs)
    views = views_of(runs, modality)
    clips = clips or runs[0].cfg.eval.clips
    preds = predict_views(views, "test", clips, None, batch_size, progress)
    names = runs[0].class_names
    cmap = colormaps["tab10" if len(names) <= 10 else "tab20"]
    fig = Figure(figsize=(4.6 * len(views) + 1.8, 4.4), layout="constrained")
    axes = fig.subplots(1, len(views), squeeze=False)[0]
    models = []
    for ax, label, (run, m), pred in zip(axes, labels(views), views, preds):
        ok = pred["ok"].numpy()
        x, y = pred["features"].numpy()[ok], pred["labels"].numpy()[ok]
        emb = tsne(x, perplexity, seed)
        entry = {
            "label": label,
            "run": str(run.path),
            "method": run.cfg.method,
            "modality": m,
            "videos": len(y),
            "feature_space": separability(x, y),
            "tsne": separability(emb, y),
        }
        models.append(entry)
        for c in np.unique(y):
            ax.scatter(*emb[y == c].T, s=9, color=cmap(int(c) % cmap.N), label=names[c])
        ax.set_title(
            f"{label}\nsilhouette {entry['tsne']['silhouette']:.2f}, 5-NN {entry['tsne']['knn_acc']:.0f}%",
            fontsize="medium",
        )
        ax.set_xticks([])
        ax.set_yticks([])
    axes[-1].legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize="small", markerscale=2)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    result = {"split": "test", "clips": clips, "perplexity": perplexity, "models": models}
    out.with_suffix(".json").write_text(json.dumps(result, indent=1))
    return {**result, "figure": out, "json": out.with_suffix(".json")}


def separability_markdown(result: dict) -> str:
    lines = [
        "| Model | silhouette (t-SNE) | 5-NN acc. (t-SNE) | silhouette (features) | 5-NN acc. (features) |",
        "|---|---|---|---|---|",
    ]
    for m in result["models"]:
        t, f = m["tsne"], m["feature_space"]
        lines.append(
            f"| {m['label']} | {t['silhouette']:.3f} | {t['knn_acc']:.1f} | {f['silhouette']:.3f} "
            f"| {f['knn_acc']:.1f} |"
        )
    return "\n".join(lines)
