"""Analysis tools: corruptions (against PIL), Grad-CAM, separability, CLI and report on tiny runs."""

import json
from functools import partial

import numpy as np
import pytest
import torch
from PIL import Image, ImageEnhance

from tgsemi.analysis.corruptions import (
    EXTENDED,
    NO_SEVERITY,
    PAPER,
    SEVERITIES,
    SUITES,
    corrupt,
    enhance_brightness,
    enhance_contrast,
)
from tgsemi.analysis.embedding import separability, tsne
from tgsemi.analysis.gradcam import gradcam, gradcam_video, overlay
from tgsemi.analysis.robustness import select, suite_markdown, summarize
from tgsemi.cli import main, severities
from tgsemi.data.annotations import Sample
from tgsemi.data.datasets import EvalDataset
from tgsemi.data.transforms import MEAN, STD
from tgsemi.errors import TgsemiError
from tgsemi.models.r3d import R3D18
from tgsemi.runs import eval_run, load_run


def moving_pattern(t: int = 24, h: int = 40, w: int = 48) -> np.ndarray:
    """A smooth sinusoidal pattern drifting over time: every corruption changes it measurably."""
    tt, yy, xx, cc = np.meshgrid(np.arange(t), np.arange(h), np.arange(w), np.arange(3), indexing="ij")
    return (127 + 100 * np.sin(0.25 * xx + 0.15 * yy + 0.4 * tt + cc)).astype(np.uint8)


@pytest.mark.parametrize("name", PAPER + EXTENDED)  # the other suites: tests/test_corruptions.py
def test_corruption_keeps_shape_and_dtype_and_distortion_grows_with_severity(name):
    frames = moving_pattern()
    outs = [corrupt(frames, name, s, np.random.default_rng(3)) for s in SEVERITIES]
    assert all(o.shape == frames.shape and o.dtype == np.uint8 for o in outs)
    distortion = [np.abs(o.astype(int) - frames).mean() for o in outs]
    assert distortion[0] > 0
    assert all(a <= b + 1e-9 for a, b in zip(distortion, distortion[1:])), distortion
    if name not in NO_SEVERITY:
        assert distortion[-1] > distortion[0]


@pytest.mark.parametrize("name", ["contrast", "brightness", "grayscale", "blur", "jpeg"])
def test_appearance_corruption_uses_one_draw_for_all_frames(name):
    frame = np.random.default_rng(0).integers(0, 256, (1, 32, 40, 3), dtype=np.uint8)
    static = np.repeat(frame, 6, axis=0)
    for seed in range(5):
        out = corrupt(static, name, 5, np.random.default_rng(seed))
        assert (out == out[:1]).all(), "a static video must stay static"


def test_grayscale_is_pil_luma_in_every_channel():
    frames = np.random.default_rng(1).integers(0, 256, (2, 16, 20, 3), dtype=np.uint8)
    out = corrupt(frames, "grayscale")
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()
    assert np.array_equal(out[0, ..., 0], np.asarray(Image.fromarray(frames[0]).convert("L")))


@pytest.mark.parametrize("factor", [0.2, 0.5, 0.93, 1.4, 2.5])
def test_contrast_and_brightness_match_pil_image_enhance(factor):
    frames = np.random.default_rng(2).integers(0, 256, (3, 24, 30, 3), dtype=np.uint8)
    frames[1] //= 3  # frames with different means: contrast uses each frame's own mean grey
    contrast, brightness = enhance_contrast(frames, factor), enhance_brightness(frames, factor)
    for i, frame in enumerate(frames):
        image = Image.fromarray(frame)
        assert np.array_equal(contrast[i], np.asarray(ImageEnhance.Contrast(image).enhance(factor)))
        assert np.array_equal(brightness[i], np.asarray(ImageEnhance.Brightness(image).enhance(factor)))


