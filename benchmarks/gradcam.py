"""Grad-CAM latency for one full-width R3D-18 clip (width 64, 8x112x112, 101 classes) on the CPU.

The Grad-CAM viewer recomputes maps whenever a control changes, so one map
should take under 2 s to feel interactive. Timed per thread count and target
layer, against a plain no-grad forward pass of the same clip; the best of
``--repeats`` calls counts, shown with its CPU time.

    .venv/bin/python benchmarks/gradcam.py [--repeats N] [--threads 1 2]
"""

from __future__ import annotations

import argparse
import time

import torch

from tgsemi.analysis.gradcam import gradcam
from tgsemi.models.r3d import R3D18


def best_of(fn, repeats: int) -> str:
    """Best wall time and its process CPU time: on one thread of a busy machine
    the CPU time is what the call would take on an idle core."""
    fn()  # warm-up: allocator and oneDNN kernel selection
    runs = []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        runs.append((time.perf_counter() - wall, time.process_time() - cpu))
    wall, cpu = min(runs)
    return f"{wall:.2f} s ({cpu:.2f} s CPU)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    torch.manual_seed(0)
    net = R3D18(101, width=64).eval()
    clip = torch.randn(3, 8, 112, 112)
    print("| threads | forward (no grad) | Grad-CAM layer3 | Grad-CAM layer4 |\n|---|---|---|---|")
    for threads in args.threads:
        torch.set_num_threads(threads)
        with torch.no_grad():
            forward = best_of(lambda: net(clip[None]), args.repeats)
        cams = [best_of(lambda: gradcam(net, clip, layer), args.repeats) for layer in ("layer3", "layer4")]
        print(f"| {threads} | {forward} | {cams[0]} | {cams[1]} |", flush=True)


if __name__ == "__main__":
    main()
