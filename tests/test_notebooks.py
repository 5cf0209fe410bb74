"""The five notebooks run top to bottom headless (nbclient) in quick mode on a
fresh workspace, draw figures, and save the state of widgets that show images."""

from __future__ import annotations

import base64

import av
import ipywidgets as widgets
import nbformat
import pytest
from nbclient import NotebookClient

from _notebook_env import NAMES, NOTEBOOKS, REPO, code_cells, errors, kernel_env, outputs, session_home

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_committed_notebooks_are_clean_tutorials():
    """Committed without outputs; each opens with a title and ends pointing to the GPU recipe."""
    assert NAMES == [
        "01_temporal_gradient",
        "02_semi_supervised_training",
        "03_robustness_probes",
        "04_gradcam_attention",
        "05_tsne_embeddings",
    ]
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        assert all(not c.outputs and c.execution_count is None for c in code_cells(nb)), path.name
        assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# "), path.name
        assert "tgsemi train ucf101_20pct" in nb.cells[-1].source, path.name


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """An empty ``notebooks/`` folder to run the kernels in, as from a checkout."""
    path = tmp_path_factory.mktemp("checkout") / "notebooks"
    path.mkdir()
    return path


def _images(state: dict) -> list[bytes]:
    """Decoded ``value`` buffers of the saved Image widgets."""
    return [
        base64.b64decode(b["data"])
        for m in state.values()
        if m["model_name"] == "ImageModel"
        for b in m.get("buffers", [])
        if b["path"] == ["value"]
    ]


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_headless(name, workdir, tmp_path_factory):
    home = session_home(tmp_path_factory)
    nb = nbformat.read(REPO / "notebooks" / f"{name}.ipynb", as_version=4)
    client = NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(workdir)}})
    client.execute(env=kernel_env(home))

    assert not errors(nb)
    assert all(c.execution_count for c in code_cells(nb))
    assert any("image/png" in o.get("data", {}) for o in outputs(nb)), "no figure drawn"
    views = [o.data[WIDGET_VIEW]["model_id"] for o in outputs(nb) if WIDGET_VIEW in o.get("data", {})]
    state = nb.metadata.widgets[WIDGET_STATE]["state"]
    assert views and all(v in state for v in views), "widget views without saved state"
    images = _images(state)
    assert images and all(im.startswith(PNG_MAGIC) for im in images), "widgets show no images"
    # The kernels honoured TGSEMI_HOME: nothing beside the notebooks, everything in the workspace.
    assert not any(workdir.parent.glob("*/*")) and not (workdir.parent / "runs").exists()
    assert (home / "data" / "demo-quick" / "trainlist01.txt").exists()


@pytest.mark.slow
def test_notebooks_shared_their_runs(tmp_path_factory):
    """After the notebooks: one trained run per method, reused rather than retrained."""
    home = session_home(tmp_path_factory)
    for method in ("fixmatch", "tg_fixmatch"):
        done = list((home / "runs" / "notebooks").glob(f"{method}_*_seed0/checkpoints/last.pt"))
        assert len(done) == 1, (method, done)


# The panels' failure paths, which a notebook run does not show.


def _find(panel: widgets.Widget, kind: type, description: str | None = None) -> widgets.Widget | None:
    """The first widget of ``kind`` (and ``description``) inside ``panel``, depth first."""
    if isinstance(panel, kind) and description in (None, getattr(panel, "description", None)):
        return panel
    for child in getattr(panel, "children", ()):
        found = _find(child, kind, description)
        if found is not None:
            return found
    return None


def test_explorer_follows_the_video_and_reports_unreadable_paths(tiny_root, tmp_path):
    from tgsemi.widgets import tg_explorer

    clip = sorted(tiny_root.glob("*/*.avi"))[0]
    with av.open(str(clip)) as container:
        n = container.streams.video[0].frames
    panel = tg_explorer(videos={"clip": str(clip)})
    frame, gap = _find(panel, widgets.IntSlider, "frame"), _find(panel, widgets.IntSlider, "interval")
    assert frame.max == n - 2  # the last frame with a successor
    gap.value = 5
    assert frame.max == n - 6
    image = _find(panel, widgets.Image).value
    _find(panel, widgets.Text).value = str(tmp_path / "missing.avi")
    info = panel.children[-1].value
    assert "missing.avi" in info and "does not exist" in info
    assert _find(panel, widgets.Image).value == image


