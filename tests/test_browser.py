"""The notebooks in a real JupyterLab and a real browser (Debian's chromium driven
by Playwright): every notebook runs, its widgets render, and moving a slider
changes what a widget shows, i.e. the kernel round trip works. Screenshots go
to a temporary folder, and to docs/screenshots/ with TGSEMI_SAVE_SCREENSHOTS=1.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

from _notebook_env import NAMES, NOTEBOOKS, REPO, code_cells, errors, kernel_env, session_home

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SLIDERS = {  # notebook -> the slider to move (its description)
    "01_temporal_gradient": "frame",
    "02_semi_supervised_training": "smoothing",
    "03_robustness_probes": "severity",
    "04_gradcam_attention": "frame",
    "05_tsne_embeddings": "perplexity",
}
LAB_SETTINGS = {  # no news or update checks (no network), every cell kept in the DOM
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false", "checkForUpdates": False},
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
}
KERNEL_IDLE = "() => /\\| Idle/.test(document.querySelector('.jp-StatusBar-Widget')?.innerText || '')"
# Run All marks every cell queued at once: done when the first has a number and none is queued.
RUN_FINISHED = """() => {
  const prompts = Array.from(document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')).map(e => e.textContent);
  return prompts.length > 0 && /\\[\\d+\\]/.test(prompts[0]) && !prompts.some(p => p.includes('*'));
}"""


def _require_chromium() -> None:
    if CHROMIUM.exists():
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{CHROMIUM} is missing; in CI it must be installed (.ci/run does apt-get install chromium)")
    pytest.skip(f"{CHROMIUM} is not installed (apt-get install -y chromium); CI runs these tests")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Lab:
    """A JupyterLab server on a copy of the notebooks, stopped by its own PID."""

    def __init__(self, root: Path, home: Path):
        self.token, self.port = "tgsemi-test", _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.dir = root / "lab" / "notebooks"
        self.dir.mkdir(parents=True)
        for nb in NOTEBOOKS:
            shutil.copy(nb, self.dir)
        for rel, value in LAB_SETTINGS.items():
            (root / "settings" / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / "settings" / rel).write_text(json.dumps(value))
        env = {
            **kernel_env(home),
            "JUPYTERLAB_SETTINGS_DIR": str(root / "settings"),
            "JUPYTERLAB_WORKSPACES_DIR": str(root / "workspaces"),
            "JUPYTER_RUNTIME_DIR": str(root / "runtime"),
            "JUPYTER_CONFIG_DIR": str(root / "config"),
            "IPYTHONDIR": str(root / "ipython"),
        }
        self.log = root / "lab.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "jupyterlab",
                    "--allow-root",
                    "--no-browser",
                    f"--port={self.port}",
                    "--ServerApp.ip=127.0.0.1",
                    f"--ServerApp.token={self.token}",
                    f"--notebook-dir={root / 'lab'}",
                    "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
                ],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 90
        while True:
            try:
                self.api("GET", "status")
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    pytest.fail(f"JupyterLab did not start:\n{self.log.read_text()[-3000:]}")
                time.sleep(0.5)

    def api(self, method: str, path: str):
        req = urllib.request.Request(f"{self.url}/api/{path}?token={self.token}", method=method)
        with urllib.request.urlopen(req, timeout=10) as r:
            body = r.read()
        return json.loads(body) if body else None

    def close_sessions(self) -> None:
        """Shut down the notebooks' kernels (each holds a torch process)."""
        for session in self.api("GET", "sessions"):
            self.api("DELETE", f"sessions/{session['id']}")

    def stop(self) -> None:
        """Stop the server we started (it shuts its kernels down on SIGTERM)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    _require_chromium()
    server = Lab(tmp_path_factory.mktemp("jupyterlab"), session_home(tmp_path_factory))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    _require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            tmp_path_factory.mktemp("chromium_profile"),
            executable_path=str(CHROMIUM),
            headless=True,
            args=FLAGS,
            viewport={"width": 1400, "height": 1000},
        )
        yield context
        context.close()


def _screenshot_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.getbasetemp() / "screenshots"


@pytest.mark.parametrize("name", NAMES)
def test_notebook_in_jupyterlab(name, lab, browser, tmp_path_factory):
    shots = _screenshot_dir(tmp_path_factory)
    shots.mkdir(exist_ok=True)
    page = browser.new_page()
    try:
        page.goto(f"{lab.url}/lab/tree/notebooks/{name}.ipynb?token={lab.token}&reset")
        page.wait_for_function(KERNEL_IDLE, timeout=120_000)
        page.locator(".lm-MenuBar-item", has_text="Run").first.click()
        page.locator(".lm-Menu-itemLabel:text-is('Run All Cells')").click()
        page.wait_for_function(RUN_FINISHED, timeout=400_000, polling=500)

        page.keyboard.press("Control+s")  # then read the outputs back from the saved file
        page.wait_for_selector(".jp-mod-current.jp-mod-dirty", state="detached", timeout=30_000)
        saved = nbformat.read(lab.dir / f"{name}.ipynb", as_version=4)
        assert not errors(saved)
        prompts = page.locator(".jp-CodeCell .jp-InputPrompt").all_inner_texts()
        assert len(prompts) == len(code_cells(saved))
        assert all(re.fullmatch(r"\[\d+\]:", p.strip()) for p in prompts), prompts

        assert page.get_by_text("Error displaying widget").count() == 0
        assert page.locator(".jupyter-widgets").count() > 0
        slider = page.locator(".widget-slider", has=page.locator(".widget-label", has_text=SLIDERS[name])).first
        cell = page.locator(".jp-CodeCell", has=slider).first  # notebooks 03, 04 show a second panel below
        images = cell.locator(".jp-OutputArea img")
        before = images.evaluate_all("els => els.map(e => e.src)")
        assert before, "the widget shows no image"
        slider.locator(".noUi-handle").press("ArrowRight")
        page.wait_for_function(
            "([cell, before]) => Array.from(cell.querySelectorAll('.jp-OutputArea img'))"
            ".map(e => e.src).join() !== before.join()",
            arg=[cell.element_handle(), before],
            timeout=120_000,
        )

        cell.scroll_into_view_if_needed()
        cell.screenshot(path=shots / f"{name}.png")
        if os.environ.get("TGSEMI_SAVE_SCREENSHOTS") == "1":
            (REPO / "docs" / "screenshots").mkdir(parents=True, exist_ok=True)
            shutil.copy(shots / f"{name}.png", REPO / "docs" / "screenshots" / f"{name}.png")
    except Exception:
        page.screenshot(path=shots / f"FAILED_{name}.png")  # what the browser showed, for the log
        print(f"screenshot of the failure: {shots / f'FAILED_{name}.png'}")
        raise
    finally:
        page.close()
        lab.close_sessions()
