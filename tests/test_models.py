from typing import get_args

import pytest
import torch
import torch.nn.functional as F
from torchvision.models.video import r3d_18

from tgsemi.config import ModelConfig, TrainConfig
from tgsemi.models import R3D18, TwoStream, create_model
from tgsemi.models.r3d import BNGroups, SplitBatchNorm3d, bn_groups


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize(
    "layout,size,shapes",
    [
        ("table4", 112, [(64, 8, 56, 56), (128, 4, 28, 28), (256, 2, 14, 14), (512, 1, 7, 7)]),
        # MMAction2 ResNet3d: the 1x3x3 max-pool halves H, W after the stem, the 2x1x1 pool halves T after layer1
        ("mmaction", 224, [(64, 4, 56, 56), (128, 2, 28, 28), (256, 1, 14, 14), (512, 1, 7, 7)]),
    ],
)
def test_stage_shapes_at_width_64(layout, size, shapes):
    model = R3D18(num_classes=101, projection_dim=None, layout=layout).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 8, size, size))
    assert [tuple(f.shape[1:]) for f in out.features] == shapes
    assert out.pooled.shape == (1, 512) and out.logits.shape == (1, 101)
    assert out.projection is None


def test_mmaction_pools_sit_after_the_stem_relu_and_after_layer1():
    torch.manual_seed(0)
    table4 = R3D18(num_classes=5, width=8, projection_dim=None).eval()
    mma = R3D18(num_classes=5, width=8, projection_dim=None, layout="mmaction").eval()
    mma.load_state_dict(table4.state_dict())  # strict: the pools add no parameters
    x = torch.randn(2, 3, 6, 40, 40)
    with torch.no_grad():
        got = mma(x).features
        x = F.max_pool3d(table4.stem(x), (1, 3, 3), (1, 2, 2), (0, 1, 1))
        want = [F.max_pool3d(table4.layer1(x), (2, 1, 1), (2, 1, 1))]
        for stage in (table4.layer2, table4.layer3, table4.layer4):
            want.append(stage(want[-1]))
    assert [tuple(f.shape[2:]) for f in got] == [(3, 10, 10), (2, 5, 5), (1, 3, 3), (1, 2, 2)]
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("layout", ["table4", "mmaction"])
def test_parameters_and_weights_match_torchvision_r3d18(layout):
    ours = R3D18(num_classes=101, projection_dim=None, layout=layout).eval()
    ref = r3d_18(weights=None, num_classes=101).eval()
    assert n_params(ours) == n_params(ref)
    ours.load_state_dict(ref.state_dict())  # strict: same names and shapes
    if layout == "table4":  # same network: same outputs
        x = torch.randn(2, 3, 4, 32, 32)
        with torch.no_grad():
            torch.testing.assert_close(ours(x).logits, ref(x), rtol=1e-4, atol=1e-5)


def test_layouts_share_parameter_names_and_count():
    nets = [R3D18(num_classes=101, projection_dim=512, layout=layout) for layout in ("table4", "mmaction")]
    assert n_params(nets[0]) == n_params(nets[1]) > 0
    assert {k: v.shape for k, v in nets[0].state_dict().items()} == {
        k: v.shape for k, v in nets[1].state_dict().items()
    }
    assert ModelConfig().layout == "table4"
    with pytest.raises(ValueError, match="layout"):
        R3D18(num_classes=3, width=4, layout="torchvision")


def _bns(module: torch.nn.Module) -> list[torch.nn.modules.batchnorm._BatchNorm]:
    return [m for m in module.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]


def test_bn_eps_and_momentum_reach_every_backbone_batchnorm_and_not_the_projection_head():
    cfg = ModelConfig(width=4, projection_dim=8, bn_eps=1e-3, bn_momentum=0.05, layout="mmaction")
    model = create_model(cfg, num_classes=6, streams=("rgb", "tg"), projection=True)
    heads = [m for net in model.nets.values() for m in _bns(net.projector)]
    backbone = [m for m in _bns(model) if all(m is not h for h in heads)]
    # per network: stem 1, layer1 4, layers 2-4 5 each (with the shortcut's); projection head 3
    assert len(backbone) == 2 * (1 + 4 + 3 * 5) and len(heads) == 2 * 3
    assert all(m.eps == 1e-3 and m.momentum == 0.05 for m in backbone)
    assert all(m.eps == 1e-5 and m.momentum == 0.1 for m in heads)  # the authors' heads: mmcv's default
    assert all(net.layout == "mmaction" for net in model.nets.values())
    default = _bns(R3D18(num_classes=6, width=4, projection_dim=8))
    assert all(m.eps == 1e-5 and m.momentum == 0.1 for m in default)  # PyTorch's defaults, as before
    # the momentum is the one the running statistics move with
    net = model.nets["rgb"]
    stem_bn = net.stem[1]
    seen = []
    stem_bn.register_forward_hook(lambda m, inp, out: seen.append(inp[0].detach().clone()))
    net(torch.randn(4, 3, 4, 32, 32), n_project=4)
    torch.testing.assert_close(stem_bn.running_mean, 0.05 * seen[0].mean((0, 2, 3, 4)))


