"""Export one trained network of a run (the RGB one by default: all inference needs) for use without tgsemi.

Formats:

- ``state_dict``: the network's tensors (classifier included, projection head left out) under torchvision's
  ``r3d_18`` names. With ``model.layout=table4`` and ``model.width=64`` it is a torchvision ``r3d_18``:
  ``r3d_18(num_classes=K).load_state_dict(...)`` loads it strictly and computes the same logits (checked
  here on export). Other layouts or widths keep the names but are not that network, and the export says so.
- ``torchscript``: ``torch.jit.trace`` of the network (torch marks TorchScript deprecated; ``pt2`` is its successor).
- ``pt2``: a ``torch.export`` program (``torch.export.load(FILE).module()(clip)``).
- ``onnx``: through torch's ``torch.export``-based exporter (the ``[export]`` extra).

The three graphs take a float32 clip batch ``(N, 3, T, H, W)`` normalised as tgsemi normalises clips (ImageNet
mean/std on the 0..255 scale) with N, T, H and W free, and return logits ``(N, K)``; ``Logits`` hides the
network's training outputs (``StreamOutput``) from them. The state dict expects the statistics its weights
were trained with (ImageNet's, or Kinetics' for a network started from torchvision's weights). Each export
writes ``FILE.json`` beside it with the class names, the input's shape and statistics and the check below.

Every export is checked before it is reported: the file is loaded back (for ONNX into ``onnxruntime``) and its
logits on a clip are compared with the PyTorch network's, float32 on the CPU; a difference above
``atol + rtol * |logits|`` with ``ATOL = 1e-4`` and ``RTOL = 1e-3`` is an ExportError. Measured on
``synthetic_tiny`` runs of width 4 and 64: up to 3.5e-8 (ONNX), 1.9e-8 (state dict in torchvision's r3d_18),
0 (TorchScript, pt2).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from tgsemi import __version__
from tgsemi.errors import ArgumentError, ExportError
from tgsemi.extras import require
from tgsemi.models.pretrained import input_norm, norm_stats
from tgsemi.runs import Run, load_run

FORMATS = ("state_dict", "torchscript", "pt2", "onnx")
ATOL, RTOL = 1e-4, 1e-3  # float32 logits of a file against PyTorch's (module docstring)


class Logits(nn.Module):
    """A network as inference calls it: normalised clips ``(N, 3, T, H, W)`` -> logits ``(N, K)``, a tensor
    that ``torch.jit``, ``torch.export`` and ONNX can trace, instead of the training ``StreamOutput``."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, clip: Tensor) -> Tensor:
        return self.net(clip).logits


@dataclass
class Exported:
    """What ``export_run`` wrote and how it checked it."""

    path: Path
    format: str
    modality: str
    torchvision_r3d_18: bool  # the state dict is a torchvision r3d_18 (layout table4, width 64)
    note: str  # what the file is, and what it is not
    max_abs_diff: float | None  # largest |logit difference| against PyTorch on the check clip
    sidecar: Path  # FILE.json: class names, input shape and statistics


def export_run(
    run: Run | str | Path,
    out: str | Path,
    format: str = "state_dict",
    modality: str | None = None,
    clip: Tensor | None = None,
) -> Exported:
    """Write network ``modality`` of ``run`` (a Run, or a run folder / checkpoint) to ``out`` in ``format``.

    ``clip``: a normalised clip batch ``(N, 3, T, H, W)`` to check the file on (default: the two random clips of
    the run's clip length and crop size, from a fixed seed, that the graphs are traced on).
    """
    if format not in FORMATS:
        raise ArgumentError(f"--format must be one of {list(FORMATS)}, got {format!r}")
    run = run if isinstance(run, Run) else load_run(run)
    modality = modality or run.model.primary
    net = Logits(run.net(modality)).cpu().eval()
    d = run.cfg.data
    # traced on two clips: torch.export would fix a batch of one at 1
    example = torch.randn(2, 3, d.clip_len, d.crop, d.crop, generator=torch.Generator().manual_seed(0))
    clip = example if clip is None else clip
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        expected = net(clip)
    m = run.cfg.model
    compatible = m.layout == "table4" and m.width == 64
    if format == "state_dict":
        note, got = _state_dict(net.net, out, run, modality, compatible, clip)
    else:
        note, got = {"torchscript": _torchscript, "pt2": _pt2, "onnx": _onnx}[format](net, out, example, clip)
    diff = None if got is None else float((got - expected).abs().max())
    if got is not None and not torch.allclose(got, expected, atol=ATOL, rtol=RTOL):
        raise ExportError(f"{out}: its logits differ from PyTorch's by up to {diff:.3g} (atol {ATOL}, rtol {RTOL})")
    norm = input_norm(m, modality) if format == "state_dict" else "imagenet"
    done = Exported(out, format, modality, format == "state_dict" and compatible, note, diff, Path(f"{out}.json"))
    _write_sidecar(done, run, norm)
    return done


