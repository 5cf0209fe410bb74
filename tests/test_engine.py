import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tgsemi import checkpoint
from tgsemi.cli import main as cli
from tgsemi.config import load_config
from tgsemi.data.bad_inputs import BadInputs
from tgsemi.data.build import build_splits
from tgsemi.demo import stale
from tgsemi.engine import Loaders, eval_interval, lr_at, train, train_step
from tgsemi.errors import ConfigError
from tgsemi.methods import Batch, get_method
from tgsemi.models import create_model

ROOT = Path(__file__).resolve().parents[1]


def tiny_cfg(root, *overrides):
    return load_config("synthetic_tiny", [f"data.root={root}", *overrides])


def assert_same_weights(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


# strong_on=batch draws the strong views on the training device from (seed, step, rank), not from
# the global RNG the checkpoint restores: resuming must redraw them all the same. Threshold 0 lets
# every strong view into the loss (at the preset's 0.5 none passes in 24 steps, and a redraw would not show).
STRONG_ON = {
    "item": [],
    "batch": ["data.strong_aug=reference", "data.strong_ops_tg=null", "data.strong_on=batch", "loss.threshold=0"],
}


@pytest.mark.parametrize("strong_on", STRONG_ON)
def test_interrupted_and_resumed_run_is_bit_identical(tiny_root, tmp_path, strong_on):
    aug = STRONG_ON[strong_on]
    straight = train(tiny_cfg(tiny_root, *aug), tmp_path / "straight").state_dict()
    train(tiny_cfg(tiny_root, *aug, "train.max_steps=7"), tmp_path / "resumed")  # stops mid-epoch
    last = tmp_path / "resumed" / "checkpoints" / checkpoint.LAST
    saved = checkpoint.load(last)
    assert saved["position"]["step"] == 7 and "scaler" not in saved
    torch.save({**saved, "scaler": None}, last)  # as earlier versions wrote it: still resumes
    # resumed from videos held decoded in memory: the same clips, so the same weights
    resumed = train(tiny_cfg(tiny_root, *aug, "data.cache_frames=true"), tmp_path / "resumed").state_dict()
    assert_same_weights(straight, resumed)
    steps = [
        json.loads(ln)["step"]
        for ln in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()
        if "loss" in json.loads(ln)
    ]
    assert steps == sorted(set(steps)) and steps[-1] == 24  # no duplicated step after resuming


@pytest.mark.parametrize(
    "epochs,steps_per_epoch,every", [(1, 12, 12), (0.25, 12, 3), (0.5, 7, 4), (2.5, 4, 10), (0.01, 7, 1)]
)
def test_eval_interval_rounds_fractional_epochs_to_the_nearest_step(epochs, steps_per_epoch, every):
    assert eval_interval(epochs, steps_per_epoch) == every  # 3.5 steps: halves up; under one step: every step


def test_a_fraction_of_an_epoch_validates_within_epochs_and_resumes_bit_identical(tiny_root, tmp_path):
    """24 steps, 12 per epoch: half an epoch validates every 6 steps. A run stopped on a validation
    step validates it again when resumed, as the uninterrupted run did before its next step (PreciseBN
    changes the BN statistics that training carries on from)."""
    half = "train.eval_every_epochs=0.5"
    straight = train(tiny_cfg(tiny_root, half), tmp_path / "straight").state_dict()
    train(tiny_cfg(tiny_root, half, "train.max_steps=6"), tmp_path / "resumed")
    resumed = train(tiny_cfg(tiny_root, half), tmp_path / "resumed").state_dict()
    assert_same_weights(straight, resumed)
    for run in ("straight", "resumed"):
        records = [json.loads(ln) for ln in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]
        assert [r["step"] for r in records if any(k.startswith("val/") for k in r)] == [6, 12, 18, 24]


def test_resuming_with_other_settings_is_an_error_that_names_them(tiny_root, tmp_path):
    train(tiny_cfg(tiny_root, "train.max_steps=2"), tmp_path)
    saved = (tmp_path / "config.yaml").read_text()
    lr = tiny_cfg(tiny_root).train.lr
    with pytest.raises(ConfigError) as err:
        train(tiny_cfg(tiny_root, "train.max_steps=3", f"train.lr={2 * lr}", "train.epochs=3"), tmp_path)
    assert f"train.epochs: 2.0 -> 3.0; train.lr: {lr} -> {2 * lr})" in str(err.value)  # max_steps may change
    assert (tmp_path / "config.yaml").read_text() == saved  # the run folder still describes its weights
    assert checkpoint.load(tmp_path)["position"]["step"] == 2


def test_demo_tells_runs_made_with_other_settings_or_older_data(tiny_root, tmp_path):
    run = tmp_path / "run"
    assert stale(run, tiny_cfg(tiny_root)) is None  # nothing trained yet
    train(tiny_cfg(tiny_root, "train.max_steps=1"), run)
    assert stale(run, tiny_cfg(tiny_root)) is None  # only how far it goes differs: resume it
    assert "model.dropout: 0.0 -> 0.5" in stale(run, tiny_cfg(tiny_root, "model.dropout=0.5"))
    last = run / "checkpoints" / "last.pt"
    os.utime(last, (0, 0))  # trained before the data's recipe was written
    assert "rebuilt" in stale(run, tiny_cfg(tiny_root))


@pytest.mark.parametrize("method,modality", [("supervised", "rgb"), ("fixmatch", "rgb"), ("fixmatch", "tg")])
def test_baselines_train_and_log(tiny_root, tmp_path, method, modality):
    train(tiny_cfg(tiny_root, f"method={method}", f"model.modality={modality}", "train.epochs=1"), tmp_path)
    ckpt = checkpoint.load(tmp_path / "checkpoints" / "last.pt")
    assert {k.split(".")[1] for k in ckpt["model"]} == {modality}
    records = [json.loads(ln) for ln in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert any(f"val/{modality}/top1" in r for r in records)
    train_keys = set().union(*(r for r in records if "loss" in r))
    assert {"loss", "lr", "train_acc", "loss/sup"} <= train_keys
    assert ("mask_rate" in train_keys) == (method == "fixmatch")


def test_lr_schedule_warmup_and_cosine():
    cfg = load_config(
        "synthetic_cpu",
        ["train.epochs=10", "train.warmup_epochs=2", "train.lr=0.2", "train.batch_size=8", "train.base_batch_size=40"],
    )
    peak = 0.2 * 8 / 40
    assert lr_at(0, cfg, 10, 1) == pytest.approx(0.1 * peak)
    assert lr_at(20, cfg, 10, 1) == pytest.approx(peak)
    assert lr_at(60, cfg, 10, 1) == pytest.approx(peak * 0.5)  # half-way through the cosine
    assert lr_at(100, cfg, 10, 1) == pytest.approx(0, abs=1e-12)
    assert lr_at(20, cfg, 10, 2) == pytest.approx(2 * peak)  # scaled with the global batch


@pytest.mark.parametrize("batch, world", [(5, 8), (40, 1)])
def test_lr_schedule_of_the_reference_is_mmcvs_cosine_by_epoch(batch, world):
    """mmcv CosineAnnealing(by_epoch, min_lr 0) with a linear warm-up factor, 30 of 180 epochs:
    the lr of epoch e is 0.1 (1 + cos(pi e / 180)), times 1 - (1 - i / W) 0.9 while i < W."""
    cfg = load_config("ucf101_20pct", [f"train.batch_size={batch}"])
    spe = 9537 // 40  # UCF-101 split 1: one epoch = one pass over the 9537 train clips
    warm = 30 * spe
    assert lr_at(0, cfg, spe, world) == pytest.approx(0.2 * 0.1)
    assert lr_at(warm // 2, cfg, spe, world) == pytest.approx(
        0.1 * (1 + math.cos(math.pi * (warm // 2 // spe) / 180)) * (1 - (1 - (warm // 2) / warm) * 0.9)
    )
    assert lr_at(warm, cfg, spe, world) == pytest.approx(0.187, abs=5e-4)  # the peak, at the end of warm-up
    assert lr_at(warm + spe - 1, cfg, spe, world) == lr_at(warm, cfg, spe, world)  # constant within an epoch
    last = 179 * spe
    assert lr_at(last, cfg, spe, world) == pytest.approx(0.1 * (1 + math.cos(math.pi * 179 / 180)))
    assert lr_at(180 * spe - 1, cfg, spe, world) == lr_at(last, cfg, spe, world) > 0


def test_cli_train_and_eval_contract(tiny_root, tmp_path, capsys):
    run = tmp_path / "run"
    assert (
        cli(
            [
                "train",
                "synthetic_tiny",
                "--out",
                str(run),
                f"data.root={tiny_root}",
                "method=fixmatch",
                "train.max_steps=3",
                "train.ckpt_every_steps=2",
            ]
        )
        == 0
    )
    ckpt = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["position"]["step"] == 3 and "model" in ckpt
    assert cli(["eval", str(run), "--clips", "2", "--crops", "3"]) == 0
    res = json.loads((run / "eval_test_rgb_2x3.json").read_text())
    n_test = len((tiny_root / "testlist01.txt").read_text().split())
    assert res["scored"] == n_test and res["failed"] == 0
    assert 0 <= res["top1"] <= res["top5"] <= 100
    assert "| top-1 |" in capsys.readouterr().out


def train_two_gloo_processes(out: Path, *args: str) -> None:
    """tests/_ddp_train.py under torchrun, 2 CPU processes on a free port; fails with its stderr."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone"]
    cmd = [*launcher, str(ROOT / "tests" / "_ddp_train.py"), str(out), *args]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_two_process_gloo_run_keeps_ranks_identical(tiny_root, tmp_path):
    train_two_gloo_processes(tmp_path, f"data.root={tiny_root}", "train.max_steps=4", "train.batch_size=2")
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert_same_weights(r0, r1)
    assert checkpoint.load(tmp_path)["position"]["step"] == 4


def test_paper_preset_on_two_gloo_processes_uses_sync_bn_and_precise_bn_over_the_train_split(tiny_root, tmp_path):
    """ucf101_20pct shrunk to the tiny set: the reference layout, augmentation and schedule run,
    BatchNorm is synchronised over both processes, and PreciseBN reads the whole train split."""
    shrink = [
        f"data.root={tiny_root}",
        "data.train_list=null",
        "data.test_list=null",
        "data.labeled_list=null",
        "data.labeled_fraction=0.5",
        "data.clip_len=4",
        "data.frame_interval=2",
        "data.resize=32",
        "data.crop=28",
        "eval.crop=null",  # the preset's 256 would not fit the 32-pixel frames
        "data.num_workers=0",
        "model.width=8",
        "model.projection_dim=16",
        "train.max_steps=3",
        "train.batch_size=2",
        "train.progress=false",
        "train.channels_last=false",
    ]
    train_two_gloo_processes(tmp_path, "--preset", "ucf101_20pct", *shrink)
    for r in (0, 1):
        assert json.loads((tmp_path / f"rank{r}.json").read_text())["batchnorm"] == ["CpuSyncBatchNorm"]
    assert_same_weights(*(torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)))
    cfg = checkpoint.load(tmp_path)["config"]
    assert cfg["model"]["layout"] == "mmaction" and cfg["data"]["strong_aug"] == "reference"
    assert cfg["train"]["lr_schedule"] == "mmcv_cosine" and cfg["train"]["sync_bn"]
    final = [json.loads(ln) for ln in (tmp_path / "metrics.jsonl").read_text().splitlines()][-1]
    n_train = len(build_splits(tiny_cfg(tiny_root).data, 0).train)
    # each rank reads its half of the train split in batches of 2 (not the 12 labeled clips)
    assert final["precise_bn/rgb/clips"] == final["precise_bn/tg/clips"] == n_train // 4 * 4 > n_train // 2


@pytest.mark.parametrize("split", ["none", "strong", "labeled", "views"])
def test_split_bn_keeps_strong_views_out_of_the_labeled_loss(split):
    """Split apart from the strong views, the supervised term cannot depend on them."""
    cfg = load_config("synthetic_tiny", ["method=fixmatch", f"train.split_bn={split}"])
    method = get_method("fixmatch")
    n_l = n_u = 2
    torch.manual_seed(0)
    clips = torch.randn(n_l + 2 * n_u, 3, 4, 16, 16)
    sups = []
    for scale in (1.0, 50.0):
        torch.manual_seed(1)
        net = create_model(cfg.model, 3, ("rgb",), projection=False)
        x = clips.clone()
        x[n_l + n_u :] *= scale  # only the strong views change
        batch = Batch(y=torch.tensor([0, 1]), n_l=n_l, n_u=n_u, unlabeled_on=True)
        opt = torch.optim.SGD(net.parameters(), lr=0.0)
        _, terms, *_ = train_step(net, method, {"rgb": x}, batch, opt, cfg, False, torch.device("cpu"))
        sups.append(terms["sup"])
    assert torch.allclose(sups[0], sups[1]) == (split != "none")


def test_train_step_reports_the_gradient_norm_before_clipping():
    """A limit far below the gradient's norm: the step reports the norm it clipped from, and
    the gradient it applied is the limit's length."""
    cfg = load_config("synthetic_tiny", ["method=supervised", "train.clip_grad_norm=0.001"])
    torch.manual_seed(0)
    net = create_model(cfg.model, 3, ("rgb",), projection=False)
    opt = torch.optim.SGD(net.parameters(), lr=0.0)
    batch = Batch(y=torch.tensor([0, 1]), n_l=2, n_u=0, unlabeled_on=False)
    _, _, diag, *_ = train_step(
        net,
        get_method("supervised"),
        {"rgb": torch.randn(2, 3, 4, 16, 16)},
        batch,
        opt,
        cfg,
        False,
        torch.device("cpu"),
    )
    applied = torch.stack([p.grad.norm() for p in net.parameters() if p.grad is not None]).norm()
    assert diag["grad_norm"] > 100 * 0.001
    assert applied == pytest.approx(0.001, rel=1e-3)


@pytest.mark.parametrize("method", ["supervised", "fixmatch", "tg_fixmatch"])
def test_train_step_waits_for_the_device_once(method, monkeypatch):
    """On a GPU every read of a tensor's value (item, tolist, bool, float) stalls the host until the
    device catches up. A step reads one vector (whether to apply it, which terms were non-finite);
    loss terms and diagnostics stay tensors for ``TrainLog`` to read on the steps it records."""
    cfg = load_config("synthetic_tiny", [f"method={method}"])
    m = get_method(method)
    streams = m.streams_for("rgb")
    torch.manual_seed(0)
    net = create_model(cfg.model, 3, streams, projection=m.needs_projection)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    n_l, n_u = 2, (2 if m.uses_unlabeled else 0)
    clips = torch.randn(n_l + 2 * n_u, 3, 4, 16, 16)
    batch = Batch(y=torch.tensor([0, 1]), n_l=n_l, n_u=n_u, unlabeled_on=True)
    reads = []
    for name in ("item", "tolist", "__bool__", "__float__", "__int__", "__index__"):
        original = getattr(torch.Tensor, name)

        def counted(self, *a, _original=original, _name=name, **k):
            reads.append(_name)
            return _original(self, *a, **k)

        monkeypatch.setattr(torch.Tensor, name, counted)
    _, terms, diag, pseudo, bad = train_step(
        net, m, {s: clips for s in streams}, batch, opt, cfg, False, torch.device("cpu")
    )
    monkeypatch.undo()
    assert reads == ["tolist"] and bad == []
    assert all(isinstance(v, torch.Tensor) and v.dim() == 0 for v in [*terms.values(), *diag.values()])
    assert (pseudo is None) == (not m.uses_unlabeled)


def test_hue_jitter_reaches_both_training_datasets(tiny_root):
    cfg = tiny_cfg(tiny_root, "method=fixmatch", "data.hue_jitter=0.3")
    loaders = Loaders(cfg, build_splits(cfg.data, 0), BadInputs(), ("rgb",), 0, True)
    assert loaders.labeled.weak.hue == loaders.unlabeled.weak.hue == 0.3


def test_split_bn_reads_the_older_booleans():
    assert load_config("synthetic_tiny", ["train.split_bn=true"]).train.split_bn == "strong"
    assert load_config("synthetic_tiny", ["train.split_bn=false"]).train.split_bn == "none"


def test_frame_cache_is_refused_with_data_workers():
    assert not load_config("synthetic_tiny").data.cache_frames  # so the resume test compares the two
    assert load_config("synthetic_tiny", ["data.cache_frames=true"]).data.num_workers == 0
    with pytest.raises(ConfigError, match="cache_frames needs num_workers=0.*data.cache_frames=false"):
        load_config("synthetic_tiny", ["data.cache_frames=true", "data.num_workers=2"])


def test_split_bn_is_refused_with_sync_bn():
    load_config("synthetic_tiny", ["train.split_bn=views"])
    with pytest.raises(ConfigError, match="split_bn and sync_bn"):
        load_config("synthetic_tiny", ["train.split_bn=views", "train.sync_bn=true"])