def test_training_monitor_shows_and_reraises_a_failed_run(monkeypatch, tmp_path):
    from tgsemi.errors import ConfigError
    from tgsemi.widgets import training

    def broken(cfg, out):
        raise ConfigError("data.root: no such folder")

    monkeypatch.setenv("TGSEMI_HOME", str(tmp_path))
    monkeypatch.setenv("TGSEMI_QUICK", "1")
    monkeypatch.setattr(training, "train_config", lambda *args: None)
    monkeypatch.setattr(training, "train", broken)
    monitor = training.training_monitor("fixmatch")
    with pytest.raises(ConfigError, match="no such folder"):
        monitor.start(wait=True)
    assert "training failed" in monitor.status.value and "no such folder" in monitor.status.value
    assert not monitor.button.disabled and not monitor.method.disabled


def test_robustness_probe_builds_a_test_set_per_selection_and_leaves_the_clean_one_alone(tiny_runs):
    from tgsemi.widgets import robustness_probe

    path = tiny_runs["fixmatch"]
    panel = robustness_probe([path])
    clean = panel.clean[path]
    first = panel.corrupted[1][path]
    assert clean.corruption is None and first.corruption is not None
    assert panel.images["clean"].value != panel.images["corrupted"].value  # contrast at severity 3 shows
    panel.severity.value = 5
    assert panel.corrupted[0] == ("contrast", 5) and panel.corrupted[1][path] is not first
    assert first.corruption.keywords == {"name": "contrast", "severity": 3}  # the earlier set is untouched
    assert panel.clean[path] is clean and clean.corruption is None


def test_workspace_load_resolves_relative_data_paths_without_touching_the_run(tiny_runs, monkeypatch, tmp_path):
    from dataclasses import replace

    from tgsemi.runs import load_run
    from tgsemi.widgets import workspace

    run = load_run(tiny_runs["fixmatch"])
    relative = replace(run, data=run.data.model_copy(update={"root": "d/t", "test_list": None}))  # an older run
    monkeypatch.setenv("TGSEMI_HOME", str(tmp_path))
    monkeypatch.setattr(workspace, "load_run", lambda path: relative)
    loaded = workspace.load(tiny_runs["fixmatch"])
    assert loaded.data.root == str(tmp_path / "d" / "t")
    assert relative.data.root == "d/t"  # the run it was given keeps its own paths
    assert loaded.data.test_list is None  # unset lists stay unset
    assert (
        workspace.load(tiny_runs["fixmatch"]) is not run and load_run(tiny_runs["fixmatch"]).data.root == run.data.root
    )


def test_viewers_take_a_run_folder_and_any_video_file(tiny_runs, tmp_path):
    """Notebook item: point the Grad-CAM viewer and the robustness probe at your own run and videos."""
    from tgsemi.runs import load_run
    from tgsemi.widgets import gradcam_viewer, robustness_probe

    video = load_run(tiny_runs["tg_fixmatch"]).dataset("test").paths[2]
    own = tmp_path / "my clip.avi"
    own.write_bytes(video.read_bytes())  # outside any data root, of no known class
    viewer = gradcam_viewer([tiny_runs["tg_fixmatch"]], videos=[own])
    assert viewer.video.value == str(own)  # offered first
    viewer.target.value = "true"  # a file has no true class: the map explains the prediction
    assert "predicts" in viewer.captions[0].value and "(right)" not in viewer.captions[0].value
    probe = robustness_probe([tiny_runs["tg_fixmatch"]], videos=[own])
    assert probe.video.value == str(own) and "not known" in probe.predictions.value
    assert probe.images["clean"].value != probe.images["corrupted"].value
