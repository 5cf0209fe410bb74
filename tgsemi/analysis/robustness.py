"""Accuracy of trained networks under test-time corruptions (``corruptions``), with
the summaries each source reports: supplement Table 5 (top-1 and its drop), Mini
Kinetics-C's mPC and rPC, Schiappa et al.'s relative robustness.

mPC is the mean top-1 over a suite's corruptions and severities, every corruption
weighing the same (one without severity counts once); rPC = 100 * mPC / clean
top-1 (Yi et al.). The relative robustness of a corruption is
1 - (clean - corrupted) / clean (Schiappa et al.), averaged over severities;
averaged over a suite it equals rPC / 100, shown too since each source names its own.
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm import tqdm

from tgsemi.analysis import as_runs, labels, predict_views, top1, views_of
from tgsemi.analysis.corruptions import CORRUPTIONS, NO_SEVERITY, SEVERITIES, SUITES, TITLES, corrupt
from tgsemi.errors import TgsemiError
from tgsemi.runs import Run

DEFAULT_SUITES = ("paper", "extended")  # tgsemi's original eight corruptions
SUITE_TITLES = {
    "paper": "Paper (Table 5)",
    "extended": "tgsemi extended",
    "mini-kinetics-c": "Mini Kinetics-C",
    "schiappa": "Schiappa et al.",
    "selected": "Selected corruptions",
}


def select(suites: Sequence[str] | None = None, corruptions: Sequence[str] | None = None) -> dict[str, list[str]]:
    """The corruptions to evaluate, grouped into the tables to report: the named suites
    (``all``: every suite; default: ``DEFAULT_SUITES``) or one ``selected`` group."""
    if suites and corruptions:
        raise TgsemiError("give suites or corruptions, not both")
    if corruptions:
        unknown = [n for n in corruptions if n not in CORRUPTIONS]
        if unknown:
            raise TgsemiError(f"unknown corruption(s) {unknown}: choose from {list(CORRUPTIONS)}")
        return {"selected": list(dict.fromkeys(corruptions))}
    names = list(SUITES) if suites and "all" in suites else list(suites or DEFAULT_SUITES)
    unknown = [s for s in names if s not in SUITES]
    if unknown:
        raise TgsemiError(f"unknown suite(s) {unknown}: choose from {[*SUITES, 'all']}")
    return {s: list(SUITES[s]) for s in dict.fromkeys(names)}


def robustness(
    runs: Sequence[Run | str | Path],
    corruptions: Sequence[str] | None = None,
    severities: Sequence[int] = (3,),
    modality: str | None = None,
    clips: int = 1,
    batch_size: int = 8,
    progress: bool = False,
    suites: Sequence[str] | None = None,
    threads: int | None = None,
) -> dict:
    """Test top-1 of each run's network, clean and under each corruption and severity.

    Accuracies are keyed ``acc[corruption][str(severity)]`` (string keys, so the
    dict survives a JSON round trip unchanged); a corruption without severity is
    evaluated once and listed under every severity. Each model also gets
    ``summary[suite]`` (``summarize``). ``threads``: the networks' intra-op threads
    (``predict_views``' default otherwise).
    """
    groups = select(suites, corruptions)
    names = list(dict.fromkeys(n for group in groups.values() for n in group))
    if not severities or any(s not in SEVERITIES for s in severities):
        raise TgsemiError(f"severities must be some of {list(SEVERITIES)}, got {list(severities)}")
    views = views_of(as_runs(runs), modality)
    severities = list(severities)
    models = [
        {"label": lab, "run": str(run.path), "method": run.cfg.method, "modality": m, "acc": {}}
        for lab, (run, m) in zip(labels(views), views)
    ]
    conditions = [(None, None)] + [(n, s) for n in names for s in (severities[:1] if n in NO_SEVERITY else severities)]
    for name, s in tqdm(conditions, desc="robustness", disable=not progress):
        f = None if name is None else partial(corrupt, name=name, severity=s)
        for model, pred in zip(models, predict_views(views, "test", clips, f, batch_size, threads=threads)):
            if name is None:
                model["clean"] = top1(pred)
            else:  # a corruption without severity is listed under every severity
                levels = severities if name in NO_SEVERITY else [s]
                model["acc"].setdefault(name, {}).update(dict.fromkeys(map(str, levels), top1(pred)))
    result = {
        "split": "test",
        "clips": clips,
        "severities": severities,
        "suites": groups,
        "corruptions": names,
        "models": models,
    }
    for model in models:
        model["summary"] = summarize(model, result)
    return result


def _ratio(part: float, whole: float) -> float | None:
    return part / whole if whole else None


def mean_accuracy(model: dict, name: str, severities: Sequence[int]) -> float:
    """Top-1 under one corruption, averaged over the severities."""
    return float(np.mean([model["acc"][name][str(s)] for s in severities]))


def summarize(model: dict, result: dict) -> dict[str, dict[str, float | None]]:
    """Per suite: ``mPC``, ``rPC`` (percent) and ``relative_robustness`` (mean over its
    corruptions of their relative robustness; None where the clean top-1 is 0)."""
    out = {}
    for suite, names in result["suites"].items():
        accs = [mean_accuracy(model, n, result["severities"]) for n in names]
        mpc = float(np.mean(accs))
        rel = [_ratio(a, model["clean"]) for a in accs]
        out[suite] = {
            "mPC": mpc,
            "rPC": None if (r := _ratio(mpc, model["clean"])) is None else 100 * r,
            "relative_robustness": None if None in rel else float(np.mean(rel)),
        }
    return out


def _cell(acc: float, clean: float) -> str:
    return f"{acc:.1f} ({acc - clean:+.1f})"


def _table(models: list[dict], rows: list[tuple[str, list[str]]]) -> str:
    lines = [
        "| Corruption | " + " | ".join(m["label"] for m in models) + " |",
        "|---" * (len(models) + 1) + "|",
        "| No Corruption | " + " | ".join(f"{m['clean']:.1f}" for m in models) + " |",
    ]
    return "\n".join(lines + [f"| {title} | " + " | ".join(cells) + " |" for title, cells in rows])


def table_markdown(result: dict, names: Sequence[str] | None = None) -> str:
    """Table 5's layout: a row per corruption (and severity), a column per model, "acc (drop)"."""
    models = result["models"]
    one = len(result["severities"]) == 1
    rows = []
    for name in names or result["corruptions"]:
        for s in result["severities"][:1] if one or name in NO_SEVERITY else result["severities"]:
            title = TITLES[name] + ("" if one or name in NO_SEVERITY else f" s{s}")
            rows.append((title, [_cell(m["acc"][name][str(s)], m["clean"]) for m in models]))
    return _table(models, rows)


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def suite_markdown(result: dict, suite: str) -> str:
    """One suite: a row per corruption ("acc (drop)", averaged over the severities), then
    mPC, rPC and the mean relative robustness of every model."""
    models, sev = result["models"], result["severities"]
    rows = [(TITLES[n], [_cell(mean_accuracy(m, n, sev), m["clean"]) for m in models]) for n in result["suites"][suite]]
    rows += [
        (title, [_fmt(m["summary"][suite][key], spec) for m in models])
        for title, key, spec in (
            ("**mPC**", "mPC", ".1f"),
            ("**rPC** (%)", "rPC", ".1f"),
            ("**Rel. robustness**", "relative_robustness", ".3f"),
        )
    ]
    return _table(models, rows)


def markdown(result: dict) -> str:
    """Every suite's table under its title, with the severities they average."""
    sev = ", ".join(map(str, result["severities"]))
    return "\n\n".join(
        f"### {SUITE_TITLES[s]}\n\nSeverities {sev}; top-1 (change from clean).\n\n{suite_markdown(result, s)}"
        for s in result["suites"]
    )


def plot_severity_curves(result: dict, path: str | Path, names: Sequence[str] | None = None) -> Path:
    """Top-1 against severity (0 = clean), one panel per corruption, one line per model."""
    from matplotlib.figure import Figure

    names = list(names or result["corruptions"])
    cols = min(4, len(names))
    rows = -(-len(names) // cols)
    fig = Figure(figsize=(3.2 * cols, 2.6 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False, sharey=True).ravel()
    x = [0, *result["severities"]]
    for ax, name in zip(axes, names):
        for m in result["models"]:
            ax.plot(
                x, [m["clean"], *(m["acc"][name][str(s)] for s in result["severities"])], marker="o", label=m["label"]
            )
        ax.set_title(TITLES[name] + (" (no severity)" if name in NO_SEVERITY else ""))
        ax.set_xticks(x)
        ax.set_xlabel("severity (0 = clean)")
        ax.grid(alpha=0.3)
    for ax in axes[len(names) :]:
        ax.set_visible(False)
    axes[0].set_ylabel("top-1 (%)")
    axes[0].legend(fontsize="small")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path


def figure_names(result: dict, stem: str = "robustness") -> dict[str, str]:
    """Suite -> its figure's file name: ``stem.png`` for one suite, ``stem_SUITE.png`` for several."""
    suites = list(result["suites"])
    return {s: f"{stem}.png" if len(suites) == 1 else f"{stem}_{s}.png" for s in suites}


def save(result: dict, out_dir: str | Path, stem: str = "robustness") -> dict[str, Path]:
    """Write ``stem.json``, ``stem.md`` (``markdown``, then Table 5's layout with every
    severity) and the severity curves of every suite."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(result, indent=1))
    (out / f"{stem}.md").write_text(f"{markdown(result)}\n\n### Every severity\n\n{table_markdown(result)}\n")
    figures = {
        f"figure_{s}": plot_severity_curves(result, out / name, result["suites"][s])
        for s, name in figure_names(result, stem).items()
    }
    return {"json": out / f"{stem}.json", "markdown": out / f"{stem}.md", **figures}