def _state_dict(
    net: nn.Module, out: Path, run: Run, modality: str, compatible: bool, clip: Tensor
) -> tuple[str, Tensor | None]:
    """The tensors torchvision's r3d_18 has, checked in torchvision's network when the layout is its."""
    state = {k: v.detach().clone() for k, v in net.state_dict().items() if not k.startswith("projector.")}
    torch.save(state, out)
    m = run.cfg.model
    if not compatible:
        why = f"layout {m.layout} adds max-pools r3d_18 lacks" if m.layout != "table4" else f"its width is {m.width}"
        note = (
            f"tgsemi R3D18 (layout={m.layout}, width={m.width}) tensors under torchvision's names, not a torchvision "
            f"r3d_18 ({why}): load them into tgsemi.models.R3D18"
        )
        return note, None
    from torchvision.models.video import r3d_18

    tv = r3d_18(num_classes=len(run.class_names))
    tv.load_state_dict(torch.load(out, weights_only=True))  # strict: every key and shape is r3d_18's
    m0, s0 = (torch.tensor(v).view(1, 3, 1, 1, 1) for v in norm_stats("imagenet"))
    m1, s1 = (torch.tensor(v).view(1, 3, 1, 1, 1) for v in norm_stats(input_norm(m, modality)))
    with torch.no_grad():
        got = tv.eval()((clip * s0 + m0 - m1) / s1)  # the same pixels in the statistics the weights expect
    return "torchvision r3d_18 state dict: torchvision.models.video.r3d_18(num_classes=K).load_state_dict(...)", got


def _torchscript(net: nn.Module, out: Path, example: Tensor, clip: Tensor) -> tuple[str, Tensor]:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning)  # torch's deprecation notice of torch.jit
        traced = torch.jit.trace(net, (example,), check_trace=False)  # checked below, on the file
        traced.save(str(out))
        with torch.no_grad():
            return "TorchScript: torch.jit.load(FILE)(clip)", torch.jit.load(str(out))(clip)


def _dynamic() -> dict:
    """Batch, frames, height and width left free: tgsemi evaluates several clips and crop sizes."""
    auto = torch.export.Dim.AUTO
    return {"clip": {0: auto, 2: auto, 3: auto, 4: auto}}


def _pt2(net: nn.Module, out: Path, example: Tensor, clip: Tensor) -> tuple[str, Tensor]:
    program = torch.export.export(net, (example,), dynamic_shapes=_dynamic())
    torch.export.save(program, out)
    with torch.no_grad():
        return "torch.export program: torch.export.load(FILE).module()(clip)", torch.export.load(out).module()(clip)


def _onnx(net: nn.Module, out: Path, example: Tensor, clip: Tensor) -> tuple[str, Tensor]:
    require("onnxscript", "ONNX export")  # torch's exporter imports it itself, with a message naming no extra
    ort = require("onnxruntime", "checking the ONNX export")
    program = torch.onnx.export(
        net,
        (example,),
        dynamo=True,
        dynamic_shapes=_dynamic(),
        input_names=["clip"],
        output_names=["logits"],
        verbose=False,
    )
    program.save(str(out), external_data=False)  # one file: an R3D-18 is far below ONNX's 2 GB limit
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = torch.from_numpy(session.run(["logits"], {"clip": clip.numpy()})[0])
    return "ONNX: onnxruntime.InferenceSession(FILE).run(['logits'], {'clip': clip})", got


def _write_sidecar(done: Exported, run: Run, norm: str) -> None:
    """FILE.json: what a program using the file needs to feed it and read its output."""
    d = run.cfg.data
    mean, std = norm_stats(norm)
    frames = f"{d.clip_len} frames"
    if done.modality == "tg":
        frames = f"{d.clip_len} temporal gradients (tgsemi.temporal_gradient of each chosen frame and the next)"
    info = {
        **{k: str(v) if isinstance(v, Path) else v for k, v in asdict(done).items() if k != "sidecar"},
        "run": str(run.path.resolve()),
        "step": run.step,
        "tgsemi_version": __version__,
        "class_names": run.class_names,
        "input": {
            "shape": ["N", 3, d.clip_len, d.crop, d.crop],
            "layout": "N, channel (RGB), time, height, width; float32",
            "frames": f"{frames}, {d.frame_interval} apart, short side resized to {d.resize}, centre {d.crop} crop",
            **{k: getattr(d, k) for k in ("clip_len", "frame_interval", "resize", "crop")},
            "normalisation": f"{norm}: (pixel / 255 - mean) / std per channel",
            "mean": list(mean),
            "std": list(std),
        },
        "output": f"logits (N, {len(run.class_names)}) in the order of class_names",
        "tolerance": {"atol": ATOL, "rtol": RTOL},
    }
    done.sidecar.write_text(json.dumps(info, indent=1))
