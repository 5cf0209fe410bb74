"""R3D-18 with a width option and the method's heads, in two layouts.

``table4`` is supplement Table 4's network (no max-pool); ``mmaction`` is the one the authors'
code ran (MMAction2 ``ResNet3d`` depth 18: a 1x3x3 max-pool after the stem and a 2x1x1 temporal
max-pool after layer1). The pools have no parameters, so both layouts have the same parameters
under the same names. Layer names follow torchvision's ``r3d_18`` (``stem``, ``layer1``..``layer4``,
``fc``), so at width 64 a torchvision state_dict (e.g. its Kinetics-400 weights) loads into the backbone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tgsemi.errors import ArgumentError


@dataclass
class StreamOutput:
    """One network's outputs for a batch: everything the losses and analysis tools read."""

    logits: Tensor  # (N, K)
    features: list[Tensor]  # layer1..layer4 outputs (N, C_k, T_k, H_k, W_k), for feature alignment
    pooled: Tensor  # (N, 8 * width) globally averaged last stage, for t-SNE
    projection: Tensor | None = None  # projection head of the first n_project pooled rows


@dataclass(frozen=True)
class BNGroups:
    """How BatchNorm normalises one training batch: the row groups ``sizes``, each with its own
    statistics, and the first ``stats_rows`` rows (labeled and weak clips) feeding the running
    statistics. Handed to the forward call, so a batch's grouping lives exactly as long as it does."""

    sizes: tuple[int, ...]
    stats_rows: int


def bn_groups(split: str, n_l: int, n_u: int) -> BNGroups:
    """The grouping of a batch ``[labeled (n_l) | weak (n_u) | strong (n_u)]``: ``none`` one batch
    (the paper's), ``strong`` the strong views apart, ``labeled`` the labeled clips apart from both
    unlabeled views, ``views`` all three apart."""
    sizes = {"none": (n_l + 2 * n_u,), "strong": (n_l + n_u, n_u), "labeled": (n_l, 2 * n_u), "views": (n_l, n_u, n_u)}[
        split
    ]
    return BNGroups(tuple(s for s in sizes if s), stats_rows=n_l + n_u)


class SplitBatchNorm3d(nn.BatchNorm3d):
    """BatchNorm3d that, while training, can normalise groups of clips in a batch each
    with their own statistics.

    Strongly augmented clips vary far more than clean ones (RandAugment and cutout; for TG
    clips 12x the standard deviation), and a labeled clip's statistics differ from those
    of a batch dominated by unlabeled ones. Normalised together, the clean clips train at
    a scale that the statistics used at test time do not reproduce. Running statistics
    come from the first ``groups.stats_rows`` rows whatever the grouping; parameters and buffers
    are those of a BatchNorm3d, so checkpoints do not depend on the option.
    """

    def forward(self, x: Tensor, groups: BNGroups | None = None) -> Tensor:
        if not self.training or groups is None or len(groups.sizes) < 2:
            return super().forward(x)
        parts = list(x.split(list(groups.sizes)))
        if groups.sizes[0] == groups.stats_rows:  # BatchNorm's own pass over it keeps the buffers
            out = [super().forward(parts.pop(0))]
        else:
            with torch.no_grad():
                super().forward(x[: groups.stats_rows])  # for the running statistics only
            out = []
        out += [F.batch_norm(p, None, None, self.weight, self.bias, True, 0.0, self.eps) for p in parts]
        return torch.cat(out)


class _Chain(nn.Sequential):
    """``nn.Sequential`` that hands a batch's ``BNGroups`` on to the layers that take them (a
    SyncBatchNorm swapped in by ``convert_sync_batchnorm`` does not: the two options exclude each other)."""

    def forward(self, x: Tensor, groups: BNGroups | None = None) -> Tensor:
        for layer in self:
            x = layer(x, groups) if isinstance(layer, (SplitBatchNorm3d, _Chain, BasicBlock)) else layer(x)
        return x


def _conv_bn(cin: int, cout: int, kernel, stride, padding, relu: bool) -> _Chain:
    layers = [nn.Conv3d(cin, cout, kernel, stride, padding, bias=False), SplitBatchNorm3d(cout)]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return _Chain(*layers)