def test_projection_init_std():
    kw = dict(num_classes=6, width=16, projection_dim=128)
    torch.manual_seed(0)
    ref = R3D18(**kw, projection_init_std=0.01)
    linears = [m for m in ref.projector.modules() if isinstance(m, torch.nn.Linear)]
    assert len(linears) == 3 and all(m.bias is None for m in linears)  # as the authors': no biases
    for m in linears:
        assert abs(m.weight.std().item() - 0.01) < 5e-4 and abs(m.weight.mean().item()) < 5e-4
    assert abs(ref.fc.weight.std().item() - 0.01) < 1e-3  # the classifier: N(0, 0.01) either way
    torch.manual_seed(0)
    default = R3D18(**kw)  # PyTorch's Linear init: U(+-1/sqrt(fan_in)), std 1/sqrt(3 fan_in) = 0.051
    for m in (m for m in default.projector.modules() if isinstance(m, torch.nn.Linear)):
        bound = m.in_features**-0.5
        assert m.weight.abs().max() <= bound and abs(m.weight.std().item() - bound / 3**0.5) < 2e-3
    # only the projection head is drawn differently
    same = [k for k in ref.state_dict() if not k.startswith("projector.")]
    assert all(torch.equal(ref.state_dict()[k], default.state_dict()[k]) for k in same)
    model = create_model(ModelConfig(width=4, projection_dim=64, projection_init_std=0.02), 6, ("rgb",), True)
    assert abs(model.nets["rgb"].projector[0].weight.std().item() - 0.02) < 2e-3


@pytest.mark.parametrize("layout,last", [("table4", (1, 2, 2)), ("mmaction", (1, 1, 1))])
def test_width_16_projection_and_backward(layout, last):
    model = R3D18(num_classes=7, width=16, projection_dim=32, layout=layout)
    x = torch.randn(4, 3, 8, 32, 32)
    out = model(x, n_project=3)
    assert [f.shape[1] for f in out.features] == [16, 32, 64, 128]
    assert out.features[-1].shape[2:] == last
    assert out.pooled.shape == (4, 128) and out.logits.shape == (4, 7)
    assert out.projection.shape == (3, 32)
    # final BN has no affine parameters: the projection is standardised per dimension
    torch.testing.assert_close(out.projection.mean(0), torch.zeros(32), atol=1e-5, rtol=0)
    (out.logits.sum() + out.projection.pow(2).sum()).backward()
    assert all(p.grad is not None for p in model.parameters())


def test_projection_without_head_is_an_error():
    model = R3D18(num_classes=3, width=4, projection_dim=None)
    with pytest.raises(ValueError, match="projection head"):
        model(torch.randn(2, 3, 2, 16, 16), n_project=2)


def test_channels_last_3d_matches_contiguous():
    torch.manual_seed(0)
    model = R3D18(num_classes=5, width=8, dropout=0.0, projection_dim=16)  # train mode: batch-stat BN
    x = torch.randn(3, 3, 4, 32, 32)
    out = model(x, n_project=3)
    out_cl = model.to(memory_format=torch.channels_last_3d)(x.to(memory_format=torch.channels_last_3d), n_project=3)
    assert out_cl.features[0].is_contiguous(memory_format=torch.channels_last_3d)
    # batch-statistics BN divides by small variances: rounding differs with the thread count
    torch.testing.assert_close(out_cl.logits, out.logits, rtol=1e-4, atol=1e-4)
    # BN over 3 rows in the projection head amplifies float rounding
    torch.testing.assert_close(out_cl.projection, out.projection, rtol=1e-3, atol=1e-3)
    for a, b in zip(out_cl.features, out.features):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_bf16_autocast_forward_is_close_to_float32():
    torch.manual_seed(0)
    model = R3D18(num_classes=5, width=8, projection_dim=16).eval()
    x = torch.randn(2, 3, 4, 32, 32)
    with torch.no_grad():
        ref = model(x).pooled
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(x.to(memory_format=torch.channels_last_3d))
    assert out.features[0].dtype == torch.bfloat16
    torch.testing.assert_close(out.pooled.float(), ref, rtol=0.05, atol=0.05)


