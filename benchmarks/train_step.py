"""Time per optimizer step of each method, next to the compute floor.

The floor is forward + backward of the same backbones over the same clips with a
trivial loss: what any implementation must pay. The ratio step / floor measures
what the method's losses, the optimizer and the engine add (goal: <= 1.15).
Inputs are random tensors, so data loading is not included (see data_pipeline.py).
First it prints the forward FLOPs of one 8-frame clip through one width-64 network: the authors'
``mmaction`` layout at 224 x 224 and supplement Table 4's ``table4`` layout at 112 x 112.

    python benchmarks/train_step.py                      # CPU preset + paper shape on CPU
    python benchmarks/train_step.py --device cuda --compile   # GPU: clips/s and TFLOP/s, bf16
    python benchmarks/train_step.py --device cuda --shapes reference reference_1gpu --fp32 --contiguous
    python benchmarks/train_step.py --flops-only         # the FLOPs table alone
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from tgsemi.config import ModelConfig, load_config
from tgsemi.engine import train_step
from tgsemi.methods import Batch, get_method
from tgsemi.models import create_model

SHAPES = {  # name: overrides of the synthetic_cpu preset (the CPU preset as it is, and the paper's shape)
    "cpu_preset": [],
    "paper": ["model.width=64", "data.clip_len=8", "data.crop=112", "train.batch_size=5"],
}
# ucf101_20pct's own networks and clips (224 crops, mmaction layout): 5 + 5 + 5 clips per GPU, and the
# 40 + 40 + 40 of one GPU standing in for 8 (GPU only: minutes per step on a 2-core CPU)
REFERENCE_SHAPES = {"reference": ["train.batch_size=5"], "reference_1gpu": ["train.batch_size=40"]}
FLOP_SHAPES = [("mmaction", 224), ("table4", 112)]  # (model.layout, crop) of an 8-frame clip at width 64


def forward_gflops(layout: str, crop: int, clip_len: int = 8) -> float:
    """GFLOPs of one clip's forward through one width-64 network (with its classifier). FlopCounterMode
    counts convolutions and matrix products, a multiply-add as 2 FLOPs; BN, ReLU and pools are not counted."""
    net = create_model(ModelConfig(width=64, layout=layout), 101, ("rgb",), projection=False).eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        net({"rgb": torch.randn(1, 3, clip_len, crop, crop)})
    return counter.get_total_flops() / 1e9


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


def bench(
    method_name: str,
    shape: str,
    device: torch.device,
    iters: int,
    compile_: bool,
    amp: bool = True,
    channels_last: bool = True,
) -> dict:
    overrides = [f"method={method_name}", "train.clip_grad_norm=40"]
    if shape in REFERENCE_SHAPES:
        cfg = load_config("ucf101_20pct", REFERENCE_SHAPES[shape] + overrides)
    else:
        cfg = load_config("synthetic_cpu", SHAPES[shape] + overrides)
    method = get_method(method_name)
    streams = cfg.streams()
    n_l = cfg.train.batch_size
    n_u = n_l * cfg.train.mu if method.uses_unlabeled else 0
    n = n_l + 2 * n_u
    net = create_model(cfg.model, 101, streams, method.needs_projection).to(device)
    layout = torch.channels_last_3d if channels_last else torch.contiguous_format
    net = net.to(memory_format=layout)
    model = torch.compile(net) if compile_ else net
    shape_in = (n, 3, cfg.data.clip_len, cfg.data.crop, cfg.data.crop)
    inputs = {s: torch.randn(shape_in, device=device).contiguous(memory_format=layout) for s in streams}
    batch = Batch(y=torch.randint(0, 101, (n_l,), device=device), n_l=n_l, n_u=n_u, unlabeled_on=True)
    opt = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9, weight_decay=1e-4, fused=device.type == "cuda")
    amp = amp and device.type == "cuda"

    def step():
        train_step(model, method, inputs, batch, opt, cfg, amp, device)

    def floor():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            out = model(inputs)
        sum(o.logits.float().sum() for o in out.values()).backward()

    warm = 3 if compile_ else 1
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t_floor, t_step = timed(floor, warm, iters, device), timed(step, warm, iters, device)
    peak_gib = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    with FlopCounterMode(display=False) as counter:  # forward + backward, as torch counts them
        floor()
    flops = counter.get_total_flops()
    clips = n * len(streams)
    return {
        "method": method_name,
        "shape": shape,
        "clips": clips,
        "step_s": t_step,
        "floor_s": t_floor,
        "ratio": t_step / t_floor,
        "clips_per_s": clips / t_step,
        "gflops": flops / t_step / 1e9,
        "peak_gib": peak_gib,
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="cpu")
    p.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=[*SHAPES, *REFERENCE_SHAPES])
    p.add_argument("--fp32", action="store_true", help="no bf16 autocast on GPU")
    p.add_argument("--contiguous", action="store_true", help="no channels_last_3d")
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--compile", action="store_true")
    p.add_argument("--flops-only", action="store_true", help="print the forward FLOPs per clip and stop")
    a = p.parse_args()
    print("| layout | clip | forward GFLOPs per clip (width 64, multiply-add = 2) |\n|---|---|---|")
    for layout, crop in FLOP_SHAPES:
        print(f"| {layout} | 8x{crop}x{crop} | {forward_gflops(layout, crop):.2f} |", flush=True)
    if a.flops_only:
        return
    print()
    device = torch.device(a.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    print(f"bf16 autocast: {device.type == 'cuda' and not a.fp32}, channels_last_3d: {not a.contiguous}")
    print("| shape | method | clips/step | step (s) | floor (s) | step/floor | clips/s | GFLOP/s | peak GiB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for shape in a.shapes:
        for m in ("supervised", "fixmatch", "tg_fixmatch"):
            r = bench(m, shape, device, a.iters, a.compile, amp=not a.fp32, channels_last=not a.contiguous)
            print(
                f"| {shape} | {m} | {r['clips']} | {r['step_s']:.3f} | {r['floor_s']:.3f} | {r['ratio']:.2f} "
                f"| {r['clips_per_s']:.1f} | {r['gflops']:.0f} | {r['peak_gib']:.1f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
