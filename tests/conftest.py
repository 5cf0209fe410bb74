from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared"


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory) -> Path:
    """The `tiny` synthetic dataset, built once per test session (seconds)."""
    from tgsemi.data.synth import make_dataset

    return make_dataset(tmp_path_factory.mktemp("data") / "tiny", preset="tiny", seed=0)
