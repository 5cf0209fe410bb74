"""``tgsemi`` command line: one subcommand per job, each a thin call into the library."""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from pathlib import Path

from tgsemi import __version__
from tgsemi.errors import ArgumentError, RunInterrupted, TgsemiError
from tgsemi.outputs import writable_dir, writable_file, writing

# --- argument types: a value out of range is argparse's one-line usage error naming the option ---------


def number(kind: type, lo: float | None = None, hi: float | None = None, open_lo: bool = False):
    """An argparse type: a finite ``kind`` (int or float) in [lo, hi] ((lo, hi] with ``open_lo``)."""
    bounds = ([f"{'>' if open_lo else '>='} {lo}"] if lo is not None else []) + ([f"<= {hi}"] if hi is not None else [])
    rule = f"{'an integer' if kind is int else 'a number'} {' and '.join(bounds)}"

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {rule}, got {text!r}") from None
        low = lo is not None and (value <= lo if open_lo else value < lo)
        if not math.isfinite(value) or low or (hi is not None and value > hi):
            raise argparse.ArgumentTypeError(f"must be {rule}, got {text!r}")
        return value

    parse.__name__ = kind.__name__  # argparse's fallback message names the type
    return parse


COUNT = number(int, 1)  # clips, batch sizes, threads, top-k: a count of things to do
NATURAL = number(int, 0)  # loader workers, class indices
SEED = number(int, 0, 2**32 - 1)  # config.MAX_SEED (a test checks they agree)
SHARE = number(float, 0, 1)  # a probability
FRACTION = number(float, 0, 1, open_lo=True)  # a non-empty part of a list
POSITIVE = number(float, 0, open_lo=True)  # t-SNE perplexity, scales
# options whose range is not a count's, by dest; a float option must be listed (a test checks)
RANGES = {
    "num_workers": NATURAL,
    "seed": SEED,
    "seeds": SEED,
    "fraction": FRACTION,
    "appearance_bias": SHARE,
    "scene_cue": SHARE,
    "perplexity": POSITIVE,
}


def device(text: str) -> str:
    """``--device``: auto, cpu or cuda, and cuda only where torch finds a GPU (``runtime.pick_device``)."""
    from tgsemi.runtime import pick_device

    try:
        pick_device(text)
    except ArgumentError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _check_types(parser: argparse.ArgumentParser) -> None:
    """Give every numeric option its range: ``RANGES[dest]``, else an int is a count (>= 1); every
    ``--device`` is checked by ``device``. A rule, so options added later are covered too."""
    for action in parser._actions:
        if action.type in (int, float):
            action.type = RANGES.get(action.dest, COUNT if action.type is int else None)
            if action.type is None:
                raise TypeError(f"option {action.dest} of {parser.prog}: give its range in cli.RANGES")
        elif action.dest == "device":
            action.type = device


def cmd_split(a: argparse.Namespace) -> None:
    from tgsemi.data.splits import split_list_file

    writable_dir(a.out, "--out")
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


def cmd_lists_convert(a: argparse.Namespace) -> None:
    from tgsemi.data.annotations import convert_list

    writable_file(a.out, "--out")
    print(f"wrote {convert_list(a.source, a.out, a.to, a.frames_root, a.suffix, a.prefix)}")


def cmd_synth(a: argparse.Namespace) -> None:
    from tgsemi.data.synth import make_dataset

    writable_dir(a.out, "OUT")
    names = ("appearance_bias", "scene_cue", "background", "distractors", "train_per_class", "test_per_class")
    knobs = {k: v for k in names if (v := getattr(a, k)) is not None}
    print(f"wrote {make_dataset(a.out, preset=a.preset, seed=a.seed, **knobs)}")


def cmd_train(a: argparse.Namespace) -> None:
    from tgsemi.config import config_yaml, load_config
    from tgsemi.engine import train
    from tgsemi.runfiles import RunPaths

    cfg = load_config(a.config, a.overrides)
    if a.print_config:
        print(config_yaml(cfg), end="")
        return
    if not a.out:
        raise ArgumentError("train needs --out RUN_FOLDER (where the run writes; re-running on it resumes)")
    train(cfg, a.out)
    last = RunPaths(a.out).last
    if not last.is_file():  # claim no save that was not made
        raise TgsemiError(f"{a.out}: no step was trained (train.epochs, train.max_steps), so no checkpoint was written")
    print(f"final checkpoint: {last}")


