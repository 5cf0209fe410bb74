"""Launched by torchrun from test_engine.py: train, then dump this rank's weights."""
import sys
from pathlib import Path

import torch

from tgsemi import distributed
from tgsemi.config import load_config
from tgsemi.engine import train

out, overrides = Path(sys.argv[1]), sys.argv[2:]
net = train(load_config("synthetic_tiny", overrides), out)
torch.save(net.state_dict(), out / f"rank{distributed.rank()}.pt")
distributed.cleanup()