def test_severity_3_draws_enhance_factors_over_imgaugs_default_range():
    grey = np.full((1, 4, 4, 3), 100, dtype=np.uint8)
    values = [int(corrupt(grey, "brightness", 3, np.random.default_rng(s))[0, 0, 0, 0]) for s in range(200)]
    assert 50 <= min(values) < 60 and 140 < max(values) <= 150  # factor ~ U(0.5, 1.5)


def test_corruption_is_applied_to_raw_frames_before_the_temporal_gradient(tmp_path):
    folder = tmp_path / "static"
    folder.mkdir()
    frame = Image.fromarray(np.random.default_rng(0).integers(40, 200, (48, 64, 3), dtype=np.uint8))
    for i in range(20):
        frame.save(folder / f"img_{i + 1:05d}.jpg")
    samples = [Sample("static", 0, 20)]

    def item(corruption):
        ds = EvalDataset(tmp_path, samples, 4, 2, resize=32, crop=28, corruption=corruption)
        x = ds[0]
        return {k: (x[k] * STD[:, None, None, None] + MEAN[:, None, None, None]).round() for k in ("rgb", "tg")}

    clean, dark = item(None), item(partial(corrupt, name="brightness", severity=5))
    assert not torch.equal(clean["rgb"], dark["rgb"])  # the corruption did act
    assert (dark["tg"] == 127).all()  # ...on every frame alike, before the TG


def test_suites_are_selected_by_name_or_replaced_by_corruptions():
    assert select() == {"paper": list(PAPER), "extended": list(EXTENDED)}  # tgsemi's original eight
    assert list(select(["all"])) == list(SUITES) and select(corruptions=["jpeg", "jpeg"]) == {"selected": ["jpeg"]}
    for bad in ({"suites": ["nope"]}, {"corruptions": ["nope"]}, {"suites": ["paper"], "corruptions": ["jpeg"]}):
        with pytest.raises(TgsemiError):
            select(**bad)
    assert severities("1-5") == [1, 2, 3, 4, 5] and severities("1,3-4") == [1, 3, 4] and severities("2") == [2]


def test_bad_corruption_arguments_and_cli_choices_name_the_culprit(capsys):
    from tgsemi.analysis.gradcam import LAYERS
    from tgsemi.models import STREAMS

    frames = np.zeros((2, 8, 8, 3), np.uint8)
    with pytest.raises(TgsemiError, match="'fog_typo'"):
        corrupt(frames, "fog_typo")
    with pytest.raises(TgsemiError, match="severity of jpeg"):
        corrupt(frames, "jpeg", severity=6)
    # the CLI's choices are the library's lists: an unknown one is argparse's usage error listing them
    for option, value, options in (("--layer", "fc", LAYERS), ("--modality", "flow", STREAMS)):
        with pytest.raises(SystemExit):
            main(["gradcam", "run", "test:0", option, value, "--out", "x"])
        err = capsys.readouterr().err
        assert f"argument {option}" in err and repr(value) in err and all(o in err for o in options)


def test_mpc_rpc_and_relative_robustness_follow_their_definitions():
    acc = {"h264_crf": {"1": 70.0, "2": 50.0}, "reversal": {"1": 40.0, "2": 40.0}}  # reversal: no severity
    result = {
        "severities": [1, 2],
        "suites": {"mini-kinetics-c": ["h264_crf", "reversal"]},
        "models": [{"label": "A", "clean": 80.0, "acc": acc}, {"label": "B", "clean": 0.0, "acc": acc}],
    }
    for m in result["models"]:
        m["summary"] = summarize(m, result)
    a, b = (m["summary"]["mini-kinetics-c"] for m in result["models"])
    assert a == {"mPC": 50.0, "rPC": 62.5, "relative_robustness": 0.625}  # mean over severities, then corruptions
    assert b["rPC"] is None and b["relative_robustness"] is None
    table = suite_markdown(result, "mini-kinetics-c")
    assert "| H.264 CRF | 60.0 (-20.0) | 60.0 (+60.0) |" in table and "| **rPC** (%) | 62.5 | n/a |" in table


