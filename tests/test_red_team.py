"""Red team: configs, arguments, start-up data checks, checkpoints and metrics files of the wrong shape.

Each case of issue 19 that was a silent acceptance, a hang or a traceback, asserted as the rule that now
refuses it: the project's error type, the culprit named, no traceback on the CLI, nothing written that
claims work that was not done. tests/test_hostile_inputs.py fuzzes overrides, YAML and list files;
these tests check the ranges and cross-checks themselves.
"""

from __future__ import annotations

import argparse
import re
import typing
from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import BaseModel

from tgsemi import checkpoint, cli, config
from tgsemi.cli import main as run_cli
from tgsemi.config import Config, load_config
from tgsemi.data.annotations import Sample, read_list, write_list
from tgsemi.data.video import BACKENDS, available_backends
from tgsemi.engine import train
from tgsemi.errors import ArgumentError, CheckpointError, ConfigError, DataCheckError
from tgsemi.runfiles import RunPaths, read_metrics
from tgsemi.runtime import pick_device

# --- every numeric config value has a range ----------------------------------------------------------


def numeric_fields(model: type[BaseModel], prefix: str = "") -> typing.Iterator[tuple[str, object]]:
    """(dotted key, field info) of every int or float key, however nested or optional."""
    for name, f in model.model_fields.items():
        if isinstance(f.annotation, type) and issubclass(f.annotation, BaseModel):
            yield from numeric_fields(f.annotation, f"{prefix}{name}.")
            continue
        kinds = set(typing.get_args(f.annotation)) | {f.annotation}
        kinds |= {t for k in list(kinds) for t in typing.get_args(k)}  # Annotated[int, ...] | Literal
        if {int, float} & kinds and not {bool} & kinds and typing.get_origin(f.annotation) is not typing.Literal:
            yield prefix + name, f


def constraints(annotation: object) -> list[object]:
    """The metadata of every ``Annotated`` inside a type (list items, tuple members, union members)."""
    found = [c for m in getattr(annotation, "__metadata__", ()) for c in getattr(m, "metadata", [m])]  # FieldInfo
    for arg in typing.get_args(annotation):
        found += constraints(arg)
    return found


def bounds(f) -> dict[str, float]:
    found = {}
    for m in [*f.metadata, *constraints(f.annotation)]:
        for attr in ("ge", "gt", "le", "lt"):
            if getattr(m, attr, None) is not None:
                found[attr] = getattr(m, attr)
    return found


def shaped(f, value: float) -> object:
    """``value`` as the key takes it: alone, or as every item of its list or tuple."""
    origin = typing.get_origin(f.annotation)
    return [value] * len(typing.get_args(f.annotation)) if origin is tuple else [value] if origin is list else value


def names(message: str, key: str) -> bool:
    """A line ``  KEY: ...`` or ``  KEY.N: ...`` (an item of it) in a ConfigError message."""
    return re.search(rf"^  {re.escape(key)}(\.\d+)?: ", message, re.M) is not None


NUMERIC = dict(numeric_fields(Config))


def test_every_numeric_config_key_has_a_lower_bound():
    unbounded = [key for key, f in NUMERIC.items() if not ({"ge", "gt"} & set(bounds(f)))]
    assert not unbounded, f"give these keys a range (pydantic Field ge/gt/le/lt): {unbounded}"
    assert "train.momentum" in NUMERIC and "seed" in NUMERIC  # the walk finds the keys at all


def outside(f) -> list[float]:
    """Values just outside each bound of a field."""
    b, eps = bounds(f), 1e-6
    values = []
    if "ge" in b:
        values.append(b["ge"] - (1 if isinstance(b["ge"], int) else eps))
    if "gt" in b:
        values.append(b["gt"])
    if "le" in b:
        values.append(b["le"] + (1 if isinstance(b["le"], int) else eps))
    if "lt" in b:
        values.append(b["lt"])
    return values


@pytest.mark.parametrize("key", sorted(NUMERIC))
def test_values_outside_a_range_are_refused_naming_the_key(key):
    for value in outside(NUMERIC[key]):
        with pytest.raises(ConfigError) as err:
            load_config("synthetic_tiny", [f"{key}={shaped(NUMERIC[key], value)}"])
        assert names(str(err.value), key), str(err.value)


