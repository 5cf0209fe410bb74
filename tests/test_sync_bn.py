"""CpuSyncBatchNorm: two gloo processes, each with half a batch, compute what one BatchNorm
computes on the whole batch (outputs, input gradients, summed parameter gradients, running stats)."""

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from tgsemi.models.sync_bn import CpuSyncBatchNorm, convert_sync_batchnorm


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _inputs(dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    shape = (6, 4, 3, 5, 5) if dim == 3 else (6, 4)
    return torch.randn(shape, generator=g) * 3 + 1, torch.randn(shape, generator=g)


def _bn(dim: int) -> nn.Module:
    torch.manual_seed(1)
    bn = (nn.BatchNorm3d if dim == 3 else nn.BatchNorm1d)(4, eps=1e-3, momentum=0.1)
    nn.init.normal_(bn.weight)
    nn.init.normal_(bn.bias)
    return bn


def _rank(rank: int, port: int, dim: int, out: dict) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        bn = convert_sync_batchnorm(_bn(dim), torch.device("cpu"))
        assert isinstance(bn, CpuSyncBatchNorm)
        x, w = _inputs(dim)
        x = x[rank * 3 : (rank + 1) * 3].clone().requires_grad_()
        y = bn(x)
        (y * w[rank * 3 : (rank + 1) * 3]).sum().backward()
        out[rank] = {
            "y": y.detach(),
            "x_grad": x.grad,
            "w_grad": bn.weight.grad,
            "b_grad": bn.bias.grad,
            "mean": bn.running_mean,
            "var": bn.running_var,
        }
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("dim", [3, 1])
def test_two_ranks_with_half_a_batch_each_equal_one_batchnorm_on_the_whole_batch(dim):
    with mp.Manager() as manager:
        out = manager.dict()
        mp.spawn(_rank, args=(_free_port(), dim, out), nprocs=2)
        r0, r1 = out[0], out[1]
    bn = _bn(dim)
    x, w = _inputs(dim)
    x.requires_grad_()
    y = bn(x)
    (y * w).sum().backward()
    close = dict(rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(torch.cat([r0["y"], r1["y"]]), y.detach(), **close)
    torch.testing.assert_close(torch.cat([r0["x_grad"], r1["x_grad"]]), x.grad, **close)
    # DDP sums (then averages) parameter gradients over ranks: their sum is the whole batch's
    torch.testing.assert_close(r0["w_grad"] + r1["w_grad"], bn.weight.grad, **close)
    torch.testing.assert_close(r0["b_grad"] + r1["b_grad"], bn.bias.grad, **close)
    for r in (r0, r1):
        torch.testing.assert_close(r["mean"], bn.running_mean, **close)
        torch.testing.assert_close(r["var"], bn.running_var, **close)


def test_single_process_and_eval_are_plain_batchnorm():
    bn = _bn(3)
    sync = convert_sync_batchnorm(_bn(3), torch.device("cpu"))
    x, _ = _inputs(3)
    torch.testing.assert_close(sync(x), bn(x))
    torch.testing.assert_close(sync.running_var, bn.running_var)
    torch.testing.assert_close(sync.eval()(x), bn.eval()(x))
    assert sync.state_dict().keys() == bn.state_dict().keys()
