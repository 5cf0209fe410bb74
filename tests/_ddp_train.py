"""Launched by torchrun from test_engine.py: train, then dump this rank's weights and BN types.

``python tests/_ddp_train.py OUT [--preset NAME] [dotted.key=value ...]`` (default preset: synthetic_tiny)."""

import json
import sys
from pathlib import Path

import torch
from torch import nn

from tgsemi import distributed
from tgsemi.config import load_config
from tgsemi.engine import train

out, args = Path(sys.argv[1]), sys.argv[2:]
preset = "synthetic_tiny"
if args[:1] == ["--preset"]:
    preset, args = args[1], args[2:]
net = train(load_config(preset, args), out)
torch.save(net.state_dict(), out / f"rank{distributed.rank()}.pt")
bn = sorted({type(m).__name__ for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)})
(out / f"rank{distributed.rank()}.json").write_text(json.dumps({"batchnorm": bn}))
distributed.cleanup()