@pytest.mark.parametrize(
    "override, key",
    [
        ("seed=-1", "seed"),
        (f"seed={2**32}", "seed"),
        ("seed=99999999999999999999999", "seed"),
        ("train.momentum=-0.5", "train.momentum"),
        ("train.momentum=1", "train.momentum"),
        ("train.weight_decay=-1e-4", "train.weight_decay"),
        ("train.clip_grad_norm=-1", "train.clip_grad_norm"),
        ("train.clip_grad_norm=0", "train.clip_grad_norm"),
        ("loss.unlabeled_weight=-1", "loss.unlabeled_weight"),
        ("loss.align_weight=-0.5", "loss.align_weight"),
        ("loss.contrast_weight=-2", "loss.contrast_weight"),
        ("data.crop_area=[0.9,0.1]", "data.crop_area"),
        ("data.crop_area=[0,1]", "data.crop_area"),
        ("data.crop_area=[0.5,1.5]", "data.crop_area"),
        ("data.crop=64", "data.crop"),  # the preset's resize is 32: test crops would be padded
        ("eval.crop=64", "eval.crop"),
        ("data.strong_ops_tg=[]", "data"),
        ("data.strong_ops_tg=[Rotate,Rotate]", "data"),
        ("loss.align_stages=[1,1]", "loss.align_stages"),
        ("loss.align_stages=[4]", "loss.align_stages"),
        ("data.backend=opencv", "data.backend"),
        ("data.root=''", "data.root"),
        ("data.train_list=''", "data.train_list"),
        ("data.per_class=3", "data.per_class"),  # without split_strategy per-class
        ("data.labeled_fraction=null", "data.labeled_fraction"),
        ("data.clip_len=1000000000", "data.clip_len"),
        ("model.width=1000000", "model.width"),
        ("train.batch_size=1000000000000", "train.batch_size"),
    ],
)
def test_issue_cases_are_refused_at_load_naming_the_key(override, key):
    with pytest.raises(ConfigError) as err:
        load_config("synthetic_tiny", [override])
    assert names(str(err.value), key), str(err.value)


def test_every_preset_still_loads():
    for name in config.preset_names():
        if name != "kinetics400":  # a base: its children choose per_class
            load_config(name)
    with pytest.raises(ConfigError, match="data.per_class"):
        load_config("kinetics400")


def test_the_seed_range_is_what_every_seeder_takes():
    top = config.MAX_SEED
    torch.Generator().manual_seed(top)
    np.random.default_rng([top, 1, 2])
    np.random.RandomState(top)  # sklearn's random_state, the narrowest
    with pytest.raises(ValueError):
        np.random.RandomState(top + 1)
    assert cli.SEED(str(top)) == top
    with pytest.raises(argparse.ArgumentTypeError):
        cli.SEED(str(top + 1))


def test_the_backend_choices_are_the_video_backends():
    field = Config.model_fields["data"].annotation.model_fields["backend"]
    (literal,) = [a for a in typing.get_args(field.annotation) if typing.get_origin(a) is typing.Literal]
    assert set(typing.get_args(literal)) == set(BACKENDS)


@pytest.mark.parametrize("loop", [["a.yaml"], ["a.yaml", "b.yaml"], ["a.yaml", "b.yaml", "c.yaml"]])
def test_a_base_chain_that_loops_is_named(tmp_path, loop):
    for name, base in zip(loop, loop[1:] + loop[:1]):
        (tmp_path / name).write_text(f"base: {tmp_path / base}\ntrain:\n  lr: 0.1\n")
    with pytest.raises(ConfigError, match="chain loops") as err:
        load_config(str(tmp_path / "a.yaml"))
    assert all(name in str(err.value) for name in loop)


def test_a_chain_that_reuses_a_base_without_looping_loads(tmp_path):
    (tmp_path / "a.yaml").write_text("base: synthetic_tiny\ntrain:\n  lr: 0.1\n")
    (tmp_path / "b.yaml").write_text(f"base: {tmp_path / 'a.yaml'}\ntrain:\n  lr: 0.05\n")
    assert load_config(str(tmp_path / "b.yaml")).train.lr == 0.05


# --- every CLI argument has a range ------------------------------------------------------------------


def options() -> typing.Iterator[tuple[str, argparse.Action]]:
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, p in sub.choices.items():
        for action in p._actions:
            yield name, action


