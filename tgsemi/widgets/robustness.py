"""Table 5 and the wider corruption suites interactively: corrupt a test video, see what
each network receives and predicts."""

from __future__ import annotations

import html
from functools import partial
from pathlib import Path

import ipywidgets as widgets
import torch
from IPython.display import Markdown, clear_output, display

from tgsemi.analysis import labels, views_of
from tgsemi.analysis.corruptions import NO_SEVERITY, SEVERITIES, SUITES, TITLES, corrupt
from tgsemi.analysis.gradcam import to_frames
from tgsemi.analysis.robustness import SUITE_TITLES, robustness, suite_markdown
from tgsemi.data.datasets import EvalDataset
from tgsemi.widgets.images import captioned, image_slot, png
from tgsemi.widgets.workspace import as_list, video_choices

WIDTH = 180


@torch.no_grad()
def _probabilities(net: torch.nn.Module, clip: torch.Tensor) -> torch.Tensor:
    return net.eval()(clip[None]).logits.softmax(-1)[0]


def _choices(suite: str) -> list[tuple[str, str]]:
    return [(TITLES[name], name) for name in SUITES[suite]]


class RobustnessProbe(widgets.VBox):
    """Suite, corruption, severity and test video -> the clean and corrupted clip (RGB
    and TG, as the networks receive them) and every network's prediction on both.
    ``compute_table()`` (or the button) evaluates the whole test set under the
    suite's corruptions: Table 5 for ``paper``, mPC and rPC for every suite."""

    def __init__(self, runs, modality: str | None = None, videos: list[str | Path] | None = None):
        self.runs, self.modality = as_list(runs), modality
        self.views = views_of(self.runs, modality)
        self.names = labels(self.views)
        self.suite = widgets.Dropdown(
            options=[(SUITE_TITLES[s], s) for s in SUITES], value="paper", description="suite"
        )
        self.corruption = widgets.Dropdown(options=_choices("paper"), value="contrast", description="corruption")
        self.severity = widgets.IntSlider(
            3, min(SEVERITIES), max(SEVERITIES), description="severity", continuous_update=False
        )
        self.clean = {run.path: run.dataset("test") for run in self.runs}
        self.corrupted: tuple[tuple[str, int] | None, dict[Path, EvalDataset]] = (None, {})  # selection, sets
        self.video = widgets.Dropdown(
            options=video_choices(self.runs[0], videos), description="video", layout=widgets.Layout(width="520px")
        )
        self.images = {k: image_slot(WIDTH) for k in ("clean", "corrupted", "clean TG", "corrupted TG")}
        self.predictions = widgets.HTML()
        self.button = widgets.Button(
            description="suite table on the test set", icon="table", layout=widgets.Layout(width="auto")
        )
        self.table = widgets.Output()
        for w in (self.corruption, self.severity, self.video):
            w.observe(lambda _: self.draw(), "value")
        # new options select the suite's first corruption, which redraws
        self.suite.observe(lambda change: setattr(self.corruption, "options", _choices(change["new"])), "value")
        self.button.on_click(lambda _: self.compute_table())
        super().__init__(
            [
                widgets.HBox([self.suite, self.corruption, self.severity]),
                self.video,
                widgets.HBox([captioned(k, im) for k, im in self.images.items()]),
                self.predictions,
                self.button,
                self.table,
            ]
        )
        self.draw()

    def _dataset(self, run, corrupted: bool) -> EvalDataset:
        """The run's test set, clean or under the selected corruption (new sets for a new selection)."""
        if not corrupted:
            return self.clean[run.path]
        selection = (self.corruption.value, self.severity.value)
        if self.corrupted[0] != selection:
            self.corrupted = (selection, {r.path: r.dataset("test", corruption=self._corruption()) for r in self.runs})
        return self.corrupted[1][run.path]

    def _corruption(self) -> partial:
        return partial(corrupt, name=self.corruption.value, severity=self.severity.value)

    def _item(self, run, corrupted: bool) -> dict:
        video = self.video.value
        if isinstance(video, int):  # a test video
            return self._dataset(run, corrupted)[video]
        return run.file_dataset([video], corruption=self._corruption() if corrupted else None)[0]  # a file

    def draw(self) -> None:
        self.severity.disabled = self.corruption.value in NO_SEVERITY
        items = {run.path: (self._item(run, False), self._item(run, True)) for run in self.runs}
        clean, bad = items[self.runs[0].path]
        if not clean["ok"]:
            video = self.video.value
            path = self.clean[self.runs[0].path].paths[video] if isinstance(video, int) else video
            self.predictions.value = f"<span style='color:#b00'>{html.escape(str(path))} cannot be decoded</span>"
            return
        mid = clean["rgb"].shape[2] // 2  # (V, C, T, H, W): the middle frame of the clip
        for key, item, stream in (
            ("clean", clean, "rgb"),
            ("corrupted", bad, "rgb"),
            ("clean TG", clean, "tg"),
            ("corrupted TG", bad, "tg"),
        ):
            self.images[key].value = png(to_frames(item[stream][0])[mid], WIDTH)
        truth = self.runs[0].class_names[clean["label"]] if clean["label"] >= 0 else "not known (your video)"
        rows = [
            f"<tr><td>{name}</td>" + "".join(self._cell(run, m, item) for item in items[run.path]) + "</tr>"
            for name, (run, m) in zip(self.names, self.views)
        ]
        self.predictions.value = (
            f"true class: <b>{truth}</b><table><tr><th>network</th><th>clean</th>"
            f"<th>{TITLES[self.corruption.value]}</th></tr>{''.join(rows)}</table>"
        )

    @staticmethod
    def _cell(run, modality: str, item: dict) -> str:
        p = _probabilities(run.net(modality), item[modality][0])
        k = int(p.argmax())
        mark = "" if item["label"] < 0 else "&#10003;" if k == item["label"] else "&#10007;"
        return f"<td>{mark} {run.class_names[k]} ({100 * float(p[k]):.0f}%)</td>"

    def compute_table(self) -> dict:
        """Test-set top-1 of every network, clean and under the selected suite at the current severity."""
        self.button.disabled = True
        try:
            result = robustness(
                self.runs, severities=(self.severity.value,), modality=self.modality, suites=[self.suite.value]
            )
        finally:
            self.button.disabled = False
        with self.table:
            clear_output()
            display(Markdown(suite_markdown(result, self.suite.value)))
        return result


def robustness_probe(runs, modality: str | None = None, videos: list[str | Path] | None = None) -> RobustnessProbe:
    """``runs``: run folders, checkpoints or loaded runs; ``videos``: any video files to offer besides the
    test videos."""
    return RobustnessProbe(runs, modality, videos)
