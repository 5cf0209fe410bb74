"""``tgsemi`` command line: one subcommand per job, each a thin call into the library."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from tgsemi.errors import TgsemiError


def cmd_split(a: argparse.Namespace) -> None:
    from tgsemi.data.splits import split_list_file

    labeled, unlabeled = split_list_file(
        a.train_list,
        a.out,
        fraction=a.fraction,
        per_class=a.per_class,
        strategy=a.strategy,
        seed=a.seed,
        unlabeled=a.unlabeled,
    )
    print(f"wrote {labeled} and {unlabeled}")


def cmd_synth(a: argparse.Namespace) -> None:
    from tgsemi.data.synth import make_dataset

    knobs = {k: v for k in ("appearance_bias", "scene_cue") if (v := getattr(a, k)) is not None}
    print(f"wrote {make_dataset(a.out, preset=a.preset, seed=a.seed, **knobs)}")


def cmd_train(a: argparse.Namespace) -> None:
    from tgsemi.config import load_config
    from tgsemi.engine import train

    train(load_config(a.config, a.overrides), a.out)
    print(f"final checkpoint: {Path(a.out) / 'checkpoints' / 'last.pt'}")


def cmd_eval(a: argparse.Namespace) -> None:
    from tgsemi.runs import eval_run, load_run

    run = load_run(a.run)
    res = eval_run(
        run,
        a.split,
        a.clips,
        a.crops,
        a.modality,
        batch_size=a.batch_size,
        num_workers=a.num_workers,
        device=a.device,
        progress=True,
    )
    out = Path(a.json) if a.json else run.path / f"eval_{a.split}_{res['modality']}_{a.clips}x{a.crops}.json"
    out.write_text(json.dumps(res, indent=1))
    print(
        "| run | split | net | views | top-1 | top-5 | mean class | scored | failed |\n"
        "|---|---|---|---|---|---|---|---|---|\n"
        f"| {run.name} | {a.split} | {res['modality']} | {a.clips}x{a.crops} | {res['top1']:.1f} | {res['top5']:.1f} "
        f"| {res['mean_class']:.1f} | {res['scored']} | {res['failed']} |"
    )
    print(f"wrote {out}")


def cmd_demo(a: argparse.Namespace) -> None:
    from tgsemi.demo import run_demo

    print(f"report: {run_demo(a.out, quick=a.quick, data_dir=a.data, seeds=a.seeds)}")


def severities(text: str) -> list[int]:
    """Severities as ``3``, ``1-5`` or ``1,3,5`` (argparse names the type in its error)."""
    parts = [p.split("-", 1) for p in text.split(",")]
    return [s for p in parts for s in range(int(p[0]), int(p[-1]) + 1)]


def cmd_robustness(a: argparse.Namespace) -> None:
    from tgsemi.analysis import robustness as rob

    levels = list(dict.fromkeys(s for group in a.severities for s in group))
    res = rob.robustness(
        a.runs,
        a.corruptions,
        levels,
        a.modality,
        a.clips,
        a.batch_size,
        progress=True,
        suites=a.suite,
        threads=a.threads,
    )
    paths = rob.save(res, a.out)
    print(rob.markdown(res))
    print("wrote " + ", ".join(str(p) for p in paths.values()))


def target(text: str) -> str | int:
    """A Grad-CAM target: "pred", "true" or a class index (argparse names the type in its error)."""
    return text if text in ("pred", "true") else int(text)


def cmd_gradcam(a: argparse.Namespace) -> None:
    from tgsemi.analysis.gradcam import gradcam_video

    paths = gradcam_video(a.runs, a.video, a.out, a.layer, a.target, a.modality)
    print("wrote " + ", ".join(str(p) for p in paths.values()))


def cmd_tsne(a: argparse.Namespace) -> None:
    from tgsemi.analysis.embedding import separability_markdown, tsne_figure

    res = tsne_figure(a.runs, a.out, a.modality, a.clips, a.perplexity, batch_size=a.batch_size, progress=True)
    print(separability_markdown(res))
    print(f"wrote {res['figure']}, {res['json']}")


def cmd_report(a: argparse.Namespace) -> None:
    from tgsemi.analysis.report import make_report

    path = make_report(
        a.runs,
        a.out,
        clips=a.clips,
        severity=a.severity,
        corruptions=a.corruptions,
        video=a.video,
        layer=a.layer,
        batch_size=a.batch_size,
        progress=True,
        suites=a.suite,
    )
    print(f"report: {path}")


def _add_split(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("split", help="make a labeled subset of a train list")
    s.add_argument("train_list")
    s.add_argument("--fraction", type=float)
    s.add_argument("--per-class", type=int)
    s.add_argument("--strategy", choices=["stratified", "random", "per-class"], default="stratified")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--unlabeled", choices=["all", "complement"], default="all")
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_split)


def _add_synth(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("synth", help="write the synthetic motion-defined action dataset")
    s.add_argument("out")
    s.add_argument("--preset", choices=["tiny", "demo"], default="tiny")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--appearance-bias", type=float, help="train-only scene bias, 0..1")
    s.add_argument("--scene-cue", type=float, help="scene predicts the class in both splits, 0..1")
    s.set_defaults(func=cmd_synth)


def _add_train(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("train", help="train (or resume) a run: CONFIG is a preset name or a YAML path")
    s.add_argument("config")
    s.add_argument("--out", required=True, help="run folder; re-running on it resumes")
    s.add_argument("overrides", nargs="*", help="dotted.key=value")
    s.set_defaults(func=cmd_train)


def _add_eval(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("eval", help="evaluate a run folder or checkpoint")
    s.add_argument("run")
    s.add_argument("--split", choices=["test", "train", "labeled"], default="test")
    s.add_argument("--clips", type=int, default=10)
    s.add_argument("--crops", type=int, choices=[1, 3], default=3)
    s.add_argument("--modality", choices=["rgb", "tg"])
    s.add_argument("--batch-size", type=int, default=4)
    s.add_argument("--num-workers", type=int, default=0)
    s.add_argument("--device", default="cpu")
    s.add_argument("--json", help="where to write the result (default: RUN/eval_*.json)")
    s.set_defaults(func=cmd_eval)


def _add_demo(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("demo", help="the main job: synthetic data, three methods, report")
    s.add_argument("--quick", action="store_true", help="a 3-minute version")
    s.add_argument("--out", default="runs/demo")
    s.add_argument("--data", default=None, help="dataset folder (default data/demo or data/demo-quick)")
    s.add_argument("--seeds", type=int, nargs="+", default=None)
    s.set_defaults(func=cmd_demo)


def _add_robustness(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser(
        "robustness",
        help="test top-1 under input corruptions (Table 5, Mini Kinetics-C, "
        "Schiappa et al.): a table per suite with mPC/rPC, severity curves, JSON",
    )
    s.add_argument("runs", nargs="+", help="run folders or checkpoints, one column each")
    s.add_argument(
        "--suite",
        nargs="+",
        help="corruption suites, one table each: paper, extended, mini-kinetics-c, "
        "schiappa or all (default: paper extended, tgsemi's original eight)",
    )
    s.add_argument("--corruptions", nargs="+", help="instead of suites: these corruptions, one table")
    s.add_argument(
        "--severities",
        type=severities,
        nargs="+",
        default=[[1, 2, 3, 4, 5]],
        help="1..5, as a list, 1-5 or 1,3,5 (default: all)",
    )
    s.add_argument("--modality", choices=["rgb", "tg"], help="network to test (default: each run's RGB net)")
    s.add_argument("--clips", type=int, default=1)
    s.add_argument("--batch-size", type=int, default=8)
    s.add_argument(
        "--threads",
        type=int,
        help="intra-op threads of the networks (default: the usable CPUs; 1 is fastest on a busy machine)",
    )
    s.add_argument("--out", required=True, help="folder for robustness.{md,json} and the curves (.png per suite)")
    s.set_defaults(func=cmd_robustness)


def _add_gradcam(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser(
        "gradcam",
        help="Grad-CAM maps of runs on one video: PNG grid + GIF",
        description="VIDEO is a video file, a rawframe folder, or test:K (the K-th video, 0-based, "
        "of each run's test list, read as evaluation reads it).",
    )
    s.add_argument("runs", nargs="+", metavar="CKPT_OR_RUN", help="run folders or checkpoints, one row each")
    s.add_argument("video", metavar="VIDEO")
    s.add_argument("--layer", default="layer3", choices=["stem", "layer1", "layer2", "layer3", "layer4"])
    s.add_argument("--target", default="pred", type=target, help="pred, true (test:K only) or a class index")
    s.add_argument("--modality", nargs="+", choices=["rgb", "tg"], help="networks to show (default: all)")
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_gradcam)


def _add_tsne(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("tsne", help="t-SNE of test-set features with separability numbers (Figure 5)")
    s.add_argument("runs", nargs="+")
    s.add_argument("--modality", choices=["rgb", "tg"])
    s.add_argument("--clips", type=int, help="clips averaged per video (default: the run's eval.clips)")
    s.add_argument("--perplexity", type=float, default=30.0)
    s.add_argument("--batch-size", type=int, default=8)
    s.add_argument("--out", required=True, help="figure path (.png); the JSON goes beside it")
    s.set_defaults(func=cmd_tsne)


def _add_report(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("report", help="robustness, overfitting, Grad-CAM, t-SNE and the verdict in one report.md")
    s.add_argument("runs", nargs="+")
    s.add_argument("--clips", type=int, default=1)
    s.add_argument("--severity", type=int, choices=range(1, 6), default=3)
    s.add_argument("--suite", nargs="+", help="as for tgsemi robustness (default: paper extended)")
    s.add_argument("--corruptions", nargs="+", help="instead of suites (see tgsemi robustness)")
    s.add_argument("--video", default="test:0", help="Grad-CAM video: test:K or a path")
    s.add_argument("--layer", default="layer3", choices=["stem", "layer1", "layer2", "layer3", "layer4"])
    s.add_argument("--batch-size", type=int, default=8)
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_report)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tgsemi", description=__doc__)
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="command", required=True)
    for add in (
        _add_split,
        _add_synth,
        _add_train,
        _add_eval,
        _add_demo,
        _add_robustness,
        _add_gradcam,
        _add_tsne,
        _add_report,
    ):
        add(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)  # overrides may follow --out
    if extra and args.command != "train":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if extra:
        args.overrides += extra
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        args.func(args)
    except TgsemiError as exc:
        print(f"tgsemi {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