def test_no_numeric_option_is_left_unchecked():
    raw = [f"{cmd} {a.option_strings or a.dest}" for cmd, a in options() if a.type in (int, float)]
    assert not raw
    devices = [a.type for _, a in options() if a.dest == "device"]
    assert devices and all(t is cli.device for t in devices)


def positional_stubs(cmd: str) -> list[str]:
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[cmd]
    args = []
    for a in sub._actions:
        if not a.option_strings and a.dest != "help":
            args.append("x")
        elif a.required:
            args += [a.option_strings[0], "x"]
    return args


NUMBER_TYPES = (cli.COUNT, cli.NATURAL, *cli.RANGES.values())


@pytest.mark.parametrize("cmd, action", [(c, a) for c, a in options() if a.type in NUMBER_TYPES and a.option_strings])
def test_a_numeric_option_out_of_range_is_a_one_line_usage_error(cmd, action, capsys):
    for bad in ("nan", "-1", "1e999", "abc"):
        with pytest.raises(SystemExit) as exit_:
            run_cli([cmd, *positional_stubs(cmd), action.option_strings[0], bad])
        assert exit_.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert action.option_strings[0] in err and "Traceback" not in err


@pytest.mark.parametrize(
    "argv, option",
    [
        (["eval", "RUN", "--clips", "0"], "--clips"),
        (["eval", "RUN", "--batch-size", "0"], "--batch-size"),
        (["eval", "RUN", "--num-workers", "-1"], "--num-workers"),
        (["eval", "RUN", "--device", "tpu"], "--device"),
        (["eval", "RUN", "--device", "cuda:0"], "--device"),
        (["tsne", "RUN", "--perplexity", "0", "--out", "f.png"], "--perplexity"),
        (["robustness", "RUN", "--severities", "0", "--out", "o"], "--severities"),
        (["robustness", "RUN", "--severities", "6", "--out", "o"], "--severities"),
        (["robustness", "RUN", "--severities", "4-2", "--out", "o"], "--severities"),
        (["robustness", "RUN", "--threads", "0", "--out", "o"], "--threads"),
        (["report", "RUN", "--clips", "0", "--out", "o"], "--clips"),
        (["split", "LIST", "--fraction", "1.5", "--out", "o"], "--fraction"),
        (["split", "LIST", "--seed", "-3", "--out", "o"], "--seed"),
        (["synth", "o", "--appearance-bias", "-0.1"], "--appearance-bias"),
        (["demo", "--seeds", "0", "-1"], "--seeds"),
        (["gradcam", "RUN", "VIDEO", "--target", "-2", "--out", "o"], "--target"),
    ],
)
def test_issue_arguments_are_refused_in_one_line(argv, option, capsys):
    with pytest.raises(SystemExit) as exit_:
        run_cli(argv)
    assert exit_.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert option in lines[-1] and not any("Traceback" in line for line in lines)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu_is_named_for_the_cli_and_the_config(tmp_path, capsys):
    with pytest.raises(SystemExit):
        run_cli(["eval", "RUN", "--device", "cuda"])
    assert "no CUDA device" in capsys.readouterr().err
    with pytest.raises(ArgumentError, match="train.device"):
        pick_device("cuda")
    with pytest.raises(ArgumentError, match="unknown device"):
        pick_device("tpu")


# --- start-up checks: refused before any step, nothing saved ----------------------------------------


def train_samples(tiny_root: Path) -> tuple[list[Sample], list[Sample]]:
    return read_list(tiny_root / "trainlist01.txt").samples, read_list(tiny_root / "testlist01.txt").samples


def lists(tmp_path: Path, tiny_root: Path, train=None, test=None, labeled=None) -> list[str]:
    """Overrides for the tiny set with some lists replaced (0-based video lists written here)."""
    overrides = [f"data.root={tiny_root}"]
    for key, samples in (("train_list", train), ("test_list", test), ("labeled_list", labeled)):
        if samples is not None:
            path = write_list(tmp_path / f"{key}.txt", samples, "video")
            overrides.append(f"data.{key}={path}")
    return overrides


def refused(tmp_path: Path, overrides: list[str]) -> str:
    """Train with ``overrides``; the run must stop at start-up with one DataCheckError and no checkpoint."""
    run = tmp_path / "run"
    with pytest.raises(DataCheckError) as err:
        train(load_config("synthetic_tiny", overrides), run)
    assert not RunPaths(run).checkpoints.exists()
    return str(err.value)


