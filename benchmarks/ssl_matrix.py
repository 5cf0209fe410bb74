"""Method x dataset-variant x seed matrix: does the recipe's ordering hold across data, and by how
much more than the seed-to-seed noise?

For each synthetic variant (``demo``; ``hard``: moving real-footage backgrounds, camera motion,
small objects, distractors, subtle motion families; ``hard_bias``: ``hard`` with the appearance
bias at 0.8) it trains, per seed, every arm with the same preset and evaluates it on the test set:

- ``supervised``, ``fixmatch``, ``tg_fixmatch``: the RGB network (and TG-FixMatch's TG network);
- ``tg_alone``: a TG network trained alone, supervised, on the same labeled clips: what the TG
  network inside TG-FixMatch should at least keep;
- ``ceiling_rgb``, ``ceiling_tg``: supervised with every train clip labeled: whether the variant
  is learnable at all, and the room above the semi-supervised methods.

It writes ``OUT/matrix.md`` (mean ± std over seeds per cell, and the largest std of the variant:
the noise floor against which a gap is read; pseudo-label accuracy at the end of training, from
metrics.jsonl) and ``OUT/matrix.json`` (every run and the summary). A run whose folder holds its
final checkpoint and its ``eval.json`` is skipped, so a stopped matrix resumes with the same command;
data folders are built once under ``--data`` (default ``OUT/data``) and reused while their synth.json
matches. The ceilings run on the first of ``--seeds`` only (``--ceiling-seeds`` to change it).

The full matrix (3 variants x 4 arms x 3 seeds, and the 2 ceilings on seed 0: 42 runs; about an hour
on 2 idle cores) with the ``small_cpu`` preset, the recipe under test:

    .venv/bin/python benchmarks/ssl_matrix.py --out runs/ssl_matrix

Parts of it, another preset, or overrides for every run (``KEY=VALUE`` as ``tgsemi train`` takes them):

    .venv/bin/python benchmarks/ssl_matrix.py --variants hard --methods fixmatch tg_fixmatch --seeds 0 1
    .venv/bin/python benchmarks/ssl_matrix.py loss.threshold=0.3 --out runs/thr03 --data runs/ssl_matrix/data
    .venv/bin/python benchmarks/ssl_matrix.py --tiny --out /tmp/ssl_tiny   # the plumbing, seconds a run
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from tgsemi.config import load_config
from tgsemi.data.synth import RECIPE
from tgsemi.demo import ensure_data
from tgsemi.engine import train
from tgsemi.errors import ArgumentError
from tgsemi.runfiles import RunPaths, read_metrics
from tgsemi.runs import eval_run, load_run

log = logging.getLogger(__name__)

# variant -> (synth preset, knobs); the data are built with seed 0, the seeds vary the training
VARIANTS: dict[str, tuple[str, dict]] = {
    "demo": ("demo", {}),
    "hard": ("hard", {}),
    "hard_bias": ("hard", {"appearance_bias": 0.8}),
}
# --tiny: each variant at a few small videos, trained for a few steps
_TINY_HARD = dict(
    classes=("Pendulum", "Orbit", "Hop"),
    train_per_class=4,
    test_per_class=2,
    size=(64, 48),
    min_frames=24,
    max_frames=40,
)
TINY_VARIANTS: dict[str, tuple[str, dict]] = {
    "demo": ("tiny", {}),
    "hard": ("hard", _TINY_HARD),
    "hard_bias": ("hard", {**_TINY_HARD, "appearance_bias": 0.8}),
}
TINY_OVERRIDES = ["train.max_steps=2", "loss.unlabeled_warmup_epochs=0"]  # pseudo-labels from step 1

# arm -> (overrides, the networks evaluated)
ARMS: dict[str, tuple[list[str], tuple[str, ...]]] = {
    "supervised": (["method=supervised"], ("rgb",)),
    "fixmatch": (["method=fixmatch"], ("rgb",)),
    "tg_fixmatch": (["method=tg_fixmatch"], ("rgb", "tg")),
    "tg_alone": (["method=supervised", "model.modality=tg"], ("tg",)),
    "ceiling_rgb": (["method=supervised", "data.labeled_fraction=1.0"], ("rgb",)),
    "ceiling_tg": (["method=supervised", "model.modality=tg", "data.labeled_fraction=1.0"], ("tg",)),
}
# the table's columns: (heading, arm, value)
COLUMNS = [
    ("supervised RGB", "supervised", "rgb"),
    ("FixMatch RGB", "fixmatch", "rgb"),
    ("TG-FixMatch RGB", "tg_fixmatch", "rgb"),
    ("TG-FixMatch TG", "tg_fixmatch", "tg"),
    ("TG alone", "tg_alone", "tg"),
    ("ceiling RGB", "ceiling_rgb", "rgb"),
    ("ceiling TG", "ceiling_tg", "tg"),
    ("PL acc FixMatch", "fixmatch", "pl_acc"),
    ("PL acc TG-FixMatch", "tg_fixmatch", "pl_acc"),
]
EVAL = "eval.json"  # written into a run folder once the run is trained and evaluated
LAST_SHARE = 0.25  # pseudo-label accuracy: mean over this last share of the logged steps


def _end_of_training(metrics: list[dict], key: str) -> float | None:
    """Mean of ``key`` over the last LAST_SHARE of the logged steps that have it (None if none has)."""
    values = [r[key] for r in metrics if isinstance(r.get(key), (int, float))]
    if not values:
        return None
    return float(np.mean(values[-max(1, math.ceil(LAST_SHARE * len(values))) :]))


def run_arm(run_dir: Path, preset: str, overrides: list[str], networks: tuple[str, ...], data: Path) -> dict:
    """Train (or resume) one run on the synthetic set in ``data`` and evaluate its networks; a finished
    run is read back, not retrained, unless its settings or the data's synth.json have changed since."""
    paths, done = RunPaths(run_dir), run_dir / EVAL
    made = json.loads((data / RECIPE).read_text())
    if done.exists() and paths.last.exists():
        result = json.loads(done.read_text())
        if result["preset"] != preset or result["overrides"] != overrides:
            why = f"was run with other settings ({result['preset']} {result['overrides']})"
        elif result.get("data") != made:
            why = f"was trained on data built otherwise than {data / RECIPE} says"
        else:
            return {**result, "skipped": True}
        raise ArgumentError(f"{run_dir} {why}: give another --out, or delete {run_dir} to run it again")
    cfg = load_config(preset, overrides)
    start = time.perf_counter()
    train(cfg, run_dir)
    train_s = time.perf_counter() - start
    run = load_run(run_dir)
    result = {"preset": preset, "overrides": overrides, "data": made, "steps": run.step, "train_s": round(train_s, 1)}
    for net in networks:
        result[net] = eval_run(run, "test", run.cfg.eval.clips, run.cfg.eval.crops, modality=net)["top1"]
    metrics = read_metrics(paths.metrics)
    pl_acc = _end_of_training(metrics, "pl_acc")  # a share: in % as the accuracies
    result["pl_acc"] = None if pl_acc is None else 100 * pl_acc
    result["mask_rate"] = _end_of_training(metrics, "mask_rate")
    result["sec_per_step"] = _end_of_training(metrics, "sec_per_step")
    done.write_text(json.dumps(result, indent=1))
    return {**result, "skipped": False}