def cmd_check_data(a: argparse.Namespace) -> None:
    from tgsemi.config import load_config
    from tgsemi.data.check import Finding, check_data
    from tgsemi.errors import DataCheckError

    if a.json:
        writable_file(a.json, "--json")
    report = check_data(load_config(a.config, a.overrides), a.workers, progress=True)
    print("| split | clips | classes | frames min / median / max |\n|---|---|---|---|")
    for name, split in report["splits"].items():
        frames = split["frames"] or {}
        span = " / ".join(str(frames.get(k, "-")) for k in ("min", "median", "max"))
        print(f"| {name} | {split['clips']} | {len(split['per_class'])} | {span} |")
    print(f"{report['files_checked']} files opened, {len(report['classes'])} classes")
    for level in ("warnings", "errors"):
        for f in report[level]:
            print(f"{level[:-1]}: {Finding(**f)}")
    if a.json:
        with writing(Path(a.json)):
            Path(a.json).write_text(json.dumps(report, indent=1))
        print(f"wrote {a.json}")
    if report["errors"]:
        raise DataCheckError(f"{len(report['errors'])} error(s) in the data (listed above)")


def cmd_eval(a: argparse.Namespace) -> None:
    from tgsemi import distributed
    from tgsemi.runs import eval_run, load_run

    distributed.setup()  # torchrun: the ranks share the videos (evaluate.predict)
    if a.json:
        writable_file(a.json, "--json")
    run = load_run(a.run, data_root=a.data_root, test_list=a.test_list)
    if not a.json:
        writable_dir(run.path)
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
    if not distributed.is_main():  # under torchrun every rank scored a share; rank 0 reports
        return
    out = Path(a.json) if a.json else run.path / f"eval_{a.split}_{res['modality']}_{a.clips}x{a.crops}.json"
    print(  # first: a write that fails after all still leaves the numbers on the screen
        "| run | split | net | views | top-1 | top-5 | mean class | scored | failed |\n"
        "|---|---|---|---|---|---|---|---|---|\n"
        f"| {run.name} | {a.split} | {res['modality']} | {a.clips}x{a.crops} | {res['top1']:.1f} | {res['top5']:.1f} "
        f"| {res['mean_class']:.1f} | {res['scored']} | {res['failed']} |"
    )
    with writing(out):
        out.write_text(json.dumps(res, indent=1))
    print(f"wrote {out}")


def cmd_predict(a: argparse.Namespace) -> None:
    from tgsemi.predict import predict_files, table, write_json
    from tgsemi.runs import load_run

    if a.json:
        writable_file(a.json, "--json")
    run = load_run(a.run, device=a.device)
    found = predict_files(run, a.videos, a.clips, a.crops, a.topk, a.modality, a.device, a.batch_size, a.num_workers)
    if a.json:
        write_json(found, a.json)
    print(table(found))
    if a.json:
        print(f"wrote {a.json}")
    if not any(p.ok for p in found):
        raise TgsemiError(f"none of the {len(found)} video(s) could be decoded")


def cmd_demo(a: argparse.Namespace) -> None:
    from tgsemi.demo import run_demo

    writable_dir(a.out, "--out")
    print(f"report: {run_demo(a.out, quick=a.quick, data_dir=a.data, seeds=a.seeds)}")


def severities(text: str) -> list[int]:
    """Severities as ``3``, ``1-5`` or ``1,3,5``, each 1..5 (argparse names the type in its error)."""
    parts = [p.split("-", 1) for p in text.split(",")]
    levels = [s for p in parts for s in range(int(p[0]), int(p[-1]) + 1)]
    if not levels or any(s not in range(1, 6) for s in levels) or any(int(p[0]) > int(p[-1]) for p in parts):
        raise argparse.ArgumentTypeError(f"severities are 1..5, as 3, 1-5 or 1,3,5, got {text!r}")
    return levels


def cmd_robustness(a: argparse.Namespace) -> None:
    from tgsemi.analysis import robustness as rob

    writable_dir(a.out, "--out")
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


def _one_of(text: str, options: tuple[str, ...]) -> str:
    if text not in options:
        raise argparse.ArgumentTypeError(f"must be one of {', '.join(options)}, got {text!r}")
    return text


def layer(text: str) -> str:
    """A layer Grad-CAM can explain (``gradcam.LAYERS``, read when the option is parsed: --help needs no torch)."""
    from tgsemi.analysis.gradcam import LAYERS

    return _one_of(text, LAYERS)


def stream(text: str) -> str:
    """A network of a run: one of ``models.STREAMS`` (read when the option is parsed)."""
    from tgsemi.models import STREAMS

    return _one_of(text, STREAMS)


def target(text: str) -> str | int:
    """A Grad-CAM target: "pred", "true" or a class index (argparse names the type in its error)."""
    return text if text in ("pred", "true") else NATURAL(text)


def cmd_gradcam(a: argparse.Namespace) -> None:
    from tgsemi.analysis.gradcam import gradcam_video

    writable_dir(a.out, "--out")
    paths = gradcam_video(a.runs, a.video, a.out, a.layer, a.target, a.modality)
    print("wrote " + ", ".join(str(p) for p in paths.values()))


