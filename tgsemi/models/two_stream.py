"""Two independent R3D-18 networks, one per modality; only RGB is needed at test time."""

from __future__ import annotations

from torch import Tensor, nn

from tgsemi.config import ModelConfig
from tgsemi.errors import ArgumentError
from tgsemi.models.pretrained import input_norm, load_pretrained, with_input_norm
from tgsemi.models.r3d import R3D18, BNGroups, StreamOutput

STREAMS = ("rgb", "tg")


class TwoStream(nn.Module):
    """RGB and/or TG networks with no shared weights, run on a dict of clips keyed by stream."""

    def __init__(self, nets: dict[str, R3D18]):
        super().__init__()
        unknown = sorted(set(nets) - set(STREAMS))
        if not nets or unknown:
            raise ArgumentError(f"streams must be a non-empty subset of {STREAMS}, got {sorted(nets)}")
        self.nets = nn.ModuleDict({s: nets[s] for s in STREAMS if s in nets})

    @property
    def streams(self) -> tuple[str, ...]:
        return tuple(self.nets.keys())

    @property
    def primary(self) -> str:
        """The stream used for inference: RGB when present (the TG net only teaches it)."""
        return "rgb" if "rgb" in self.nets else self.streams[0]

    def forward(
        self, inputs: dict[str, Tensor], n_project: int = 0, groups: BNGroups | None = None
    ) -> dict[str, StreamOutput]:
        """Each stream's clips through its network; ``n_project`` and ``groups`` as for ``R3D18``."""
        unknown = sorted(set(inputs) - set(self.nets))
        if unknown:
            raise ArgumentError(f"no network for stream(s) {unknown}; this model has {list(self.streams)}")
        return {name: self.nets[name](x, n_project, groups) for name, x in inputs.items()}


def create_model(
    cfg: ModelConfig, num_classes: int, streams: tuple[str, ...], projection: bool, pretrained: bool = False
) -> TwoStream:
    """One R3D-18 per stream, each fed its input in the statistics ``model.input_norm`` resolves to.

    ``pretrained``: load ``model.pretrained`` into the networks of ``model.pretrained_streams`` (a run
    starting; not one resuming or loaded for evaluation, whose own weights replace these), else random init.
    """
    if len(set(streams)) != len(streams):
        raise ArgumentError(f"duplicate streams in {streams}")
    dim = cfg.projection_dim if projection else None
    model = TwoStream(
        {
            s: with_input_norm(
                R3D18(
                    num_classes,
                    cfg.width,
                    cfg.dropout,
                    dim,
                    layout=cfg.layout,
                    bn_eps=cfg.bn_eps,
                    bn_momentum=cfg.bn_momentum,
                    projection_init_std=cfg.projection_init_std,
                ),
                input_norm(cfg, s),
            )
            for s in streams
        }
    )
    if pretrained:
        load_pretrained(model, cfg)
    return model