def test_create_model_builds_independent_streams():
    cfg = ModelConfig(width=4, projection_dim=8)
    model = create_model(cfg, num_classes=6, streams=("rgb", "tg"), projection=True)
    rgb, tg = model.nets["rgb"], model.nets["tg"]
    assert model.streams == ("rgb", "tg") and model.primary == "rgb"
    assert not {id(p) for p in rgb.parameters()} & {id(p) for p in tg.parameters()}
    assert n_params(model) == 2 * n_params(rgb)
    x = torch.randn(4, 3, 2, 16, 16)
    out = model({"rgb": x, "tg": x}, n_project=2)
    assert set(out) == {"rgb", "tg"}
    assert out["rgb"].projection.shape == (2, 8)
    assert not torch.equal(out["rgb"].logits, out["tg"].logits)  # separately initialised
    assert set(model({"rgb": x})) == {"rgb"}  # inference runs RGB only


def test_single_stream_model_and_bad_streams():
    model = create_model(ModelConfig(width=4), num_classes=3, streams=("tg",), projection=False)
    assert model.primary == "tg" and model.nets["tg"].projector is None
    with pytest.raises(ValueError, match="rgb"):
        model({"rgb": torch.randn(2, 3, 2, 16, 16)})
    with pytest.raises(ValueError):
        TwoStream({"flow": R3D18(3, width=4)})


def _normalised(x, bn):
    """Batch normalisation of ``x`` with its own statistics, written out."""
    mean = x.mean(dim=(0, 2, 3, 4), keepdim=True)
    var = x.var(dim=(0, 2, 3, 4), unbiased=False, keepdim=True)
    return (x - mean) / torch.sqrt(var + bn.eps) * bn.weight.view(1, -1, 1, 1, 1) + bn.bias.view(1, -1, 1, 1, 1)


@pytest.mark.parametrize("groups", [(2, 4, 4), (6, 4)])  # views apart; strong views apart
def test_split_batchnorm_normalises_each_group_apart(groups):
    torch.manual_seed(5)
    split, plain = SplitBatchNorm3d(4), torch.nn.BatchNorm3d(4)
    with torch.no_grad():
        split.weight.uniform_(0.5, 2), split.bias.uniform_(-1, 1)
    plain.load_state_dict(split.state_dict())
    labeled = torch.randn(2, 4, 2, 3, 3) - 3
    weak = torch.randn(4, 4, 2, 3, 3)
    strong = 10 * torch.randn(4, 4, 2, 3, 3) + 5  # strong views: another scale entirely
    x = torch.cat([labeled, weak, strong])
    out = split(x, BNGroups(groups, stats_rows=6))
    for got, part in zip(out.split(list(groups)), x.split(list(groups))):
        torch.testing.assert_close(got, _normalised(part, split))
    plain(torch.cat([labeled, weak]))  # running statistics: those of the clean rows alone
    torch.testing.assert_close(split.running_mean, plain.running_mean)
    torch.testing.assert_close(split.running_var, plain.running_var)
    assert split.num_batches_tracked == plain.num_batches_tracked == 1
    together = split(x)  # no grouping given: one batch, as the paper does
    torch.testing.assert_close(together, _normalised(x, split))
    split.eval()
    plain.load_state_dict(split.state_dict())
    torch.testing.assert_close(split(weak, BNGroups(groups, 6)), plain.eval()(weak))  # eval ignores the split


@pytest.mark.parametrize(
    "split,sizes", [("none", (10,)), ("strong", (6, 4)), ("labeled", (2, 8)), ("views", (2, 4, 4))]
)
def test_bn_groups_follow_the_row_layout(split, sizes):
    assert bn_groups(split, n_l=2, n_u=4) == BNGroups(sizes, stats_rows=6)  # statistics: labeled + weak
    assert bn_groups(split, n_l=2, n_u=0).sizes == (2,)  # supervised: nothing to split


def test_every_configurable_bn_split_has_groups():
    for split in get_args(TrainConfig.model_fields["split_bn"].annotation):
        assert sum(bn_groups(split, 3, 5).sizes) == 13


def test_split_batchnorm_is_in_every_backbone_norm_and_keeps_state_dict_keys():
    net = R3D18(num_classes=5, width=4, projection_dim=None)
    norms = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm3d)]
    assert norms and all(isinstance(m, SplitBatchNorm3d) for m in norms)
    assert set(net.state_dict()) == set(R3D18(num_classes=5, width=4, projection_dim=None).state_dict())


def test_bn_groups_reach_every_norm_of_the_network():
    """With each row group normalised apart, a group's outputs are those of the group run alone:
    true only if the grouping reaches every BatchNorm, shortcuts included."""
    torch.manual_seed(3)
    net = R3D18(num_classes=5, width=4, dropout=0.0, projection_dim=None).train()
    x = torch.cat([torch.randn(2, 3, 4, 16, 16), 5 * torch.randn(4, 3, 4, 16, 16) + 2])
    groups = bn_groups("views", n_l=2, n_u=2)
    grouped = net(x, groups=groups).logits
    for rows in ((0, 2), (2, 4), (4, 6)):
        torch.testing.assert_close(grouped[slice(*rows)], net(x[slice(*rows)]).logits)
    assert not torch.allclose(grouped, net(x).logits)  # one batch for all: another result
