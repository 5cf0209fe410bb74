"""The main job: synthetic data -> every registered method (supervised, FixMatch, TG-FixMatch) -> report.

On the synthetic set, classes are defined by motion while appearance (scene,
object, colours, shared within a group of clips; train and test groups disjoint)
is a nuisance: the paper's claim is that the TG stream, which learns motion from
few labels, teaches the RGB network to look at the motion too.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from tgsemi import checkpoint
from tgsemi.config import Config, config_changes, config_from_dict, load_config
from tgsemi.data.synth import RECIPE, make_dataset, recipe
from tgsemi.engine import train
from tgsemi.methods import METHODS, get_method
from tgsemi.runfiles import RunPaths
from tgsemi.runs import eval_run, load_run

log = logging.getLogger(__name__)
# the preset chosen across the synthetic variants of benchmarks/ssl_matrix.py (docs/demo_findings.md);
# the demo set is one of them, and a newcomer's own data starts from the same preset
PRESET = "small_cpu"


def ensure_data(data_dir: Path, preset: str, **knobs) -> Path:
    """Build the synthetic set (seed 0, ``knobs`` as ``make_dataset`` takes them) unless ``data_dir``
    already holds one made so by the current code (its synth.json says how it was made)."""
    made = data_dir / RECIPE
    if not made.exists() or json.loads(made.read_text()) != recipe(preset, 0, **knobs):
        log.info("building the synthetic %r dataset %s in %s ...", preset, knobs or "", data_dir)
        make_dataset(data_dir, preset=preset, seed=0, **knobs)
    return data_dir


def stale(run_dir: Path, cfg: Config) -> str | None:
    """Why the demo's run in ``run_dir`` no longer matches what the demo trains (None if it does).

    A run left by an older preset would make ``train`` refuse to resume; one trained on data
    rebuilt since (``ensure_data``) would resume as if current.
    """
    last = RunPaths(run_dir).last
    if not last.exists():
        return None
    changed = config_changes(config_from_dict(checkpoint.load(last)["config"]), cfg)
    if changed:
        return f"trained with other settings ({'; '.join(changed)})"
    if last.stat().st_mtime < (Path(cfg.data.root) / RECIPE).stat().st_mtime:
        return f"trained before {cfg.data.root} was rebuilt"
    return None


def run_demo(
    out: str | Path = "runs/demo",
    quick: bool = False,
    data_dir: str | Path | None = None,
    seeds: list[int] | None = None,
) -> Path:
    """Train every registered method (one run per seed), evaluate them, write ``out/report.md``."""
    out = Path(out)
    preset = "tiny" if quick else "demo"
    data = ensure_data(Path(data_dir or f"data/{'demo-quick' if quick else 'demo'}"), preset)
    overrides = [f"data.root={data}"]
    if quick:
        # 20 % labels: the tiny set has 6 train videos per class, so 10 % would leave classes unlabeled
        overrides += [
            "data.labeled_fraction=0.2",
            "train.epochs=4",
            "train.warmup_epochs=0.5",
            "loss.unlabeled_warmup_epochs=1",
            "train.eval_every_epochs=100",
            "eval.clips=1",
        ]
    results = []
    for seed in seeds or [0]:
        for method in METHODS:
            run_dir = out / f"{method}_seed{seed}"
            cfg = load_config(PRESET, overrides + [f"method={method}", f"seed={seed}"])
            if why := stale(run_dir, cfg):
                log.warning("%s: %s; training it again", run_dir, why)
                shutil.rmtree(run_dir)  # the demo's own output: everything in it is remade
            train(cfg, run_dir)
            run = load_run(run_dir)
            res = eval_run(run, "test", run.cfg.eval.clips, run.cfg.eval.crops, progress=True)
            (run_dir / "eval_test.json").write_text(json.dumps(res, indent=1))
            results.append({"method": method, "seed": seed, "run": str(run_dir), **res})
    return write_report(out, results)


def accuracy_table(results: list[dict]) -> str:
    lines = ["| method | seed | top-1 | top-5 | mean class | videos scored | failed |", "|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(
            f"| {get_method(r['method']).label} (RGB) | {r['seed']} | {r['top1']:.1f} | {r['top5']:.1f} "
            f"| {r['mean_class']:.1f} | {r['scored']} | {r['failed']} |"
        )
    return "\n".join(lines)


def write_report(out: Path, results: list[dict]) -> Path:
    """``results.json`` and ``report.md``: the accuracy table, then the analysis
    (robustness, overfitting, Grad-CAM, t-SNE and whether the paper's findings hold)."""
    from tgsemi.analysis.report import make_report

    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(
        json.dumps([{k: v for k, v in r.items() if k != "confusion"} for r in results], indent=1)
    )
    accuracy = (
        "Test top-1 of the RGB network (the TG network is only a teacher), synthetic motion-defined "
        "classes.\n\n" + accuracy_table(results)
    )
    return make_report([r["run"] for r in results], out, accuracy=accuracy, title="tgsemi demo report")