def test_gradcam_maps_have_clip_shape_and_unit_range():
    torch.manual_seed(0)
    net = R3D18(5, width=4, projection_dim=None).eval()
    clip = torch.randn(3, 8, 32, 32)
    for layer in ("layer3", "layer4"):
        cam, pred = gradcam(net, clip, layer)
        assert cam.shape == (8, 32, 32) and cam.min() >= 0 and cam.max() <= 1 and cam.max() > 0
        assert pred == int(net(clip[None]).logits.argmax())
    cam, _ = gradcam(net, clip, target=3)
    assert cam.shape == (8, 32, 32)
    assert all(p.requires_grad and p.grad is None for p in net.parameters())  # left as found


def test_overlay_blends_the_colour_map():
    frames = np.full((2, 4, 4, 3), 200, dtype=np.uint8)
    assert np.array_equal(overlay(frames, np.zeros((2, 4, 4)), alpha=0.0), frames)
    cold = overlay(frames, np.zeros((2, 4, 4)), alpha=1.0)
    hot = overlay(frames, np.ones((2, 4, 4)), alpha=1.0)
    assert (cold[..., 2] > cold[..., 0]).all() and (hot[..., 0] > hot[..., 2]).all()  # jet: blue low, red high


def test_separability_orders_separated_above_mixed_features():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 15)
    centres = rng.normal(0, 10, (4, 16))
    separated = centres[labels] + rng.normal(0, 1, (60, 16))
    mixed = rng.normal(0, 1, (60, 16))
    good, bad = separability(separated, labels), separability(mixed, labels)
    assert good["silhouette"] > 0.5 > bad["silhouette"]
    assert good["knn_acc"] == 100.0 and bad["knn_acc"] < 60
    emb = tsne(separated, perplexity=10)
    assert emb.shape == (60, 2) and separability(emb, labels)["silhouette"] > 0.5


def test_gradcam_video_writes_grid_gif_and_predictions(tiny_runs, tmp_path):
    runs = [tiny_runs["fixmatch"], tiny_runs["tg_fixmatch"]]
    paths = gradcam_video(runs, "test:1", tmp_path, target="true")
    rows = json.loads(paths["json"].read_text())["rows"]
    assert [(r["label"], r["modality"]) for r in rows] == [
        ("Baseline-RGB", "rgb"),
        ("Ours-RGB", "rgb"),
        ("Ours-TG", "tg"),
    ]
    gif = Image.open(paths["gif"])
    assert gif.n_frames == load_run(runs[0]).cfg.data.clip_len
    assert Image.open(paths["png"]).size[0] > 200
    video = load_run(runs[0]).dataset("test").paths[1]
    assert len(json.loads(gradcam_video(runs, video, tmp_path, modalities=["rgb"])["json"].read_text())["rows"]) == 2
    with pytest.raises(TgsemiError, match="labelled"):
        gradcam_video(runs, video, tmp_path, target="true")