class BasicBlock(nn.Module):
    """Two 3x3x3 conv-BN layers plus a (1x1x1 projected when the shape changes) shortcut."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = _conv_bn(cin, cout, 3, stride, 1, relu=True)
        self.conv2 = _conv_bn(cout, cout, 3, 1, 1, relu=False)
        self.downsample = _conv_bn(cin, cout, 1, stride, 0, relu=False) if stride != 1 or cin != cout else None
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor, groups: BNGroups | None = None) -> Tensor:
        shortcut = x if self.downsample is None else self.downsample(x, groups)
        return self.relu(self.conv2(self.conv1(x, groups), groups) + shortcut)


def _stage(cin: int, cout: int, stride: int) -> _Chain:
    return _Chain(BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1))


def projection_head(in_dim: int, dim: int) -> nn.Sequential:
    """3-layer MLP; the final affine-free BN keeps embeddings centred for the contrastive loss."""
    return nn.Sequential(
        nn.Linear(in_dim, dim, bias=False),
        nn.BatchNorm1d(dim),
        nn.ReLU(inplace=True),
        nn.Linear(dim, dim, bias=False),
        nn.BatchNorm1d(dim),
        nn.ReLU(inplace=True),
        nn.Linear(dim, dim, bias=False),
        nn.BatchNorm1d(dim, affine=False),
    )


Layout = Literal["mmaction", "table4"]


class R3D18(nn.Module):
    """3D ResNet-18. ``table4``: an L x 112 x 112 clip ends as L/8 x 7 x 7 x (8 * width);
    ``mmaction``: an L x 224 x 224 clip ends as L/16 x 7 x 7 (time rounded up: 8 frames end as 1).

    ``bn_eps`` / ``bn_momentum`` go to every BatchNorm of the backbone (the authors': 1e-3 / 0.1);
    the projection head keeps PyTorch's 1e-5 / 0.1, as the authors' heads do (mmcv's default);
    ``projection_init_std``: None keeps PyTorch's Linear init in the projection head, a number
    draws its weights from N(0, std) (the authors' code: 0.01)."""

    def __init__(
        self,
        num_classes: int,
        width: int = 64,
        dropout: float = 0.5,
        projection_dim: int | None = 512,
        layout: Layout = "table4",
        bn_eps: float = 1e-5,
        bn_momentum: float = 0.1,
        projection_init_std: float | None = None,
    ):
        super().__init__()
        if layout not in ("mmaction", "table4"):
            raise ArgumentError(f"layout must be 'mmaction' or 'table4', got {layout!r}")
        self.layout = layout
        w1, w2, w3, w4 = (width * m for m in (1, 2, 4, 8))
        self.stem = _conv_bn(3, w1, (3, 7, 7), (1, 2, 2), (1, 3, 3), relu=True)
        self.layer1 = _stage(w1, w1, 1)
        if layout == "mmaction":  # pools appended inside stem / layer1: no parameter moves or is renamed
            self.stem.append(nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)))
            self.layer1.append(nn.MaxPool3d((2, 1, 1), (2, 1, 1)))
        self.layer2 = _stage(w1, w2, 2)
        self.layer3 = _stage(w2, w3, 2)
        self.layer4 = _stage(w3, w4, 2)
        self.num_features = w4
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(w4, num_classes)
        for m in self.modules():  # the backbone's; the authors' projection heads keep the defaults
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eps, m.momentum = bn_eps, bn_momentum
        self.projector = projection_head(w4, projection_dim) if projection_dim else None
        self._init_weights(projection_init_std)

    def _init_weights(self, projection_std: float | None) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm3d, nn.BatchNorm1d)) and m.affine:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.fc.weight, std=0.01)
        nn.init.zeros_(self.fc.bias)
        if projection_std is not None and self.projector is not None:
            for m in self.projector.modules():
                if isinstance(m, nn.Linear):
                    nn.init.normal_(m.weight, std=projection_std)
                    if m.bias is not None:
                        nn.init.zeros_(m.bias)

    def forward(self, x: Tensor, n_project: int = 0, groups: BNGroups | None = None) -> StreamOutput:
        """``x``: (N, 3, T, H, W); ``features`` are the outputs of layer1 (after its temporal
        pool in ``mmaction``) to layer4. The projection runs here, not in the loss, so that DDP sees
        every parameter used inside forward. ``groups``: the batch's BatchNorm grouping while
        training (``bn_groups``; None: one batch)."""
        x = self.stem(x, groups)
        features = []
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = stage(x, groups)
            features.append(x)
        pooled = x.mean(dim=(2, 3, 4))
        logits = self.fc(self.dropout(pooled))
        projection = None
        if n_project > 0:
            if self.projector is None:
                raise ArgumentError(f"n_project={n_project} but this network was built without a projection head")
            projection = self.projector(pooled[:n_project])
        return StreamOutput(logits, features, pooled, projection)
