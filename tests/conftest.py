import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared"
BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_script(name: str) -> ModuleType:
    """``benchmarks/NAME.py`` as a module (benchmarks/ is no package)."""
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory) -> Path:
    """The `tiny` synthetic dataset, built once per test session (seconds)."""
    from tgsemi.data.synth import make_dataset

    return make_dataset(tmp_path_factory.mktemp("data") / "tiny", preset="tiny", seed=0)


@pytest.fixture(scope="session")
def tiny_runs(tiny_root, tmp_path_factory) -> dict[str, Path]:
    """A fixmatch and a tg_fixmatch run on the tiny set, 4 steps each (seconds):
    trained weights in the real checkpoint format, for the analysis tools."""
    from tgsemi.config import load_config
    from tgsemi.engine import train

    out = tmp_path_factory.mktemp("runs")
    for method in ("fixmatch", "tg_fixmatch"):
        train(
            load_config("synthetic_tiny", [f"data.root={tiny_root}", f"method={method}", "train.max_steps=4"]),
            out / method,
        )
    return {method: out / method for method in ("fixmatch", "tg_fixmatch")}
