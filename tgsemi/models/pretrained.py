"""Start networks from pretrained weights (``model.pretrained``), and give each network its input in the
statistics its weights expect (``model.input_norm``).

Sources: torchvision's Kinetics-400 ``r3d_18`` (through torchvision's weights API, so it downloads, or
is read from torch's hub cache, wherever torchvision's own models would be), a tgsemi run or checkpoint
(its network of the same stream), or a state dict file. R3D18 names its parameters as torchvision's
``r3d_18`` does, so its state dict loads as it is. A classifier or projection head whose shape differs
(another class count) keeps its fresh initialisation; any other parameter whose shape differs is an error.

Normalisation: tgsemi normalises every RGB and TG clip with ImageNet's statistics on the 0..255 scale
(``data.transforms.normalize``). torchvision's video weights were trained on clips normalised with
Kinetics' own, which this module reads from the weights' transforms: mean (0.43216, 0.394666, 0.37645),
std (0.22803, 0.22145, 0.216989) on the 0..1 scale. A network whose weights expect other statistics
than ImageNet's gets a first convolution that maps its input to them (a per-channel affine, applied
before the convolution's zero padding, so exactly what the weights saw), instead of a second data
pipeline that every loader, analysis tool and export would have to choose correctly.
"""

from __future__ import annotations

import logging
import pickle
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from tgsemi import checkpoint
from tgsemi.config import ModelConfig, config_from_dict
from tgsemi.errors import CheckpointError, ConfigError

if TYPE_CHECKING:
    from tgsemi.models.r3d import R3D18
    from tgsemi.models.two_stream import TwoStream

log = logging.getLogger(__name__)

TORCHVISION_K400 = "torchvision_k400"
HEADS = ("fc.", "projector.")  # re-initialised when their shape differs (another class count or projection size)


def input_norm(cfg: ModelConfig, stream: str) -> str:
    """The statistics ``stream``'s network expects its input normalised with (``model.input_norm``)."""
    if cfg.input_norm != "auto":
        return cfg.input_norm
    started_from_k400 = cfg.pretrained == TORCHVISION_K400 and stream in cfg.pretrained_streams
    return "kinetics400" if started_from_k400 else "imagenet"


@cache
def norm_stats(norm: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) per RGB channel on the 0..1 scale: ImageNet's as tgsemi's clips use them, or those of
    torchvision's Kinetics-400 video weights as their own transforms state them."""
    if norm == "imagenet":
        from tgsemi.data.transforms import MEAN, STD

        return tuple(round(v / 255, 6) for v in MEAN.tolist()), tuple(round(v / 255, 6) for v in STD.tolist())
    if norm == "kinetics400":
        from torchvision.models.video import R3D_18_Weights

        t = R3D_18_Weights.KINETICS400_V1.transforms()
        return tuple(t.mean), tuple(t.std)
    raise ConfigError(f"model.input_norm must be imagenet or kinetics400, got {norm!r}")


class RenormalizingConv3d(nn.Conv3d):
    """A Conv3d whose input, normalised with ImageNet's statistics, is first re-normalised with others:
    ``x * scale + shift`` per channel. ``scale`` and ``shift`` follow from the config, so they are not saved:
    state dicts keep torchvision's keys and shapes."""

    def __init__(self, conv: nn.Conv3d, norm: str):
        super().__init__(  # on "meta": no memory, no random numbers drawn for weights replaced at once
            conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, bias=False, device="meta"
        )
        self.weight, self.bias = conv.weight, conv.bias  # the same parameters, keeping their initialisation
        self.norm = norm
        m0, s0 = (torch.tensor(v) for v in norm_stats("imagenet"))
        m1, s1 = (torch.tensor(v) for v in norm_stats(norm))
        # (x_in * s0 + m0 - m1) / s1: the same pixel normalised with (m1, s1) instead of (m0, s0)
        self.register_buffer("scale", (s0 / s1).view(1, -1, 1, 1, 1), persistent=False)
        self.register_buffer("shift", ((m0 - m1) / s1).view(1, -1, 1, 1, 1), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x * self.scale + self.shift)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, input_norm={self.norm}"


def with_input_norm(net: R3D18, norm: str) -> R3D18:
    """``net`` with a first convolution that feeds it inputs in ``norm``'s statistics (ImageNet: as it is)."""
    if norm != "imagenet":
        net.stem[0] = RenormalizingConv3d(net.stem[0], norm)
    return net


@dataclass
class LoadReport:
    """What loading pretrained weights into one network did."""

    source: str
    loaded: int  # parameters and buffers taken from the weights
    missing: list[str] = field(default_factory=list)  # the network's keys the weights lack: kept as initialised
    unexpected: list[str] = field(default_factory=list)  # keys of the weights the network has no place for
    reinitialised: list[str] = field(default_factory=list)  # head keys whose shape differs: kept as initialised