def test_cli_analysis_commands_on_tiny_runs(tiny_runs, tmp_path):
    fm, tg = str(tiny_runs["fixmatch"]), str(tiny_runs["tg_fixmatch"])
    assert (
        main(
            [
                "robustness",
                fm,
                tg,
                "--corruptions",
                "grayscale",
                "jitter",
                "--severities",
                "1",
                "5",
                "--out",
                str(tmp_path / "rob"),
            ]
        )
        == 0
    )
    res = json.loads((tmp_path / "rob" / "robustness.json").read_text())
    assert [m["label"] for m in res["models"]] == ["Baseline-RGB", "Ours-RGB"]
    # the shared decoding pass agrees with the evaluator, clean and corrupted
    run = load_run(tg)
    assert res["models"][1]["clean"] == pytest.approx(eval_run(run, "test")["top1"])
    jittered = eval_run(run, "test", corruption=partial(corrupt, name="jitter", severity=5))["top1"]
    assert res["models"][1]["acc"]["jitter"]["5"] == pytest.approx(jittered)
    assert "| Grayscale |" in (tmp_path / "rob" / "robustness.md").read_text()
    assert (tmp_path / "rob" / "robustness.png").stat().st_size > 0
    assert main(["robustness", fm, "--modality", "tg", "--out", str(tmp_path / "x")]) == 2  # no TG network
    assert (
        main(
            [
                "robustness",
                fm,
                tg,
                "--suite",
                "paper",
                "--severities",
                "2-3",
                "--threads",
                "1",
                "--out",
                str(tmp_path / "paper"),
            ]
        )
        == 0
    )
    res = json.loads((tmp_path / "paper" / "robustness.json").read_text())
    assert res["suites"] == {"paper": list(PAPER)} and res["severities"] == [2, 3]
    ours = res["models"][1]
    contrast = (ours["acc"]["contrast"]["2"] + ours["acc"]["contrast"]["3"]) / 2
    mpc = (
        contrast + (ours["acc"]["brightness"]["2"] + ours["acc"]["brightness"]["3"]) / 2 + ours["acc"]["grayscale"]["2"]
    ) / 3
    assert ours["summary"]["paper"]["mPC"] == pytest.approx(mpc)
    assert "| **mPC** |" in (tmp_path / "paper" / "robustness.md").read_text()
    assert main(["robustness", fm, "--suite", "nope", "--out", str(tmp_path / "y")]) == 2

    assert main(["tsne", fm, tg, "--out", str(tmp_path / "t" / "tsne.png")]) == 0
    emb = json.loads((tmp_path / "t" / "tsne.json").read_text())
    assert {"silhouette", "knn_acc"} <= set(emb["models"][0]["tsne"]) and (tmp_path / "t" / "tsne.png").exists()

    assert main(["gradcam", fm, tg, "test:0", "--layer", "layer4", "--out", str(tmp_path / "g")]) == 0
    assert (tmp_path / "g" / "gradcam_test0.gif").exists()


def test_report_has_tables_figures_and_computed_verdicts(tiny_runs, tmp_path):
    from tgsemi.analysis.report import make_report

    runs = [tiny_runs["fixmatch"], tiny_runs["tg_fixmatch"]]
    text = make_report(runs, tmp_path, corruptions=["grayscale", "brightness", "reversal"]).read_text()
    for needle in (
        "| Corruption | Baseline-RGB | Ours-RGB |",
        "| Grayscale |",
        "| Model | Training Acc. | Testing Acc. | Acc. Gap |",
        "| Ours-TG |",
        "![t-SNE](tsne.png)",
    ):
        assert needle in text
    for figure in ("robustness.png", "tsne.png", "gradcam_test0.png", "gradcam_test0.gif"):
        assert (tmp_path / figure).stat().st_size > 0
    analysis = json.loads((tmp_path / "analysis.json").read_text())
    verdicts = {f["claim"]: f["verdict"] for f in analysis["findings"]}
    assert any("grayscale" in c for c in verdicts) and "**not checked**" in text  # no FixMatch-TG run given
    assert any("temporal corruptions" in c for c in verdicts)  # reversal was tested
    rows = {r["label"]: r for r in analysis["overfitting"]["rows"]}
    base, ours = rows["Baseline-RGB"], rows["Ours-RGB"]
    gap_claim = next(f for f in analysis["findings"] if "gap of the RGB" in f["claim"])
    assert gap_claim["verdict"] == ("holds" if ours["gap"] < base["gap"] else "does not hold")
    train = eval_run(load_run(runs[0]), "train")["top1"]
    assert base["train"] == pytest.approx(train) and base["gap"] == pytest.approx(base["train"] - base["test"])