def _cell(values: list[float]) -> dict:
    std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return {"mean": float(np.mean(values)), "std": std, "n": len(values), "values": values}


def summarise(runs: list[dict]) -> dict:
    """Per variant: each column's mean, std (over seeds, ddof 1), n and values; the chance level; and the
    noise floor, the largest std among the variant's accuracy cells."""
    summary: dict[str, dict] = {}
    for variant in dict.fromkeys(r["variant"] for r in runs):
        mine = [r for r in runs if r["variant"] == variant]
        cells = {}
        for heading, arm, value in COLUMNS:
            values = [r[value] for r in mine if r["arm"] == arm and r.get(value) is not None]
            if values:
                cells[heading] = _cell(values)
        spreads = [c["std"] for h, c in cells.items() if not h.startswith("PL") and c["n"] > 1]
        summary[variant] = {
            "chance": 100 / mine[0]["classes"],
            "noise_floor": max(spreads) if spreads else None,
            "cells": cells,
        }
    return summary


def markdown(summary: dict, preset: str, overrides: list[str]) -> str:
    """The matrix as a markdown table: mean ± std (seeds) per cell, top-1 % on the test set."""
    head = ["variant", "chance", *[h for h, _, _ in COLUMNS], "noise floor (max std)"]
    lines = [
        f"Test top-1 (%), mean ± std over seeds (n), preset `{preset}`"
        + (f" with `{' '.join(overrides)}`" if overrides else "")
        + "; PL acc: pseudo-label accuracy (%) over the last quarter of training.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for variant, s in summary.items():
        cells = [
            "-"
            if not (c := s["cells"].get(h))
            else f"{c['mean']:.1f} (1)"
            if c["n"] == 1
            else f"{c['mean']:.1f} ± {c['std']:.1f} ({c['n']})"
            for h, _, _ in COLUMNS
        ]
        floor = "-" if s["noise_floor"] is None else f"{s['noise_floor']:.1f}"
        lines.append(f"| {variant} | {s['chance']:.1f} | " + " | ".join(cells) + f" | {floor} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("overrides", nargs="*", help="KEY=VALUE config overrides for every run")
    p.add_argument("--preset", help="training preset (default small_cpu; synthetic_tiny with --tiny)")
    p.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    p.add_argument("--methods", nargs="+", choices=list(ARMS), default=list(ARMS), help="arms to run")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument(
        "--ceiling-seeds",
        nargs="+",
        type=int,
        help="seeds of the 100 %%-label arms (default: the first of --seeds; they show learnability, not a gap)",
    )
    p.add_argument("--out", type=Path, default=Path("runs/ssl_matrix"))
    p.add_argument("--data", type=Path, help="where the variants' data are built and reused (default OUT/data)")
    p.add_argument("--tiny", action="store_true", help="tiny data, a few steps a run: a test of the plumbing")
    args = p.parse_args(argv)
    preset = args.preset or ("synthetic_tiny" if args.tiny else "small_cpu")
    variants = TINY_VARIANTS if args.tiny else VARIANTS
    extra = (TINY_OVERRIDES if args.tiny else []) + args.overrides
    load_config(preset, extra)  # a bad preset or override fails before any data is built

    ceiling_seeds = args.ceiling_seeds or args.seeds[:1]
    jobs = [
        (v, arm, seed)
        for v in args.variants
        for arm in args.methods
        for seed in (ceiling_seeds if arm.startswith("ceiling") else args.seeds)
    ]
    runs = []
    with tqdm(total=len(jobs), desc="ssl matrix", dynamic_ncols=True) as bar:
        for variant, arm, seed in jobs:
            bar.set_postfix_str(f"{variant}/{arm}/seed{seed}")
            synth_preset, knobs = variants[variant]
            data = ensure_data((args.data or args.out / "data") / variant, synth_preset, **knobs)
            arm_overrides, networks = ARMS[arm]
            overrides = [f"data.root={data}", f"seed={seed}", "train.progress=false", *arm_overrides, *extra]
            result = run_arm(args.out / variant / arm / f"seed{seed}", preset, overrides, networks, data)
            made = result.pop("data")  # each run's recipe is in its eval.json; the table needs its classes
            runs.append({"variant": variant, "arm": arm, "seed": seed, "classes": len(made["classes"]), **result})
            bar.update(1)

    summary = summarise(runs)
    report = {"preset": preset, "overrides": extra, "runs": runs, "summary": summary}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "matrix.json").write_text(json.dumps(report, indent=1))
    (args.out / "matrix.md").write_text(markdown(summary, preset, extra))
    print((args.out / "matrix.md").read_text())
    return report


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    main()
