"""Synchronised BatchNorm across processes, on GPU and on CPU.

The reference normalises each layer over the whole global batch (SyncBN): with 5
clips per GPU, per-GPU statistics are noisy and differ from the test-time ones.
``torch.nn.SyncBatchNorm`` refuses CPU tensors, so on CPU (gloo) tgsemi uses
``CpuSyncBatchNorm``, the same computation written with differentiable
all-reduces: it is what makes a multi-process CPU run, and the tests, compute
what a multi-GPU run computes.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from tgsemi import distributed


class CpuSyncBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics are those of every rank's rows together."""

    def _check_input_dim(self, x: Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected an input of at least 2 dimensions (N, C, ...), got {tuple(x.shape)}")

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or distributed.world_size() == 1:
            return super().forward(x)
        dims = [0, *range(2, x.dim())]
        shape = [1, -1] + [1] * (x.dim() - 2)
        xf = x.float()
        # two passes (mean, then squared deviations) keep the variance exact in float32
        total = distributed.all_reduce_with_grad(torch.cat([xf.sum(dims), xf.new_tensor([x.numel() / x.shape[1]])]))
        n = total[-1].detach()
        mean = total[:-1] / n
        centred = xf - mean.view(shape)
        var = distributed.all_reduce_with_grad(centred.square().sum(dims)) / n
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                momentum = self.momentum if self.momentum is not None else 1 / float(self.num_batches_tracked)
                self.running_mean.lerp_(mean.to(self.running_mean.dtype), momentum)
                self.running_var.lerp_((var * n / (n - 1)).to(self.running_var.dtype), momentum)
        y = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)


def convert_sync_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """Every BatchNorm of ``module`` synchronised over the process group: torch's
    SyncBatchNorm on accelerators, ``CpuSyncBatchNorm`` on CPU. Parameter and buffer
    names stay those of BatchNorm, so checkpoints do not depend on it."""
    if device.type != "cpu":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        sync = CpuSyncBatchNorm(
            module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats
        )
        sync.load_state_dict(module.state_dict())
        return sync.train(module.training)
    for name, child in module.named_children():
        module.add_module(name, convert_sync_batchnorm(child, device))
    return module
