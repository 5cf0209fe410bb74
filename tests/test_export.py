"""tgsemi export: each file, loaded back by its own runtime, gives PyTorch's logits on a real clip."""

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torchvision.models.video import R3D_18_Weights, r3d_18

import tgsemi
from tgsemi.cli import main
from tgsemi.config import load_config
from tgsemi.data import transforms
from tgsemi.errors import MissingExtraError
from tgsemi.export import ATOL, RTOL, export_run
from tgsemi.models.r3d import R3D18


def _real_clip(root: Path, cfg, crops: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """A decoded test video as uint8 ``(T, C, H, W)`` frames and as the normalised crops tgsemi feeds."""
    video = root / (root / "testlist01.txt").read_text().split()[0]
    d = cfg.data
    frames = tgsemi.read_frames(video, [i * d.frame_interval for i in range(d.clip_len)])
    clip = torch.from_numpy(frames).permute(0, 3, 1, 2)
    return clip, transforms.normalize(transforms.test_crops(clip, d.resize, d.crop, crops))


def _pytorch_logits(run, clip: torch.Tensor, modality: str = "rgb") -> torch.Tensor:
    with torch.no_grad():
        return run.net(modality).eval()(clip).logits


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
@pytest.mark.parametrize("fmt", ["torchscript", "pt2", "onnx"])
def test_graphs_match_pytorch_on_a_real_clip(fmt, tiny_runs, tiny_root, tmp_path):
    run = tgsemi.load_run(tiny_runs["tg_fixmatch"])
    _, clip = _real_clip(tiny_root, run.cfg)  # 3 crops: another batch size than the 2 clips traced
    done = export_run(run, tmp_path / f"rgb.{fmt}", fmt)
    if fmt == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(done.path), providers=["CPUExecutionProvider"])
        got = torch.from_numpy(session.run(None, {"clip": clip.numpy()})[0])
    elif fmt == "pt2":
        got = torch.export.load(done.path).module()(clip)
    else:
        got = torch.jit.load(str(done.path))(clip)
    expected = _pytorch_logits(run, clip)
    assert got.shape == expected.shape == (3, len(run.class_names))
    torch.testing.assert_close(got, expected, atol=ATOL, rtol=RTOL)
    assert json.loads(done.sidecar.read_text())["class_names"] == run.class_names


@pytest.mark.slow  # trains a width-64 network for a step
def test_state_dict_is_a_torchvision_r3d_18(tiny_root, tmp_path, monkeypatch):
    """A width-64 table4 network started from torchvision's Kinetics weights: the exported state dict,
    in torchvision's own r3d_18 fed through torchvision's own normalisation, gives tgsemi's logits."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # the weights API finds "its download" in the hub cache
    cached = tmp_path / "hub" / "checkpoints" / Path(R3D_18_Weights.KINETICS400_V1.url).name
    cached.parent.mkdir(parents=True)
    torch.save(r3d_18(num_classes=400).state_dict(), cached)
    from tgsemi.engine import train

    overrides = ["method=supervised", "model.width=64", "model.pretrained=torchvision_k400"]
    cfg = load_config("synthetic_tiny", [f"data.root={tiny_root}", "train.max_steps=1", *overrides])
    train(cfg, tmp_path / "run")
    run = tgsemi.load_run(tmp_path / "run")
    done = export_run(run, tmp_path / "r3d18.pth")
    assert done.torchvision_r3d_18

    tv = r3d_18(num_classes=len(run.class_names))
    tv.load_state_dict(torch.load(done.path, weights_only=True))  # strict
    frames, clip = _real_clip(tiny_root, run.cfg, crops=1)
    t = R3D_18_Weights.KINETICS400_V1.transforms()
    mean, std = (torch.tensor(v).view(3, 1, 1, 1) for v in (t.mean, t.std))
    d = run.cfg.data
    crop = transforms.test_crops(frames, d.resize, d.crop, 1)[0]
    theirs = ((crop.float() / 255).transpose(0, 1) - mean) / std
    with torch.no_grad():
        got = tv.eval()(theirs[None])
    torch.testing.assert_close(got, _pytorch_logits(run, clip), atol=ATOL, rtol=RTOL)
    assert json.loads(done.sidecar.read_text())["input"]["mean"] == pytest.approx(t.mean)


def test_state_dict_of_another_width_says_what_it_is(tiny_runs, tmp_path):
    run = tgsemi.load_run(tiny_runs["fixmatch"])
    done = export_run(run, tmp_path / "rgb.pth")
    assert not done.torchvision_r3d_18 and "not a torchvision r3d_18 (its width is 4)" in done.note
    state = torch.load(done.path, weights_only=True)
    assert not [k for k in state if k.startswith("projector.")]
    R3D18(len(run.class_names), width=4, projection_dim=None).load_state_dict(state)  # strict


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_cli_exports_the_tg_network(tiny_runs, tmp_path, capsys):
    out = tmp_path / "tg.ts"
    args = ["export", str(tiny_runs["tg_fixmatch"]), "--out", str(out), "--format", "torchscript", "--modality", "tg"]
    assert main(args) == 0
    assert f"wrote {out} (torchscript, tg network" in capsys.readouterr().out
    run = tgsemi.load_run(tiny_runs["tg_fixmatch"])
    clip = torch.randn(2, 3, run.cfg.data.clip_len, run.cfg.data.crop, run.cfg.data.crop)
    torch.testing.assert_close(torch.jit.load(str(out))(clip), _pytorch_logits(run, clip, "tg"), atol=ATOL, rtol=RTOL)
    assert "temporal gradients" in json.loads(Path(f"{out}.json").read_text())["input"]["frames"]


def test_onnx_without_the_extra_names_it(tiny_runs, tmp_path, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "onnxscript", None)  # as if not installed
    with pytest.raises(MissingExtraError, match=r"pip install 'tgsemi\[export\]'"):
        export_run(tiny_runs["fixmatch"], tmp_path / "rgb.onnx", "onnx")


@pytest.mark.slow  # exports in subprocesses
def test_readme_export_section_runs_as_written(tiny_runs, tiny_root, tmp_path):
    """The README's "Export a trained network" commands and Python, on a tiny run standing in for the demo's."""
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    start = text.index("## Export a trained network")
    section = text[start : text.index("\n## ", start + 1)]
    for old, new in {"runs/demo/tg_fixmatch_seed0": str(tiny_runs["tg_fixmatch"]), "data/demo": str(tiny_root)}.items():
        section = section.replace(old, new)
    (bash,) = re.findall(r"```bash\n(.*?)```", section, re.S)
    for command in filter(None, (line.split("#")[0].strip() for line in bash.splitlines())):
        argv = shlex.split(command)
        done = subprocess.run(
            [str(Path(sys.executable).parent / argv[0]), *argv[1:]], cwd=tmp_path, capture_output=True
        )
        assert done.returncode == 0, (command, done.stderr[-2000:])
    (python,) = re.findall(r"```python\n(.*?)```", section, re.S)
    done = subprocess.run([sys.executable, "-c", python], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    info = json.loads((tmp_path / "exported" / "tg_fixmatch.onnx.json").read_text())
    assert done.stdout.strip() in info["class_names"]
