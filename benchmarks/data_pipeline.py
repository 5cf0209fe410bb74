"""Data-pipeline throughput on one CPU core, per video backend.

A training clip is 8 frames at interval 8 plus, for the temporal gradient, the
frame after each: 16 frames {i_k, i_k + 1} from a random start. Measured on the
synthetic ``demo`` set and on UCF-101-sized files (320x240 XviD, 250 frames,
25 fps) with a keyframe every 12 frames and with a single keyframe.

    .venv/bin/python benchmarks/data_pipeline.py [--demo DIR] [--clips N] [--rounds R]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from tgsemi.data import synth
from tgsemi.data.video import available_backends, num_frames, read_frames

NUM_PAIRS, INTERVAL = 8, 8


def clip_indices(total: int, rng: np.random.Generator) -> np.ndarray:
    """Frames {i_k, i_k + 1} of one random 8x8 clip (clamped in short videos)."""
    span = (NUM_PAIRS - 1) * INTERVAL + 2
    starts = rng.integers(0, max(1, total - span + 1)) + INTERVAL * np.arange(NUM_PAIRS)
    return np.minimum(np.stack([starts, starts + 1], 1).ravel(), total - 1)


def time_decode(paths: list[Path], backend: str, n: int, seed: int = 0) -> float:
    """Clips per second when decoding ``n`` random clips drawn from ``paths``."""
    rng = np.random.default_rng(seed)
    totals = {p: num_frames(p, backend) for p in paths}  # the annotation list has these
    picks = [paths[i] for i in rng.integers(0, len(paths), n)]
    start = time.perf_counter()
    for path in picks:
        read_frames(path, clip_indices(totals[path], rng), backend)
    return n / (time.perf_counter() - start)


def ucf_like(folder: Path, gop: int) -> Path:
    """A 320x240, 250-frame XviD file at UCF-101's average bit rate."""
    path = folder / f"ucf_like_gop{gop}.avi"
    rng = np.random.default_rng
    frames = synth.render_clip("Circle", rng(0), rng(1), None, 250, (320, 240), 2.0, 6, 3.0)
    synth.write_video(path, frames, gop=gop, bits_per_pixel=0.3)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo", type=Path,
                        help="an existing demo set (default: build one in a temp dir)")
    parser.add_argument("--clips", type=int, default=100, help="clips per round")
    parser.add_argument("--rounds", type=int, default=5,
                        help="backends alternate; the best round counts (robust to a busy machine)")
    args = parser.parse_args()
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # per core: one CPU, one thread
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        demo = args.demo or synth.make_dataset(tmp / "demo", "demo")
        gop12, gop250 = ucf_like(tmp, 12), ucf_like(tmp, 250)
        sets = {"synthetic demo (112x84, 40-200 frames, GOP 12)": sorted(demo.rglob("*.avi")),
                "UCF-like 320x240, 250 frames, GOP 12": [gop12],
                "UCF-like 320x240, 250 frames, GOP 250": [gop250]}
        backends = available_backends()
        print(f"Decode only, {NUM_PAIRS} pairs at interval {INTERVAL}: clips/s on one core, "
              f"best of {args.rounds} rounds of {args.clips}\n")
        print("| videos | " + " | ".join(backends) + " |\n|---|" + "---|" * len(backends))
        for name, paths in sets.items():
            rounds = [[time_decode(paths, b, args.clips, seed) for b in backends]
                      for seed in range(args.rounds)]
            rates = np.max(rounds, axis=0)
            print(f"| {name} | " + " | ".join(f"{r:.0f}" for r in rates) + " |")


if __name__ == "__main__":
    main()