def load_pretrained(model: TwoStream, cfg: ModelConfig) -> dict[str, LoadReport]:
    """Load ``cfg.pretrained`` into the networks of ``model`` named in ``cfg.pretrained_streams``."""
    if cfg.pretrained == "none":
        return {}
    streams = [s for s in model.streams if s in cfg.pretrained_streams]
    if not streams:
        raise ConfigError(
            f"model.pretrained={cfg.pretrained} but model.pretrained_streams={cfg.pretrained_streams} names none of "
            f"the networks this method trains ({list(model.streams)})"
        )
    if cfg.pretrained == TORCHVISION_K400 and cfg.layout == "mmaction":
        log.info("layout mmaction has max-pools torchvision's r3d_18 lacks: its weights start a different network")
    reports = {}
    for stream in streams:
        state = _weights_for(cfg, stream)
        reports[stream] = _load_into(model.nets[stream], state, cfg.pretrained)
        r = reports[stream]
        if backbone := [k for k in r.missing if not k.startswith(HEADS)]:
            log.warning("%s network: %s has no weights for %s: they keep their random init", stream, r.source, backbone)
        log.info(
            "%s network from %s: %d tensors loaded, head re-initialised: %s, missing: %s, unexpected: %s",
            stream,
            r.source,
            r.loaded,
            r.reinitialised or "none",
            r.missing or "none",
            r.unexpected or "none",
        )
    return reports


def _weights_for(cfg: ModelConfig, stream: str) -> dict[str, Tensor]:
    """The state dict ``cfg.pretrained`` holds for ``stream``'s network."""
    if cfg.pretrained == TORCHVISION_K400:
        return _torchvision_k400()
    path = Path(cfg.pretrained)
    if not path.exists():
        raise ConfigError(
            f"model.pretrained={cfg.pretrained} is neither none, {TORCHVISION_K400} nor an existing file or run folder"
        )
    ckpt = _read(path)
    if isinstance(ckpt, dict) and {"model", "config"} <= ckpt.keys():
        return _from_run(checkpoint.validate_checkpoint(ckpt, path), path, cfg, stream)
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else ckpt
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: neither a tgsemi checkpoint nor a state dict (a dict of tensors)")
    return {k.removeprefix("module."): v for k, v in state.items()}  # saved from a DDP-wrapped model


def _read(path: Path) -> object:
    """A run folder's last checkpoint, or what a file holds (a checkpoint or a state dict), tensors only."""
    if path.is_dir():
        return checkpoint.load(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, AttributeError, OSError) as exc:
        raise CheckpointError(f"{path}: refused or unreadable weights ({type(exc).__name__}: {exc})") from None


def _torchvision_k400() -> dict[str, Tensor]:
    from torchvision.models.video import R3D_18_Weights

    weights = R3D_18_Weights.KINETICS400_V1
    try:
        return weights.get_state_dict(progress=False, check_hash=True)
    except (OSError, RuntimeError) as e:
        cache_dir = Path(torch.hub.get_dir()) / "checkpoints"
        raise ConfigError(
            f"model.pretrained={TORCHVISION_K400}: cannot get {weights.url} ({e}); without internet, copy that "
            f"file into {cache_dir}"
        ) from e


def _from_run(ckpt: dict, path: Path, cfg: ModelConfig, stream: str) -> dict[str, Tensor]:
    """A tgsemi checkpoint's network of ``stream``, if its input statistics are the ones ours gets."""
    prefix = f"nets.{stream}."
    nets = sorted({k.split(".")[1] for k in ckpt["model"] if k.startswith("nets.")})
    if stream not in nets:
        raise ConfigError(
            f"model.pretrained={path} has no {stream} network (it has {nets}): "
            f"set model.pretrained_streams, or export the network you want with `tgsemi export` and pass that file"
        )
    theirs = input_norm(config_from_dict(ckpt["config"]).model, stream)
    if theirs != input_norm(cfg, stream):
        raise ConfigError(
            f"the {stream} network of {path} expects inputs normalised with {theirs} statistics, this one gets "
            f"{input_norm(cfg, stream)}: set model.input_norm={theirs}"
        )
    return {k.removeprefix(prefix): v for k, v in ckpt["model"].items() if k.startswith(prefix)}


def _load_into(net: nn.Module, state: dict[str, Tensor], source: str) -> LoadReport:
    """``state`` into ``net``: heads of another shape skipped, any other shape difference refused."""
    own = net.state_dict()
    reinit = [k for k in state if k in own and k.startswith(HEADS) and state[k].shape != own[k].shape]
    clash = [k for k in state if k in own and k not in reinit and state[k].shape != own[k].shape]
    if clash:
        shapes = "; ".join(f"{k}: {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in clash[:8])
        raise CheckpointError(
            f"{source}: {len(clash)} tensor(s) differ in shape from this network's (weights vs network): {shapes}"
            f"{' ...' if len(clash) > 8 else ''}; is model.width or model.layout another than the weights'?"
        )
    usable = {k: v for k, v in state.items() if k in own and k not in reinit}
    if not usable:
        raise CheckpointError(
            f"{source}: none of its {len(state)} keys (e.g. {sorted(state)[:3]}) is a key of this network "
            f"(e.g. {sorted(own)[:3]})"
        )
    net.load_state_dict(usable, strict=False)
    return LoadReport(
        source=source,
        loaded=len(usable),
        missing=sorted(set(own) - set(usable) - set(reinit)),  # also BatchNorm counters, which torch fills silently
        unexpected=sorted(set(state) - set(own)),
        reinitialised=reinit,
    )
