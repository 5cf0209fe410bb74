"""The analysis report: Table 5 (robustness), Table 6 (train/test gap), a Grad-CAM
grid, the t-SNE figure, and whether the paper's qualitative findings hold.

The verdicts are computed from the numbers in the report, never asserted: on a
small test set or a short run they may well come out "does not hold", and the
report says how many videos one percentage point is worth.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from tgsemi.analysis import ROLES, as_runs, labels, predict_views, top1
from tgsemi.analysis import robustness as rob
from tgsemi.analysis.corruptions import TEMPORAL
from tgsemi.analysis.embedding import separability_markdown, tsne_figure
from tgsemi.analysis.gradcam import DEFAULT_LAYER, gradcam_video
from tgsemi.errors import MissingExtraError
from tgsemi.models.two_stream import STREAMS
from tgsemi.runs import Run

log = logging.getLogger(__name__)


def overfitting_table(
    runs: Sequence[Run | str | Path], clips: int = 1, batch_size: int = 8, progress: bool = False
) -> dict:
    """Table 6: train and test top-1 and their gap for every network of every run
    (Baseline-RGB/TG from FixMatch runs, Ours-RGB = student, Ours-TG = teacher).
    Train accuracy is over the run's whole train split, scored like the test set."""
    runs = as_runs(runs)
    views = sorted(
        [(run, m) for run in runs for m in run.model.streams],
        key=lambda v: (STREAMS.index(v[1]), list(ROLES).index(v[0].cfg.method)),
    )
    train = predict_views(views, "train", clips, None, batch_size, progress)
    test = predict_views(views, "test", clips, None, batch_size, progress)
    rows = []
    for label, (run, m), tr, te in zip(labels(views), views, train, test):
        a, b = top1(tr), top1(te)
        rows.append(
            {
                "label": label,
                "run": str(run.path),
                "method": run.cfg.method,
                "modality": m,
                "train": a,
                "test": b,
                "gap": a - b,
                "test_videos": int(te["ok"].sum()),
            }
        )
    return {"clips": clips, "rows": rows}


def overfitting_markdown(result: dict) -> str:
    lines = ["| Model | Training Acc. | Testing Acc. | Acc. Gap |", "|---|---|---|---|"]
    lines += [f"| {r['label']} | {r['train']:.1f} | {r['test']:.1f} | {r['gap']:.1f} |" for r in result["rows"]]
    return "\n".join(lines)


def _mean(entries: list[dict], method: str, modality: str, value: Callable[[dict], float]) -> float | None:
    """Mean over the runs (seeds) of one method's network, None if there is none."""
    vals = [value(e) for e in entries if e["method"] == method and e["modality"] == modality]
    return float(np.mean(vals)) if vals else None


def _compare(
    claim: str, ours: float | None, base: float | None, lower_is_better: bool, what: str, needs: str, one_video: float
) -> dict:
    if ours is None or base is None:
        return {"claim": claim, "verdict": "not checked", "evidence": f"needs {needs}"}
    holds = ours < base if lower_is_better else ours > base
    noise = " (within two test videos: noise)" if abs(ours - base) <= 2 * one_video + 1e-9 else ""
    return {
        "claim": claim,
        "verdict": "holds" if holds else "does not hold",
        "evidence": f"{what}: ours {ours:.1f}, baseline {base:.1f}{noise}",
    }


