"""Packaging: a fast torch-free ``import tgsemi``, version ranges in pyproject.toml and exact pins in
requirements.txt, extras that bring what each optional feature imports, and a core without them."""

import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

import tgsemi
from tgsemi.extras import EXTRAS

tomllib = pytest.importorskip("tomllib")  # Python 3.11+
ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _python(code: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300, cwd=cwd or ROOT
    )


def _requirements(path: Path) -> dict[str, Requirement]:
    lines = [line.split("#")[0].strip() for line in path.read_text().splitlines()]
    return {(r := Requirement(line)).name: r for line in lines if line and not line.startswith("-")}


def test_import_tgsemi_does_not_import_torch():
    code = "import sys, tgsemi; print(tgsemi.__version__, sorted(m for m in sys.modules if m.startswith('torch')))"
    done = _python(code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [tgsemi.__version__, "[]"]


def test_top_level_names_are_the_modules_objects():
    from tgsemi.config import load_config
    from tgsemi.data.video import read_frames
    from tgsemi.models import create_model
    from tgsemi.runs import eval_run, load_run
    from tgsemi.tg import temporal_gradient

    expected = [load_run, eval_run, read_frames, temporal_gradient, create_model, load_config]
    assert [getattr(tgsemi, f.__name__) for f in expected] == expected
    assert {f.__name__ for f in expected} <= set(dir(tgsemi)) & set(tgsemi.__all__)
    with pytest.raises(AttributeError, match="no attribute 'load_runs'"):
        tgsemi.load_runs  # noqa: B018


def test_pyproject_asks_for_ranges_and_requirements_pin_them():
    core = {(r := Requirement(s)).name: r for s in PYPROJECT["dependencies"]}
    pinned = _requirements(ROOT / "requirements.txt")
    for name in ("torch", "torchvision"):
        assert not any(s.operator == "==" for s in core[name].specifier), core[name]  # the user's build stays
        (exact,) = pinned[name].specifier
        assert exact.operator == "==" and core[name].specifier.contains(exact.version), (core[name], exact)
    extras = {e: {Requirement(s).name for s in reqs} for e, reqs in PYPROJECT["optional-dependencies"].items()}
    for module, (dist, extra) in EXTRAS.items():
        assert dist in extras[extra], f"{module}: {dist} is not in the [{extra}] extra"
        assert dist not in core, f"{dist} is an extra's, not a core dependency"
    everything = set(core) | {n for e in ("notebooks", "decord") for n in extras[e]}
    assert everything <= set(pinned), "make and CI install every extra: requirements.txt lists them"
    dev = _requirements(ROOT / "requirements-dev.txt")
    assert extras["export"] <= {n for n, r in dev.items() if any(s.operator == "==" for s in r.specifier)}


BLOCKER = (
    "import sys\n"
    "for m in {blocked}:\n"
    "    sys.modules[m] = None  # as if not installed: importing it raises ModuleNotFoundError\n"
)


@pytest.mark.slow  # trains in a subprocess
def test_core_trains_and_evaluates_without_the_extras(tiny_root, tmp_path):
    blocked = sorted({*EXTRAS, "IPython", "jupyterlab", "torchcodec"})
    code = BLOCKER.format(blocked=blocked) + (
        "import pkgutil, importlib, tgsemi\n"
        "for m in pkgutil.walk_packages(tgsemi.__path__, 'tgsemi.'):\n"
        "    if not m.name.startswith(('tgsemi.widgets', 'tgsemi.__main__')):  # __main__ runs the CLI\n"
        "        importlib.import_module(m.name)\n"
        "from tgsemi.cli import main\n"
        "assert main(['train', 'synthetic_tiny', '--out', sys.argv[1], 'data.root=' + sys.argv[2],\n"
        "             'train.max_steps=2']) == 0\n"
        "assert main(['eval', sys.argv[1]]) == 0\n"
        "from tgsemi.errors import MissingExtraError, ConfigError\n"
        "try:\n"
        "    import tgsemi.widgets\n"
        "except MissingExtraError as e:\n"
        "    print('widgets:', e)\n"
        "try:\n"
        "    tgsemi.read_frames(sys.argv[3], [0], backend='decord')\n"
        "except ConfigError as e:\n"
        "    print('decord:', e)\n"
    )
    video = tiny_root / (tiny_root / "testlist01.txt").read_text().split()[0]
    done = _python(code, str(tmp_path / "run"), str(tiny_root), str(video), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "run" / "checkpoints" / "last.pt").is_file()
    hint = "pip install 'tgsemi[notebooks]'"
    assert f"widgets: the notebook widgets needs ipywidgets, which is not installed: {hint}" in done.stdout
    assert "decord: video backend 'decord' is not installed: pip install 'tgsemi[decord]'" in done.stdout