def cmd_tsne(a: argparse.Namespace) -> None:
    from tgsemi.analysis.embedding import separability_markdown, tsne_figure

    writable_file(a.out, "--out")
    res = tsne_figure(a.runs, a.out, a.modality, a.clips, a.perplexity, batch_size=a.batch_size, progress=True)
    print(separability_markdown(res))
    print(f"wrote {res['figure']}, {res['json']}")


def cmd_report(a: argparse.Namespace) -> None:
    from tgsemi.analysis.report import make_report

    writable_dir(a.out, "--out")
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


def cmd_export(a: argparse.Namespace) -> None:
    from tgsemi.export import export_run

    done = export_run(a.run, writable_file(a.out, "--out"), a.format, a.modality)
    diff = "not checked" if done.max_abs_diff is None else f"max |logit difference| {done.max_abs_diff:.2g}"
    print(f"wrote {done.path} ({done.format}, {done.modality} network; checked against PyTorch: {diff})")
    print(f"  {done.note}")
    print(f"  class names and input statistics: {done.sidecar}")


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


def _add_lists(sub: argparse._SubParsersAction) -> None:
    lists = sub.add_parser("lists", help="annotation lists: convert between layouts").add_subparsers(
        dest="action", required=True
    )
    s = lists.add_parser(
        "convert",
        help="a labeled list (any readable layout) as an MMAction2 video or rawframe list",
        description="To rawframes, a video's frame folder is its path without the suffix, and its frame "
        "count the PREFIX*.jpg files in it under --frames-root; to videos, a folder gets --suffix.",
    )
    s.add_argument("source", help="the list to convert")
    s.add_argument("--to", choices=["video", "rawframes"], required=True)
    s.add_argument("--out", required=True, help="the list to write")
    s.add_argument("--frames-root", help="where the frame folders are (needed --to rawframes)")
    s.add_argument("--suffix", default=".mp4", help="video file suffix (--to video; default: .mp4)")
    s.add_argument("--prefix", default="img_", help="frame file prefix (--to rawframes; default: img_)")
    s.set_defaults(func=cmd_lists_convert)