def findings(robust: dict, overfit: dict, embed: dict) -> list[dict]:
    """The paper's qualitative claims, each checked on this report's numbers
    (means over seeds where there are several runs per method)."""
    models, rows = robust["models"], overfit["rows"]
    s = str(robust["severities"][0])
    one_video = 100 / min(r["test_videos"] for r in rows)
    both = "a fixmatch and a tg_fixmatch run"
    out = [
        _compare(
            "TG-FixMatch's RGB network is more accurate than FixMatch's",
            _mean(rows, "tg_fixmatch", "rgb", lambda r: r["test"]),
            _mean(rows, "fixmatch", "rgb", lambda r: r["test"]),
            False,
            "test top-1",
            both,
            one_video,
        )
    ]
    if "grayscale" in robust["corruptions"]:
        out.append(
            _compare(
                "Ours-RGB loses less accuracy than Baseline-RGB under grayscale (Table 5)",
                _mean(models, "tg_fixmatch", "rgb", lambda m: m["clean"] - m["acc"]["grayscale"][s]),
                _mean(models, "fixmatch", "rgb", lambda m: m["clean"] - m["acc"]["grayscale"][s]),
                True,
                "top-1 drop (points)",
                both,
                one_video,
            )
        )
    out.append(
        _smaller_drops(
            "Ours-RGB loses less than Baseline-RGB under every corruption tested (Table 5)",
            models,
            robust["corruptions"],
            s,
            both,
        )
    )
    temporal = [n for n in TEMPORAL if n in robust["corruptions"]]
    if temporal:  # the question motion-trained networks raise, which the paper did not measure
        out.append(
            _smaller_drops(
                "Ours-RGB loses less than Baseline-RGB when frames are reordered, dropped or "
                "frozen (temporal corruptions; not in the paper)",
                models,
                temporal,
                s,
                both,
            )
        )
    for m, needs in (("rgb", both), ("tg", "a fixmatch run with model.modality=tg and a tg_fixmatch run")):
        out.append(
            _compare(
                f"The train/test gap of the {m.upper()} network is smaller for ours (Table 6)",
                _mean(rows, "tg_fixmatch", m, lambda r: r["gap"]),
                _mean(rows, "fixmatch", m, lambda r: r["gap"]),
                True,
                "gap (points)",
                needs,
                one_video,
            )
        )
    measures = [(space, key) for space in ("tsne", "feature_space") for key in ("silhouette", "knn_acc")]
    ours = [_mean(embed["models"], "tg_fixmatch", "rgb", lambda e: e[sp][k]) for sp, k in measures]
    base = [_mean(embed["models"], "fixmatch", "rgb", lambda e: e[sp][k]) for sp, k in measures]
    claim = "Ours-RGB features are more separable by class (t-SNE, Figure 5)"
    if None in ours or None in base:
        out.append({"claim": claim, "verdict": "not checked", "evidence": f"needs {both}"})
    else:
        higher = sum(o > b for o, b in zip(ours, base))
        detail = ", ".join(f"{sp} {k} {o:.2f} vs {b:.2f}" for (sp, k), o, b in zip(measures, ours, base))
        out.append(
            {
                "claim": claim,
                "verdict": _tally(higher, len(measures)),
                "evidence": f"higher for ours in {higher} of {len(measures)} measures (ours vs baseline: {detail})",
            }
        )
    return out


def _smaller_drops(claim: str, models: list[dict], names: Sequence[str], severity: str, needs: str) -> dict:
    """Under how many of ``names`` TG-FixMatch's RGB network drops less than FixMatch's."""
    drops = {
        name: [
            _mean(models, method, "rgb", lambda m: m["clean"] - m["acc"][name][severity])
            for method in ("tg_fixmatch", "fixmatch")
        ]
        for name in names
    }
    if any(o is None or b is None for o, b in drops.values()):
        return {"claim": claim, "verdict": "not checked", "evidence": f"needs {needs}"}
    fewer = [name for name, (o, b) in drops.items() if o < b]
    return {
        "claim": claim,
        "verdict": _tally(len(fewer), len(drops)),
        "evidence": f"smaller drop under {len(fewer)} of {len(drops)}: {', '.join(fewer) or 'none'}",
    }


def _tally(yes: int, total: int) -> str:
    return "holds" if yes == total else "does not hold" if yes == 0 else "mixed"


def findings_markdown(items: list[dict]) -> str:
    return "\n".join(f"- **{f['verdict']}**: {f['claim']}. {f['evidence']}." for f in items)


def _first_per_method(runs: list[Run]) -> list[Run]:
    """One run per method (the first seed) for the figures; the tables show every run."""
    seen: dict[str, Run] = {}
    for run in runs:
        seen.setdefault(run.cfg.method, run)
    return list(seen.values())


def _gradcam_markdown(cam: dict, video: str, layer: str) -> str:
    if "missing" in cam:
        return f"Not drawn: {cam['missing']}."
    return f"""Video `{video}`, layer `{layer}`; each row is one network's map on the RGB frames
([animated]({cam["gif"].name})).

![Grad-CAM]({cam["png"].name})"""


