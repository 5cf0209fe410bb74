"""End-to-end training speed with the data loading included, and the wall time it projects.

``train_step.py`` times the step on random tensors; this drives the engine's own
pieces (``Loaders``, ``train_step``) over real video files, so
decoding, augmentation and the host-to-device copy compete with the step as in
``engine.train``. The model is ``ucf101_20pct``'s tg_fixmatch (224² crops,
mmaction layout, the reference strong augmentation, bf16 on CUDA,
channels_last_3d) at a per-GPU batch and at the one-GPU global batch (5 + 5 and
40 + 40 clips by default). Per step it separates the wait for the next batch,
the host-to-device copy (``Loaders.step_inputs``: each pinned view is copied, then
joined on the device; with ``data.strong_on=batch`` the strong views are built there)
and ``train_step`` (all with ``torch.cuda.synchronize``; the engine
itself synchronises every step when it checks the loss is finite), then times
``train_step`` again on the last batch, already on the device: the rate if data
were free.

The videos are synthetic, UCF-101-sized (320x240 XviD, 100-250 frames, 25 fps)
and written by ``synth.make_dataset`` once under ``--data`` (reused while the
recipe matches). The train list cycles through them up to UCF-101 split 1's 9537
clips, so epochs, labeled passes (20 %) and loader restarts come as often as on
the real set; the few hundred files are all in the page cache, as the 6.5 GB of
UCF-101 are after one epoch on a machine with enough memory. They are written at synth's
0.7 bits per pixel (UCF-101: about 0.3), so decoding costs if anything more than on the real
set. Writing them takes about 3.6 CPU-ms a frame, some 190 CPU-s for the default 300 videos
(253 s on 2 busy cores; 15 shards at once on 16 cores), once; the measurement itself should
take a minute or two on a GPU (not yet measured on one).

    python benchmarks/train_gpu.py --device cuda --json runs/train_gpu.json
    python benchmarks/train_gpu.py --tiny --device cpu                          # the plumbing, seconds
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

import torch

from tgsemi import cpus
from tgsemi.config import Config, load_config
from tgsemi.data import synth
from tgsemi.data.annotations import read_list, write_list
from tgsemi.data.bad_inputs import BadInputs
from tgsemi.data.build import build_splits
from tgsemi.engine import Loaders, lr_at, train_step
from tgsemi.methods import get_method
from tgsemi.models import create_model
from tgsemi.runtime import intra_op_threads, pick_device, use_amp

PRESET = "ucf101_20pct"
UCF101_TRAIN = 9537  # clips in UCF-101 split 1's train list: the unlabeled pool
# --tiny: a few small videos and a width-8 network on 32² crops, for a CPU test of the plumbing
TINY_ARGS = dict(classes=2, per_class=4, size=(64, 48), frames=(24, 40), batches=(1, 8), steps=2, warmup=1)
TINY_OVERRIDES = [
    "model.width=8",
    "model.projection_dim=16",
    "data.resize=36",
    "data.crop=32",
    "eval.crop=null",
    "data.clip_len=4",
    "data.frame_interval=2",
]


def build_data(
    root: Path, classes: int, per_class: int, size: tuple[int, int], frames: tuple[int, int], pool: int
) -> dict:
    """Write the videos (or keep those already written) and the train list of ``pool`` entries.

    ``make_dataset`` renders one video after another, seconds each at 320x240, so the set is
    written as shards of one scene group per class (folders ``partNNN``), all CPUs at once.
    The lists are MMAction2 video lists (``path label``): a UCF-101 list names the class by
    its top folder, here the shard's."""
    names = list(synth.MOTIONS)[:classes]
    shards = [
        (
            root / f"part{k:03d}",
            k,
            dict(
                classes=names,
                train_per_class=min(synth.CLIPS_PER_GROUP, per_class - done),
                test_per_class=int(k == 0),
                size=size,
                min_frames=frames[0],
                max_frames=frames[1],
            ),
        )
        for k, done in enumerate(range(0, per_class, synth.CLIPS_PER_GROUP))
    ]
    todo = [
        (out, seed, knobs)
        for out, seed, knobs in shards
        if not (out / synth.RECIPE).exists()
        or json.loads((out / synth.RECIPE).read_text()) != synth.recipe("demo", seed, **knobs)
    ]
    processes = min(len(todo), cpus.usable_cpus()[0])
    start = time.perf_counter()
    if todo:
        with ProcessPoolExecutor(processes) as ex:
            for job in [ex.submit(synth.make_dataset, out, "demo", seed, **knobs) for out, seed, knobs in todo]:
                job.result()
    synth_s = time.perf_counter() - start if todo else None
    train = [
        replace(s, path=f"{out.name}/{s.path}")
        for out, _, _ in shards
        for s in read_list(out / "trainlist01.txt").samples
    ]
    first = shards[0][0]  # the one shard with test videos
    test = [replace(s, path=f"{first.name}/{s.path}") for s in read_list(first / "testlist01.txt").samples]
    lists = root / "lists"  # not beside a classInd.txt, which would make them read as UCF-101 lists
    lists.mkdir(exist_ok=True)
    write_list(lists / "train.txt", [train[i % len(train)] for i in range(pool)], "video")
    write_list(lists / "test.txt", test, "video")
    return {
        "root": str(root),
        "videos": len(train),
        "size": list(size),
        "frames": list(frames),
        "train_list_entries": pool,
        "synth_s": synth_s,
        "synth_processes": processes if todo else 0,
    }


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(cfg: Config, device: torch.device, steps: int, warmup: int) -> dict:
    """``warmup + steps`` steps fed by the loaders (the last ``steps`` timed), then ``steps``
    more on the last batch, already on the device. The model, optimiser, AMP and batch are set
    up as ``engine.setup`` and ``engine.one_step`` do; the unlabeled loss is on, as after its warm-up."""
    method, streams = get_method(cfg.method), cfg.streams()
    splits = build_splits(cfg.data, cfg.seed)
    budget = cpus.plan(cfg.train.cpus, cfg.data.num_workers, cfg.data.cache_frames)
    loaders = Loaders(cfg, splits, BadInputs(cfg.data.max_bad_fraction), streams, budget.workers, method.uses_unlabeled)
    if warmup + steps > loaders.steps_per_epoch:
        raise SystemExit(f"{warmup + steps} steps do not fit in one epoch of {loaders.steps_per_epoch}: raise --pool")
    torch.manual_seed(cfg.seed)
    net = create_model(cfg.model, len(splits.class_names), streams, method.needs_projection).to(device)
    if cfg.train.channels_last:
        net = net.to(memory_format=torch.channels_last_3d)
    # the schedule's first lr: a fresh network at the peak lr may diverge, and a non-finite step skips its backward
    optimizer = torch.optim.SGD(
        net.parameters(),
        lr=lr_at(0, cfg, loaders.steps_per_epoch, 1),
        momentum=cfg.train.momentum,
        weight_decay=cfg.train.weight_decay,
        fused=device.type == "cuda",
    )
    amp = use_amp(cfg.train.amp, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times: dict[str, list[float]] = {"data_wait_s": [], "to_device_s": [], "compute_s": []}
    nonfinite = 0
    labeled, unlabeled = loaders.labeled_batches(0, 0), loaders.unlabeled_batches(0, 0)
    with intra_op_threads(budget.threads):  # the training process's threads, as engine.train sets them
        for i in range(warmup + steps):
            t0 = time.perf_counter()
            (_, lab), unl = next(labeled), next(unlabeled)
            t1 = time.perf_counter()
            inputs, batch, _ = loaders.step_inputs(lab, unl, device, i, unlabeled_on=True)
            _sync(device)
            t2 = time.perf_counter()
            nonfinite += bool(train_step(net, method, inputs, batch, optimizer, cfg, amp, device)[-1])
            _sync(device)
            t3 = time.perf_counter()
            if i >= warmup:
                for key, dt in zip(times, (t1 - t0, t2 - t1, t3 - t2)):
                    times[key].append(dt)
        labeled.close()  # ends the workers: the step-only rate runs without them
        unlabeled.close()
        t0 = time.perf_counter()
        for _ in range(steps):
            nonfinite += bool(train_step(net, method, inputs, batch, optimizer, cfg, amp, device)[-1])
        _sync(device)
        step_only = (time.perf_counter() - t0) / steps
    mean = {key: sum(v) / steps for key, v in times.items()}
    step = sum(mean.values())
    clips = batch.n_l + batch.n_u
    return {
        "batch": cfg.train.batch_size,
        "clips_per_step": clips,
        "workers": budget.workers,
        "threads": budget.threads,
        **mean,
        "step_s": step,
        "clips_per_s": clips / step,
        "gpu_busy": mean["compute_s"] / step,
        "step_only_s": step_only,
        "step_only_clips_per_s": clips / step_only,
        "peak_gib": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None,
        "nonfinite_steps": nonfinite,
        "per_step": times,
    }


def project(per_gpu: dict, one_gpu: dict, gpus: int, epochs: float, pool: int, mu: int) -> dict:
    """Wall time of ``epochs`` epochs at one global batch: on 1 GPU at ``one_gpu``'s rate and on
    ``gpus`` GPUs each at ``per_gpu``'s (its own workers, no communication cost). An epoch is
    ``pool`` unlabeled clips, as ``Loaders.steps_per_epoch`` counts it."""
    steps_per_epoch = pool // (one_gpu["batch"] * max(mu, 1))
    steps = int(epochs * steps_per_epoch)
    setups = {"one_gpu": (1, one_gpu), "multi_gpu": (gpus, per_gpu)}
    return {
        "epochs": epochs,
        "unlabeled_clips": pool,
        "steps_per_epoch": steps_per_epoch,
        "steps": steps,
        **{
            name: {
                "gpus": n,
                "batch_per_gpu": r["batch"],
                "workers_per_loader": r["workers"],
                "wall_s": steps * r["step_s"],
                "compute_only_wall_s": steps * r["step_only_s"],
            }
            for name, (n, r) in setups.items()
        },
        "assumes": f"{gpus} GPUs: no communication cost (gradient all-reduce, SyncBN, all-gathers) and "
        f"{per_gpu['workers']} workers for each of a GPU's two loaders; "
        "no validation, PreciseBN or checkpoints",
    }


def report(result: dict) -> str:
    """The two markdown tables."""
    lines = [
        "| clips/step (labeled + unlabeled) | workers per loader | data wait (ms) | to device (ms) "
        "| train_step (ms) | step (ms) | clips/s | GPU busy | step only (ms) | step-only clips/s | peak GiB |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["runs"]:
        peak = "-" if r["peak_gib"] is None else f"{r['peak_gib']:.1f}"
        lines.append(
            f"| {r['batch']} + {r['clips_per_step'] - r['batch']} | {r['workers']} "
            f"| {r['data_wait_s'] * 1e3:.0f} | {r['to_device_s'] * 1e3:.0f} | {r['compute_s'] * 1e3:.0f} "
            f"| {r['step_s'] * 1e3:.0f} | {r['clips_per_s']:.1f} | {r['gpu_busy']:.0%} "
            f"| {r['step_only_s'] * 1e3:.0f} | {r['step_only_clips_per_s']:.1f} | {peak} |"
        )
    if skipped := sum(r["nonfinite_steps"] for r in result["runs"]):
        lines += ["", f"**{skipped} step(s) had a non-finite loss and skipped their backward: times too low.**"]
    p = result["projection"]
    lines += [
        "",
        f"Projected wall time of {p['epochs']:g} epochs of UCF-101 split 1 ({p['unlabeled_clips']} unlabeled "
        f"clips, {p['steps_per_epoch']} steps an epoch, {p['steps']} steps):",
        "",
        "| GPUs | clips per GPU | end to end (h) | if data were free (h) |",
        "|---|---|---|---|",
    ]
    for s in (p["one_gpu"], p["multi_gpu"]):
        lines.append(
            f"| {s['gpus']} | {s['batch_per_gpu']} + {s['batch_per_gpu']} | {s['wall_s'] / 3600:.2f} "
            f"| {s['compute_only_wall_s'] / 3600:.2f} |"
        )
    lines += ["", f"Assumes {p['assumes']}."]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--data",
        type=Path,
        help="video folder, reused if it holds this set (default: data/train_gpu, data/train_gpu_tiny with --tiny)",
    )
    p.add_argument("--classes", type=int, default=5, choices=range(1, len(synth.MOTIONS) + 1), metavar="N")
    p.add_argument("--per-class", type=int, default=60, help="train videos per class")
    p.add_argument("--size", type=int, nargs=2, default=(320, 240), metavar=("W", "H"))
    p.add_argument(
        "--frames",
        type=int,
        nargs=2,
        default=(100, 250),
        metavar=("MIN", "MAX"),
        help="video length (UCF-101: 29-1776, mean 186)",
    )
    p.add_argument("--pool", type=int, default=UCF101_TRAIN, help="train list entries (cycling through the videos)")
    p.add_argument(
        "--batches",
        type=int,
        nargs=2,
        default=(5, 40),
        metavar=("PER_GPU", "GLOBAL"),
        help="labeled clips per step (as many unlabeled): per GPU of a multi-GPU run, and on one GPU",
    )
    p.add_argument("--steps", type=int, default=30, help="timed steps per batch size")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps first (worker start, cuDNN)")
    p.add_argument("--workers", type=int, help="loader workers per loader (default: the preset's auto, cpus.plan)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--json", type=Path, help="also write the results here")
    p.add_argument("--tiny", action="store_true", help="small videos, network and crops, 2 steps: a CPU test")
    p.add_argument("overrides", nargs="*", help=f"more dotted.key=value overrides of {PRESET}")
    if p.parse_known_args(argv)[0].tiny:
        p.set_defaults(**TINY_ARGS)
    args = p.parse_args(argv)
    if args.batches[1] % args.batches[0] or args.steps < 1:
        p.error("--batches GLOBAL must be a multiple of PER_GPU, and --steps at least 1")
    args.data = args.data or Path("data/train_gpu_tiny" if args.tiny else "data/train_gpu")
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    device = pick_device(args.device)
    data = build_data(args.data, args.classes, args.per_class, tuple(args.size), tuple(args.frames), args.pool)
    built = (
        "reused"
        if data["synth_s"] is None
        else f"written in {data['synth_s']:.0f} s by {data['synth_processes']} process(es)"
    )
    print(
        f"{data['videos']} videos ({args.size[0]}x{args.size[1]}, {args.frames[0]}-{args.frames[1]} frames) "
        f"in {args.data}: {built}",
        flush=True,
    )
    base = [
        f"data.root={args.data}",
        f"data.train_list={args.data / 'lists/train.txt'}",
        f"data.test_list={args.data / 'lists/test.txt'}",
        "data.labeled_list=null",
        "data.labeled_fraction=0.2",
        f"train.device={args.device}",
    ]
    if args.tiny:
        base += TINY_OVERRIDES
    if args.workers is not None:
        base.append(f"data.num_workers={args.workers}")
    base += args.overrides
    runs = []
    for b in args.batches:
        cfg = load_config(PRESET, base + [f"train.batch_size={b}"])
        runs.append(measure(cfg, device, args.steps, args.warmup))
        if device.type == "cuda":
            torch.cuda.empty_cache()  # the next batch size starts from a clean allocator
    result = {
        "preset": PRESET,
        "method": cfg.method,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "cpus": cpus.usable_cpus(cfg.train.cpus)[0],
        "steps": args.steps,
        "warmup": args.warmup,
        "clip": [cfg.data.clip_len, cfg.data.crop, cfg.data.crop],
        "data": data,
        "runs": runs,
        "projection": project(
            runs[0], runs[1], args.batches[1] // args.batches[0], cfg.train.epochs, args.pool, cfg.train.mu
        ),
    }
    print(
        f"{PRESET} {cfg.method} on {result['device_name']}, {result['cpus']} CPUs, clips "
        f"{cfg.data.clip_len}x{cfg.data.crop}x{cfg.data.crop}, {args.steps} timed steps after {args.warmup}\n"
    )
    print(report(result), flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