def _add_synth(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("synth", help="write the synthetic motion-defined action dataset")
    s.add_argument("out")
    s.add_argument("--preset", choices=["tiny", "demo", "hard"], default="tiny")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--appearance-bias", type=float, help="train-only scene bias, 0..1")
    s.add_argument("--scene-cue", type=float, help="scene predicts the class in both splits, 0..1")
    s.add_argument("--background", choices=["texture", "footage", "procedural"], help="static or moving scene")
    s.add_argument("--distractors", type=int, help="objects moving regardless of the class (moving scenes)")
    s.add_argument("--train-per-class", type=int, help="train videos per class")
    s.add_argument("--test-per-class", type=int, help="test videos per class")
    s.set_defaults(func=cmd_synth)


def _add_train(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser(
        "train",
        help="train (or resume) a run: CONFIG is a preset name or a YAML path",
        epilog="SIGINT (Ctrl-C) or SIGTERM stops the run after the step in progress with a checkpoint the "
        "same command resumes from (a second signal stops it at once). Exit codes: 0 done, 2 error, "
        "130 stopped by SIGINT, 143 stopped by SIGTERM. One process at a time trains a run folder.",
    )
    s.add_argument("config")
    s.add_argument("--out", help="run folder; re-running on it resumes (required unless --print-config)")
    s.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    s.add_argument("overrides", nargs="*", help="dotted.key=value")
    s.set_defaults(func=cmd_train)


def _add_check_data(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser(
        "check-data",
        help="open every list and video a config names; report counts, unreadable files and list conflicts",
        description="Checks what training would read, before it does: labels in the class range, labeled "
        "clips inside the train list, no clip in both train and test, duplicates and conflicting labels, "
        "and every file opened and decoded (first, middle and last frame). Exit code 2 on any error.",
    )
    s.add_argument("config")
    s.add_argument("overrides", nargs="*", help="dotted.key=value")
    s.add_argument("--json", help="also write the full report here (every clip of every finding)")
    s.add_argument("--workers", type=int, help="files opened at once (default: the usable CPUs)")
    s.set_defaults(func=cmd_check_data)


def _add_eval(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("eval", help="evaluate a run folder or checkpoint")
    s.add_argument("run")
    s.add_argument("--split", choices=["test", "train", "labeled"], default="test")
    s.add_argument("--clips", type=int, default=10)
    s.add_argument("--crops", type=int, choices=[1, 3], default=3)
    s.add_argument("--modality", type=stream)
    s.add_argument("--batch-size", type=int, default=4)
    s.add_argument("--num-workers", type=int, default=0)
    s.add_argument("--device", default="auto", help="auto (a GPU when there is one), cpu or cuda")
    s.add_argument("--data-root", help="where the run's data is now (default: where it trained)")
    s.add_argument("--test-list", help="another test list (default: the run's)")
    s.add_argument("--json", help="where to write the result (default: RUN/eval_*.json)")
    s.set_defaults(func=cmd_eval)


def _add_predict(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser(
        "predict",
        help="class names and probabilities of videos, by a trained run",
        description="VIDEO is a video file, a rawframe folder, or a folder of video files. A file that "
        "cannot be decoded is reported in its row; the others are still predicted.",
    )
    s.add_argument("run", metavar="RUN_OR_CKPT", help="run folder or checkpoint (last.pt, best.pt, step_*.pt)")
    s.add_argument("videos", nargs="+", metavar="VIDEO")
    s.add_argument("--clips", type=int, help="clips per video (default: the run's eval.clips)")
    s.add_argument("--crops", type=int, choices=[1, 3], help="crops per clip (default: the run's eval.crops)")
    s.add_argument("--topk", type=int, default=5)
    s.add_argument("--modality", type=stream, help="network (default: the run's inference stream)")
    s.add_argument("--batch-size", type=int, help="videos per batch (default: the run's eval.batch_size)")
    s.add_argument("--num-workers", type=int, default=0)
    s.add_argument("--device", default="auto", help="auto (a GPU when there is one), cpu or cuda")
    s.add_argument("--json", help="also write the predictions here")
    s.set_defaults(func=cmd_predict)


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
    s.add_argument("--modality", type=stream, help="network to test (default: each run's RGB net)")
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
    s.add_argument("--layer", default="layer3", type=layer)
    s.add_argument("--target", default="pred", type=target, help="pred, true (test:K only) or a class index")
    s.add_argument("--modality", nargs="+", type=stream, help="networks to show (default: all)")
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_gradcam)


def _add_tsne(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("tsne", help="t-SNE of test-set features with separability numbers (Figure 5)")
    s.add_argument("runs", nargs="+")
    s.add_argument("--modality", type=stream)
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
    s.add_argument("--layer", default="layer3", type=layer)
    s.add_argument("--batch-size", type=int, default=8)
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_report)


def _add_export(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser(
        "export",
        help="one network of a run as a torchvision-r3d_18 state dict, TorchScript, torch.export or ONNX file",
        description="Writes FILE and FILE.json (class names, input shape and normalisation). Every file is "
        "loaded back and its logits compared with PyTorch's before it is reported (tgsemi/export.py).",
    )
    s.add_argument("run", metavar="RUN_OR_CKPT", help="run folder or checkpoint")
    s.add_argument("--out", required=True, metavar="FILE")
    s.add_argument("--format", choices=["state_dict", "torchscript", "pt2", "onnx"], default="state_dict")
    s.add_argument("--modality", type=stream, help="network (default: the run's inference stream)")
    s.set_defaults(func=cmd_export)


def _show_defaults(parser: argparse.ArgumentParser) -> None:
    """Every option's default in ``--help``, unless its help names it already or there is none."""
    for action in parser._actions:
        if action.default is None or action.default is False or action.default == argparse.SUPPRESS:
            continue
        if action.option_strings:
            if "default" not in (action.help or ""):
                action.help = f"{action.help} (default: %(default)s)" if action.help else "default: %(default)s"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tgsemi", description=__doc__)
    p.add_argument("-v", "--verbose", action="store_true")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    for add in (
        _add_split,
        _add_lists,
        _add_synth,
        _add_train,
        _add_check_data,
        _add_eval,
        _add_predict,
        _add_demo,
        _add_robustness,
        _add_gradcam,
        _add_tsne,
        _add_report,
        _add_export,
    ):
        add(sub)
    for s in _parsers(p):
        _show_defaults(s)
        _check_types(s)
    return p


def _parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """Every subcommand's parser, nested ones (``lists convert``) included."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return [q for a in subs for s in a.choices.values() for q in (s, *_parsers(s))]


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)  # overrides may follow --out
    if extra and args.command not in ("train", "check-data"):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if extra:
        args.overrides += extra
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("tgsemi").setLevel(logging.INFO)  # tgsemi's progress lines always; -v adds other libraries'
    try:
        args.func(args)
    except RunInterrupted as exc:
        print(f"tgsemi {args.command}: {exc}", file=sys.stderr)
        return exc.exit_code
    except TgsemiError as exc:
        print(f"tgsemi {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # outside training, or a second Ctrl-C: files are written atomically
        print(f"tgsemi {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