def _report_markdown(
    title: str,
    accuracy: str | None,
    runs: list[Run],
    checks: list[dict],
    n: int,
    robust: dict,
    overfit: dict,
    cam: dict,
    embed: dict,
    *,
    clips: int,
    severity: int,
    video: str,
    layer: str,
) -> str:
    """The text of ``report.md`` from the sections ``make_report`` computed."""
    seeds = max(sum(r.cfg.method == m for r in runs) for m in ROLES)
    figures = "\n\n".join(
        f"![{rob.SUITE_TITLES[suite]}: severity curves]({name})" for suite, name in rob.figure_names(robust).items()
    )
    return f"""# {title}

## Accuracy

{accuracy or "Test top-1 of every network is the *Testing Acc.* column of Table 6 below."}

## Do the paper's findings hold here?

{findings_markdown(checks)}

Computed from the tables below. {n} test videos: one video is {100 / n:.1f} points, and with
{"one run per method" if seeds == 1 else f"means over up to {seeds} runs per method"} a difference of a video or two
is within noise.

## Robustness to input corruptions (Table 5)

Test top-1 of each run's inference network (clips={clips}, centre crop), corruptions applied to the raw
frames before the temporal gradient at severity {severity} (grayscale and reversal have none); in brackets
the change from no corruption. mPC: mean top-1 under the suite's corruptions; rPC: mPC / clean top-1;
relative robustness: 1 - drop / clean, averaged (`tgsemi.analysis.robustness`). Full 5-severity sweep of
every suite: `tgsemi robustness RUN... --suite all --out DIR`.

{rob.markdown(robust)}

{figures}

## Overfitting (Table 6)

Top-1 on the whole train split and on the test split (clips={clips}, centre crop).

{overfitting_markdown(overfit)}

## Grad-CAM attention (Figure 4)

{_gradcam_markdown(cam, video, layer)}

## t-SNE of test features (Figure 5)

Globally averaged backbone features of the whole test set (clips={embed["clips"]} averaged per video).

![t-SNE](tsne.png)

{separability_markdown(embed)}
"""


def make_report(
    run_dirs: Sequence[Run | str | Path],
    out_dir: str | Path,
    accuracy: str | None = None,
    title: str = "tgsemi analysis report",
    clips: int = 1,
    severity: int = 3,
    corruptions: Sequence[str] | None = None,
    video: str = "test:0",
    layer: str = DEFAULT_LAYER,
    batch_size: int = 8,
    progress: bool = False,
    suites: Sequence[str] | None = None,
) -> Path:
    """Write ``out_dir/report.md`` with its tables, figures and JSON; returns its path.

    ``accuracy``: a Markdown section body to lead with (the demo passes its
    accuracy table). Everything else is evaluated here on ``clips`` clips per
    video, centre crop, corruptions at one ``severity`` (the full sweep is
    ``tgsemi robustness``): the ``suites`` of ``robustness.select`` (default
    paper and extended), or the given ``corruptions``.
    """
    runs = as_runs(run_dirs)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}

    def timed(name: str, fn: Callable, *args, **kw):
        start = time.perf_counter()
        result = fn(*args, **kw)
        timings[name] = round(time.perf_counter() - start, 1)
        log.info("report: %s took %.1f s", name, timings[name])
        return result

    robust = timed(
        "robustness", rob.robustness, runs, corruptions, (severity,), None, clips, batch_size, progress, suites
    )
    rob.save(robust, out)
    overfit = timed("overfitting", overfitting_table, runs, clips, batch_size, progress)
    shown = _first_per_method(runs)
    try:
        cam = timed("gradcam", gradcam_video, shown, video, out, layer)
    except MissingExtraError as exc:  # the core install reports the rest
        cam = {"missing": str(exc)}
    embed = timed("tsne", tsne_figure, shown, out / "tsne.png", clips=clips, batch_size=batch_size, progress=progress)
    checks = findings(robust, overfit, embed)
    n = min(r["test_videos"] for r in overfit["rows"])
    (out / "analysis.json").write_text(
        json.dumps(
            {
                "overfitting": overfit,
                "tsne": {k: v for k, v in embed.items() if k not in ("figure", "json")},
                "findings": checks,
                "timings_s": timings,
            },
            indent=1,
        )
    )
    text = _report_markdown(
        title,
        accuracy,
        runs,
        checks,
        n,
        robust,
        overfit,
        cam,
        embed,
        clips=clips,
        severity=severity,
        video=video,
        layer=layer,
    )
    path = out / "report.md"
    path.write_text(text)
    return path