@pytest.mark.timeout(120)  # before the check this case looped at step 0 for ever
def test_a_batch_larger_than_the_unlabeled_pool_is_refused_at_start_up(tmp_path, tiny_root, capsys):
    assert run_cli(["train", "synthetic_tiny", "--out", str(tmp_path / "run"), f"data.root={tiny_root}",
                    "train.batch_size=30", "train.max_steps=2"]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert "train.batch_size" in err and "24" in err and "Traceback" not in err  # 24: the pool's size
    assert not RunPaths(tmp_path / "run").last.exists()


def test_epochs_that_make_no_step_are_refused_naming_the_key(tmp_path, tiny_root):
    message = refused(tmp_path, [f"data.root={tiny_root}", "train.epochs=0.01"])
    assert "train.epochs" in message and "0.01" in message


@pytest.mark.parametrize("which", ["test", "labeled"])
def test_a_label_outside_the_class_range_is_refused_before_training(tmp_path, tiny_root, which):
    train_list, test = train_samples(tiny_root)
    labeled = train_list[:8]
    bad = Sample(train_list[0].path if which == "labeled" else test[0].path, 7)
    if which == "test":
        test = [bad] + test[1:]
    else:
        labeled = [bad] + labeled[1:]
    message = refused(tmp_path, lists(tmp_path, tiny_root, test=test, labeled=labeled))
    assert f"data.{which}_list" in message and f"{bad.path} (label 7)" in message


def test_a_labeled_list_outside_the_train_list_is_refused(tmp_path, tiny_root):
    train_list, test = train_samples(tiny_root)
    message = refused(tmp_path, lists(tmp_path, tiny_root, train=train_list[4:], labeled=train_list[:8]))
    assert "data.labeled_list" in message and "not in data.train_list" in message
    assert all(s.path in message for s in train_list[:4][:3])


def test_test_clips_in_the_train_list_are_refused(tmp_path, tiny_root):
    train_list, test = train_samples(tiny_root)
    message = refused(tmp_path, lists(tmp_path, tiny_root, train=train_list + test[:2]))
    assert "data.test_list" in message and test[0].path in message and "in both" in message


def test_duplicates_and_conflicting_labels_are_named(tmp_path, tiny_root):
    train_list, _ = train_samples(tiny_root)
    twice, other = train_list[0], train_list[1]
    relabeled = Sample(other.path, (other.label + 1) % 4)
    message = refused(tmp_path, lists(tmp_path, tiny_root, train=train_list + [twice, relabeled]))
    assert f"{twice.path} (2 times)" in message
    assert f"{other.path} (labels {sorted([other.label, relabeled.label])})" in message


def test_precise_bn_on_a_train_list_smaller_than_a_batch_is_refused(tmp_path, tiny_root):
    # before: PreciseBN read no batch and left BatchNorm's statistics reset to 0 / 1
    message = refused(
        tmp_path, [f"data.root={tiny_root}", "train.precise_bn_data=train", "train.batch_size=25", "train.mu=0"]
    )
    assert "train.precise_bn_data" in message


@pytest.mark.skipif(set(available_backends()) == set(BACKENDS), reason="every backend is installed")
def test_a_backend_that_is_not_installed_is_named_before_any_video_is_blamed(tmp_path, tiny_root):
    missing = sorted(set(BACKENDS) - set(available_backends()))[0]
    message = refused(tmp_path, [f"data.root={tiny_root}", f"data.backend={missing}"])
    assert "data.backend" in message and missing in message
    assert not RunPaths(tmp_path / "run").bad_inputs.exists()


# --- checkpoints and metrics files of the wrong shape ------------------------------------------------


@pytest.fixture(scope="module")
def good_ckpt(tiny_runs) -> dict:
    return torch.load(RunPaths(tiny_runs["fixmatch"]).last, weights_only=True)


def broken(good: dict) -> dict[str, object]:
    """Checkpoints of other contents, each readable with weights_only=True."""
    model = good["model"]
    return {
        "a list": [1, 2],
        "a tensor": torch.zeros(3),
        "no model": {k: v for k, v in good.items() if k != "model"},
        "no config": {k: v for k, v in good.items() if k != "config"},
        "no class_names": {k: v for k, v in good.items() if k != "class_names"},
        "model is a list": {**good, "model": list(model.values())},
        "model values are ints": {**good, "model": {k: 1 for k in model}},
        "empty model": {**good, "model": {}},
        "class_names is a string": {**good, "class_names": "abc"},
        "class_names empty": {**good, "class_names": []},
        "position without step": {**good, "position": {"epoch": 1}},
        "negative step": {**good, "position": {**good["position"], "step": -4}},
        "step is text": {**good, "position": {**good["position"], "step": "4"}},
        "config of wrong values": {**good, "config": {**good["config"], "seed": -1}},
        "config is a list": {**good, "config": [1]},
        "optimizer is a tensor": {**good, "optimizer": torch.zeros(1)},
        "optimizer without param_groups": {**good, "optimizer": {"state": {}}},
        "rng is text": {**good, "rng": "seed"},
        "rng without torch state": {**good, "rng": [{"cuda": 1}]},
    }


def test_every_broken_checkpoint_is_one_checkpoint_error_naming_the_file(tmp_path, good_ckpt, capsys):
    for name, content in broken(good_ckpt).items():
        run = tmp_path / name.replace(" ", "_")
        path = RunPaths(run).last
        path.parent.mkdir(parents=True)
        torch.save(content, path)
        with pytest.raises(CheckpointError) as err:
            checkpoint.load(path)
        assert str(path) in str(err.value), name
        assert run_cli(["eval", str(run), "--device", "cpu"]) == 2, name
        lines = capsys.readouterr().err.strip().splitlines()
        assert str(path) in lines[0] and not any("Traceback" in line for line in lines), (name, lines)


def test_a_good_checkpoint_still_loads(tiny_runs):
    assert checkpoint.load(tiny_runs["tg_fixmatch"])["position"]["step"] == 4


def test_weights_of_another_shape_are_one_short_message(good_ckpt):
    from tgsemi.methods import get_method
    from tgsemi.models import create_model

    cfg = config.config_from_dict(good_ckpt["config"])
    five = create_model(cfg.model, 5, cfg.streams(), get_method(cfg.method).needs_projection)  # 4 classes trained
    with pytest.raises(CheckpointError) as err:
        checkpoint.load_state(five, good_ckpt["model"], "run/last.pt")
    message = str(err.value)
    assert "run/last.pt" in message and "fc.weight" in message and "(4, " in message and "(5, " in message
    assert len(message) < 400 and "\n" not in message
    with pytest.raises(CheckpointError, match="run/last.pt"):
        checkpoint.load_state(torch.nn.Linear(2, 2), {"weight": torch.zeros(2, 2)}, "run/last.pt")  # bias missing
    opt = torch.optim.SGD(five.parameters(), lr=0.1)
    with pytest.raises(CheckpointError, match="run/last.pt"):
        checkpoint.load_state(opt, {"state": {}, "param_groups": [{"params": [0]}]}, "run/last.pt")


def test_a_damaged_metrics_file_keeps_its_good_records_and_says_which_lines(tmp_path, caplog):
    path = tmp_path / "metrics.jsonl"
    good = ['{"step": 1, "loss": 2.0}', '{"step": 2, "loss": null, "lr": 0.1}']
    junk = [
        "\udcff\udcfe not text".encode("utf-8", "surrogateescape").decode("latin-1"),
        "[" * 100_000,
        '{"step": "3", "loss": 1}',
        '{"step": -1}',
        '{"loss": 1}',
        '{"step": 4, "loss": "high"}',
        '{"step": true}',
        "[1, 2]",
    ]
    path.write_bytes(b"\xff\xfe\x00binary\n" + "\n".join(junk[1:] + good).encode() + b"\n")
    records = read_metrics(path)
    assert records == [{"step": 1, "loss": 2.0}, {"step": 2, "loss": None, "lr": 0.1}]
    assert str(path) in caplog.text and "8 damaged" in caplog.text
    caplog.clear()
    path.write_text(good[0] + '\n{"step": 2, "lo')  # a torn last line: a killed writer, no warning
    assert read_metrics(path) == [{"step": 1, "loss": 2.0}] and not caplog.text
    assert read_metrics(tmp_path / "none.jsonl") == []
    folder = tmp_path / "dir.jsonl"
    folder.mkdir()
    with pytest.raises(CheckpointError, match="dir.jsonl"):
        read_metrics(folder)
