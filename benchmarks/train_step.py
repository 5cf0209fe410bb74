"""Time per optimizer step of each method, next to the compute floor.

The floor is forward + backward of the same backbones over the same clips with a
trivial loss: what any implementation must pay. The ratio step / floor measures
what the method's losses, the optimizer and the engine add (goal: <= 1.15).
Inputs are random tensors, so data loading is not included (see data_pipeline.py).

    python benchmarks/train_step.py                      # CPU preset + paper shape on CPU
    python benchmarks/train_step.py --device cuda --compile   # GPU: clips/s and TFLOP/s, bf16
"""
from __future__ import annotations

import argparse
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from tgsemi.config import load_config
from tgsemi.engine import train_step
from tgsemi.methods import Batch, get_method
from tgsemi.models import create_model

SHAPES = {  # name: overrides of the synthetic_cpu preset (the CPU preset as it is, and the paper's shape)
    "cpu_preset": [],
    "paper": ["model.width=64", "data.clip_len=8", "data.crop=112", "train.batch_size=5"],
}


def timed(fn, warmup: int, iters: int, device: torch.device) -> float:
    for _ in range(warmup):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / iters


def bench(method_name: str, shape: str, device: torch.device, iters: int, compile_: bool) -> dict:
    cfg = load_config("synthetic_cpu", SHAPES[shape] + [f"method={method_name}", "train.clip_grad_norm=40"])
    method = get_method(method_name)
    streams = cfg.streams()
    n_l = cfg.train.batch_size
    n_u = n_l * cfg.train.mu if method.uses_unlabeled else 0
    n = n_l + 2 * n_u
    net = create_model(cfg.model, 101, streams, method.needs_projection).to(device)
    net = net.to(memory_format=torch.channels_last_3d)
    model = torch.compile(net) if compile_ else net
    shape_in = (n, 3, cfg.data.clip_len, cfg.data.crop, cfg.data.crop)
    inputs = {s: torch.randn(shape_in, device=device).contiguous(memory_format=torch.channels_last_3d)
              for s in streams}
    batch = Batch(y=torch.randint(0, 101, (n_l,), device=device), n_l=n_l, n_u=n_u, y_u=None, unlabeled_on=True)
    opt = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9, weight_decay=1e-4, fused=device.type == "cuda")
    amp = device.type == "cuda"

    def step():
        train_step(model, method, inputs, batch, opt, cfg, amp, device)

    def floor():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            out = model(inputs)
        sum(o.logits.float().sum() for o in out.values()).backward()

    warm = 3 if compile_ else 1
    t_floor, t_step = timed(floor, warm, iters, device), timed(step, warm, iters, device)
    with FlopCounterMode(display=False) as counter:  # forward + backward, as torch counts them
        floor()
    flops = counter.get_total_flops()
    clips = n * len(streams)
    return {"method": method_name, "shape": shape, "clips": clips, "step_s": t_step, "floor_s": t_floor,
            "ratio": t_step / t_floor, "clips_per_s": clips / t_step, "gflops": flops / t_step / 1e9}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="cpu")
    p.add_argument("--shapes", nargs="+", default=list(SHAPES))
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--compile", action="store_true")
    a = p.parse_args()
    device = torch.device(a.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    print("| shape | method | clips/step | step (s) | floor (s) | step/floor | clips/s | GFLOP/s |")
    print("|---|---|---|---|---|---|---|---|")
    for shape in a.shapes:
        for m in ("supervised", "fixmatch", "tg_fixmatch"):
            r = bench(m, shape, device, a.iters, a.compile)
            print(f"| {shape} | {m} | {r['clips']} | {r['step_s']:.3f} | {r['floor_s']:.3f} | {r['ratio']:.2f} "
                  f"| {r['clips_per_s']:.1f} | {r['gflops']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
