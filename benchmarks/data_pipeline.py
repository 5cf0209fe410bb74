"""Data-pipeline throughput on one CPU core: decoding alone against the full training pipeline.

The full pipeline is ``UnlabeledDataset.__getitem__``, one item of the unlabeled
stream exactly as training builds it: decode the frame pairs {i_k, i_k + 1} of a
random clip, weak augmentation of the frames (crop, resize, flip), the TG, strong
augmentation of RGB and TG, normalisation. The floor decodes the same frames and
nothing else. Measured on the synthetic ``demo`` set at the ``synthetic_cpu``
preset's clip shape, and on UCF-101-sized video (320x240, 250 frames, 25 fps)
at the ``ucf101`` preset's: XviD with a keyframe every 12 frames or a single
one, and the same frames as a JPEG rawframe folder. ``--strong-on batch`` measures
the item that leaves strong augmentation and normalisation to the training device
(``data.strong_on: batch``): decode, weak augmentation, TG.

Decoding a clip and building its item alternate clip by clip, so that both see the same
load on a shared machine; the ratio is taken per round and the median and range over the
rounds are reported. ``--blocks`` times each in blocks of ``--clips`` clips instead, as a
DataLoader worker builds items back to back.

    .venv/bin/python benchmarks/data_pipeline.py [--demo DIR] [--clips N] [--rounds R] [--strong-on batch] [--blocks]
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torchvision.io import write_jpeg

from tgsemi.config import load_config
from tgsemi.data import datasets, synth, transforms, video
from tgsemi.data.annotations import Sample
from tgsemi.data.datasets import UnlabeledDataset, strong_options
from tgsemi.data.sampling import train_clip_indices

RAWFRAMES = "rawframes"  # a folder of JPEGs: no video backend involved
Keys = list[tuple[int, int]]


def build(
    root: Path, samples: list[Sample], preset: str, backend: str | None, strong_on: str = "item"
) -> UnlabeledDataset:
    d = load_config(preset).data
    return UnlabeledDataset(
        root,
        samples,
        d.clip_len,
        d.frame_interval,
        backend=backend,
        resize=d.resize,
        crop=d.crop,
        crop_area=d.crop_area,
        **{**strong_options(d), "strong_on": strong_on},
    )


def decode_only(ds: UnlabeledDataset, totals: list[int]) -> Callable[[tuple[int, int]], None]:
    """Read the frames ``ds[key]`` reads and nothing else; ``totals`` are the
    frame counts, taken beforehand."""

    def run(key: tuple[int, int]) -> None:
        i, seed = key
        idx = train_clip_indices(totals[i], ds.clip_len, ds.frame_interval, 1, np.random.default_rng(seed))
        video.read_frames(ds.paths[i], np.union1d(idx, idx + 1), ds.backend)

    return run


def full_pipeline(ds: UnlabeledDataset, keys: Keys) -> None:
    for key in keys:
        ds[key]


def interleaved(runs: Sequence[Callable[[tuple[int, int]], None]], keys: Keys) -> np.ndarray:
    """Clips per CPU-second of each run, the runs alternating clip by clip. CPU time of this
    process: time other jobs hold the core does not count."""
    spent = np.zeros(len(runs))
    for key in keys:
        for j, run in enumerate(runs):
            start = time.process_time()
            run(key)
            spent[j] += time.process_time() - start
    return len(keys) / spent


def draw_keys(ds: UnlabeledDataset, n: int, seed: int) -> Keys:
    rng = np.random.default_rng(seed)
    return [(int(rng.integers(len(ds))), int(rng.integers(2**62))) for _ in range(n)]


STAGES = {  # where an item's time goes; "TG" is load_rgb_tg less its decoding (with the frame count) and weak aug
    "decode": (video.read_frames,),
    "weak aug: crop, resize, flip": (transforms.WeakAug.__call__,),
    "TG (with gathering the pairs)": (datasets.load_rgb_tg,),
    "strong aug (x2)": (transforms.StrongAug.__call__, transforms.ReferenceStrongAug.__call__),
    "normalize": (transforms.normalize,),
}


def stage_shares(ds: UnlabeledDataset, keys: Keys) -> dict[str, float]:
    """Share of ``full_pipeline``'s CPU time per stage, from cProfile's cumulative times."""
    prof = cProfile.Profile(time.process_time)
    start = time.process_time()
    prof.runcall(full_pipeline, ds, keys)
    total = time.process_time() - start
    stats = pstats.Stats(prof).stats
    codes = {
        name: {(f.__code__.co_filename, f.__code__.co_firstlineno, f.__code__.co_name) for f in fs}
        for name, fs in STAGES.items()
    }
    cum = {name: sum(s[3] for k, s in stats.items() if k in codes[name]) for name in STAGES}
    cum["TG (with gathering the pairs)"] -= cum["decode"] + cum["weak aug: crop, resize, flip"]
    cum["other (seeding, sampling, copies)"] = total - sum(cum.values())
    return {name: t / total for name, t in cum.items()}


def ucf_like(folder: Path) -> dict[str, Path]:
    """A 320x240, 250-frame clip as XviD at UCF-101's average bit rate (GOP 12
    and GOP 250) and as MMAction2 rawframes (JPEG quality 95, as denseflow writes)."""
    rng = np.random.default_rng
    frames = synth.static_clip("Circle", rng(0), rng(1), None, 250, (320, 240), 2.0, 6, 3.0).video
    out = {}
    for gop in (12, 250):
        out[f"GOP {gop}"] = folder / f"ucf_like_gop{gop}.avi"
        synth.write_video(out[f"GOP {gop}"], frames, gop=gop, bits_per_pixel=0.3)
    out[RAWFRAMES] = folder / "ucf_like_rawframes"
    out[RAWFRAMES].mkdir()
    for i, frame in enumerate(torch.from_numpy(frames).permute(0, 3, 1, 2)):
        write_jpeg(frame, str(out[RAWFRAMES] / f"img_{i + 1:05d}.jpg"), quality=95)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo", type=Path, help="an existing demo set (default: build one in a temp dir)")
    parser.add_argument("--clips", type=int, default=100, help="clips per round")
    parser.add_argument(
        "--rounds",
        type=int,
        default=5,
        help="rounds of --clips clips, decode and full item alternating clip by clip; median and range reported",
    )
    parser.add_argument(
        "--strong-on",
        choices=("item", "batch"),
        default="item",
        help="batch: the item without strong augmentation and normalisation (data.strong_on)",
    )
    parser.add_argument("--backends", nargs="+", help="only these video backends (default: every one installed)")
    parser.add_argument("--blocks", action="store_true", help="decode and items in blocks of --clips clips")
    args = parser.parse_args()
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # per core: one CPU, one thread
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        demo = args.demo or synth.make_dataset(tmp / "demo", "demo")
        ucf = ucf_like(tmp)
        demo_samples = [Sample(str(p.relative_to(demo)), -1) for p in sorted(demo.rglob("*.avi"))]
        cases = [
            (
                "synthetic demo (112x84, 40-200 frames, GOP 12)",
                demo,
                demo_samples,
                "synthetic_cpu",
                video.available_backends(),
            )
        ]
        for name in ("GOP 12", "GOP 250"):
            cases.append(
                (
                    f"UCF-like 320x240 XviD, {name}",
                    tmp,
                    [Sample(ucf[name].name, -1)],
                    "ucf101",
                    video.available_backends(),
                )
            )
        cases.append(
            ("UCF-like 320x240 JPEG rawframes", tmp, [Sample(ucf[RAWFRAMES].name, -1, 250)], "ucf101", [RAWFRAMES])
        )
        print(
            f"clips per CPU-second, one core, one thread: median of {args.rounds} rounds of {args.clips} clips "
            f"{'in blocks' if args.blocks else 'alternating'} [range of the per-round ratio]\n"
        )
        print("| videos | preset | backend | decode only | full pipeline | full / decode |\n|---|---|---|---|---|---|")
        for name, root, samples, preset, backends in cases:
            for backend in [b for b in backends if b == RAWFRAMES or not args.backends or b in args.backends]:
                ds = build(root, samples, preset, None if backend == RAWFRAMES else backend, args.strong_on)
                totals = [s.total_frames or video.num_frames(p, ds.backend) for s, p in zip(ds.samples, ds.paths)]
                runs = (decode_only(ds, totals), ds.__getitem__)
                keys = [draw_keys(ds, args.clips, seed) for seed in range(args.rounds)]
                if args.blocks:
                    rounds = np.array([[interleaved([run], k)[0] for run in runs] for k in keys])
                else:
                    rounds = np.array([interleaved(runs, k) for k in keys])
                floor, full = np.median(rounds, axis=0)
                ratio = rounds[:, 1] / rounds[:, 0]
                print(
                    f"| {name} | {preset} | {backend} | {floor:.0f} | {full:.0f} | "
                    f"{np.median(ratio):.2f} [{ratio.min():.2f}, {ratio.max():.2f}] |",
                    flush=True,
                )
        print(f"\nWhere the full pipeline's time goes ({video.default_backend()}, cProfile, {args.clips} clips):\n")
        print("| stage | " + " | ".join(name for name, *_ in cases[:2]) + " |\n|---|---|---|")
        shares = []
        for _, root, samples, preset, _ in cases[:2]:
            ds = build(root, samples, preset, None, args.strong_on)
            shares.append(stage_shares(ds, draw_keys(ds, args.clips, 0)))
        for stage in shares[0]:
            print(f"| {stage} | " + " | ".join(f"{s[stage]:.0%}" for s in shares) + " |")


if __name__ == "__main__":
    main()
