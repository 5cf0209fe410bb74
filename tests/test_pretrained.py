"""Pretrained initialisation (model.pretrained): torchvision's r3d_18 format, tgsemi runs, the input statistics."""

from pathlib import Path
from urllib.error import URLError

import pytest
import torch
from torchvision.models.video import R3D_18_Weights, r3d_18

from tgsemi.config import ModelConfig, load_config
from tgsemi.data.transforms import normalize
from tgsemi.engine import setup, train
from tgsemi.errors import CheckpointError, ConfigError, TgsemiError
from tgsemi.models import create_model
from tgsemi.models.pretrained import load_pretrained
from tgsemi.runfiles import RunPaths


@pytest.fixture(scope="module")
def torchvision_state() -> dict[str, torch.Tensor]:
    """Weights in torchvision's r3d_18 format (random, Kinetics' 400 classes), with BN statistics
    that are not the fresh 0 / 1, so that loading them shows in the outputs."""
    torch.manual_seed(3)
    net = r3d_18(num_classes=400)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm3d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 2.0)
    return net.state_dict()


@pytest.fixture
def torch_home(tmp_path, monkeypatch, torchvision_state) -> Path:
    """torch's hub cache holding the file torchvision's weights API downloads: it reads it instead."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    cached = tmp_path / "hub" / "checkpoints" / Path(R3D_18_Weights.KINETICS400_V1.url).name
    cached.parent.mkdir(parents=True)
    torch.save(torchvision_state, cached)
    return tmp_path


def _saved(state: dict, path: Path) -> str:
    torch.save(state, path)
    return str(path)


def test_torchvision_state_dict_loads_with_the_head_reinitialised(tmp_path, torchvision_state):
    cfg = ModelConfig(pretrained=_saved(torchvision_state, tmp_path / "r3d18.pth"), projection_dim=16)
    model = create_model(cfg, 5, ("rgb", "tg"), projection=True)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = load_pretrained(model, cfg)

    assert list(report) == ["rgb"]  # model.pretrained_streams defaults to the RGB network
    rgb = model.nets["rgb"].state_dict()
    assert sorted(report["rgb"].missing) == sorted(k for k in rgb if k.startswith("projector."))
    assert sorted(report["rgb"].reinitialised) == ["fc.bias", "fc.weight"]  # 400 classes -> 5
    assert report["rgb"].unexpected == []
    for k, v in torchvision_state.items():
        if not k.startswith("fc."):
            assert torch.equal(rgb[k], v), k
    assert torch.equal(rgb["fc.weight"], before["nets.rgb.fc.weight"])  # kept as initialised
    assert torch.equal(model.nets["tg"].state_dict()["stem.0.weight"], before["nets.tg.stem.0.weight"])
    assert not torch.equal(rgb["layer2.0.conv1.0.weight"], before["nets.rgb.layer2.0.conv1.0.weight"])


def test_create_model_loads_them_only_when_asked(tmp_path, torchvision_state):
    cfg = ModelConfig(pretrained=_saved(torchvision_state, tmp_path / "r3d18.pth"), pretrained_streams=["rgb", "tg"])
    fresh = create_model(cfg, 5, ("rgb", "tg"), projection=False)  # a run loaded for evaluation, or resumed
    started = create_model(cfg, 5, ("rgb", "tg"), projection=False, pretrained=True)
    for s in ("rgb", "tg"):
        assert not torch.equal(fresh.nets[s].stem[0].weight, torchvision_state["stem.0.weight"])
        assert torch.equal(started.nets[s].stem[0].weight, torchvision_state["stem.0.weight"])


def test_torchvision_k400_computes_what_torchvision_computes(torch_home, torchvision_state):
    """Through torchvision's weights API, with tgsemi's ImageNet-normalised clip in and torchvision's own
    Kinetics normalisation on the torchvision side: the same features."""
    cfg = ModelConfig(pretrained="torchvision_k400")
    net = create_model(cfg, 5, ("rgb",), projection=False, pretrained=True).nets["rgb"].eval()
    tv = r3d_18(num_classes=400)
    tv.load_state_dict(torchvision_state)
    tv.fc = torch.nn.Identity()  # the pooled features: the heads differ

    clip = torch.randint(0, 256, (4, 3, 64, 64), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    t = R3D_18_Weights.KINETICS400_V1.transforms()
    mean, std = (torch.tensor(v).view(3, 1, 1, 1) for v in (t.mean, t.std))
    theirs = ((clip.float() / 255).transpose(0, 1) - mean) / std  # (C, T, H, W) as torchvision normalises
    with torch.no_grad():
        ours = net(normalize(clip)[None]).pooled
        expected = tv.eval()(theirs[None])
    torch.testing.assert_close(ours, expected, atol=1e-4, rtol=1e-4)

    plain = create_model(cfg.model_copy(update={"input_norm": "imagenet"}), 5, ("rgb",), False, pretrained=True)
    with torch.no_grad():  # the same weights fed ImageNet-normalised clips as they are: not what they expect
        assert not torch.allclose(plain.nets["rgb"].eval()(normalize(clip)[None]).pooled, expected, atol=1e-3)


def test_torchvision_k400_offline_names_the_file_and_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(url, dst, *args, **kwargs):
        raise URLError("no internet")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(ConfigError, match="r3d_18-.*checkpoints"):
        create_model(ModelConfig(pretrained="torchvision_k400"), 5, ("rgb",), False, pretrained=True)


def test_shape_mismatch_is_refused_naming_the_keys(tmp_path, torchvision_state):
    cfg = ModelConfig(width=8, pretrained=_saved(torchvision_state, tmp_path / "r3d18.pth"))
    with pytest.raises(CheckpointError, match=r"stem\.0\.weight: \(64, 3, 3, 7, 7\) vs \(8, 3, 3, 7, 7\)"):
        create_model(cfg, 5, ("rgb",), False, pretrained=True)


def test_foreign_names_and_bad_values_are_refused(tmp_path, torchvision_state):
    other = {f"backbone.{k}": v for k, v in torchvision_state.items()}
    cfg = ModelConfig(pretrained=_saved(other, tmp_path / "mmaction.pth"))
    with pytest.raises(CheckpointError, match="none of its .* keys"):
        create_model(cfg, 5, ("rgb",), False, pretrained=True)
    with pytest.raises(ConfigError, match="neither none, torchvision_k400 nor an existing file"):
        create_model(ModelConfig(pretrained="torchvision_k40"), 5, ("rgb",), False, pretrained=True)
    with pytest.raises(ConfigError, match="names none of the networks"):
        create_model(ModelConfig(pretrained=cfg.pretrained), 5, ("tg",), False, pretrained=True)
    with pytest.raises(ConfigError, match="model.width=64"):
        load_config("synthetic_tiny", ["model.pretrained=torchvision_k400"])  # the preset's width is 4


def test_a_tgsemi_run_gives_the_network_of_the_same_stream(tiny_runs):
    run = tiny_runs["fixmatch"]  # an RGB network only
    ckpt = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    cfg = load_config("synthetic_tiny", [f"model.pretrained={run}"]).model
    model = create_model(cfg, 4, ("rgb", "tg"), projection=True, pretrained=True)
    assert torch.equal(model.nets["rgb"].layer3[0].conv1[0].weight, ckpt["model"]["nets.rgb.layer3.0.conv1.0.weight"])

    with pytest.raises(ConfigError, match=r"has no tg network \(it has \['rgb'\]\)"):
        create_model(cfg.model_copy(update={"pretrained_streams": ["tg"]}), 4, ("tg",), False, pretrained=True)
    with pytest.raises(TgsemiError, match="set model.input_norm=imagenet"):
        create_model(cfg.model_copy(update={"input_norm": "kinetics400"}), 4, ("rgb",), False, pretrained=True)


def test_training_starts_from_the_pretrained_weights_and_resumes_from_its_own(tiny_runs, tiny_root, tmp_path):
    source = torch.load(tiny_runs["fixmatch"] / "checkpoints" / "last.pt", weights_only=True)["model"]
    key = "nets.rgb.layer3.0.conv1.0.weight"
    overrides = [f"data.root={tiny_root}", f"model.pretrained={tiny_runs['fixmatch']}", "train.max_steps=1"]
    t, _ = setup(load_config("synthetic_tiny", overrides), RunPaths(tmp_path / "run"))
    assert torch.equal(t.net.state_dict()[key], source[key])

    torch.save({"model": {}}, tmp_path / "gone.pt")  # a resumed run reads its checkpoint, never the source again
    train(load_config("synthetic_tiny", overrides), tmp_path / "run")
    own = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)["model"][key]
    resumed = [*overrides[:1], f"model.pretrained={tmp_path / 'gone.pt'}", "train.max_steps=1"]
    with pytest.raises(ConfigError):  # another source is another recipe: refused, not silently mixed
        setup(load_config("synthetic_tiny", resumed), RunPaths(tmp_path / "run"))
    t, pos = setup(load_config("synthetic_tiny", overrides), RunPaths(tmp_path / "run"))
    assert pos.step == 1 and torch.equal(t.net.state_dict()[key], own) and not torch.equal(own, source[key])
