"""Hostile inputs: whatever a user feeds in, tgsemi fails with its own error type
naming what is at fault, never with a traceback from deep inside a library."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Iterator

import pytest
import torch
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from _fault_report import record
from tgsemi import checkpoint
from tgsemi.cli import main as cli
from tgsemi.config import Config, config_from_dict, load_config
from tgsemi.data.annotations import PathOutsideRootError, Sample, read_class_index, read_list, resolve_path
from tgsemi.data.splits import make_split, split_list_file
from tgsemi.engine import train
from tgsemi.errors import AnnotationError, CheckpointError, ConfigError, TgsemiError
from tgsemi.runs import load_run

FAST = settings(max_examples=100, deadline=None)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("hostile")


# --- annotation lists and split files -----------------------------------------------------------

# one whitespace-free column; Z* and C* hold every character str.split() and str.strip() treat as space
token = st.text(st.characters(blacklist_categories=("Z", "C")), min_size=1, max_size=8).filter(
    lambda t: not t.startswith("#")
)
non_number = token.filter(lambda t: not (t.isascii() and t.isdigit()))
negative = st.integers(1, 10**9).map(lambda n: f"-{n}")
number = st.integers(0, 10**6).map(str)
list_names = st.sampled_from(["list.txt", "trainlist01.txt", "testlist01.txt", "k400.csv"])

# per layout: file name, a valid line, column count, which columns are numbers
LAYOUTS = {
    "rawframes": ("frames.txt", "cls/v{i} 120 3", 3, (1, 2)),
    "video": ("videos.txt", "cls/v{i}.mp4 3", 2, (1,)),
    "ucf101": ("trainlist01.txt", "Cls/v_{i}.avi 4", 2, (1,)),
}


def assert_names_file_and_line(err: TgsemiError, path: Path) -> None:
    assert str(path) in str(err)
    if isinstance(err, AnnotationError) and err.line is not None:
        assert f"{err.file}:{err.line}:" in str(err)


def read_or_explain(path: Path, **kwargs) -> None:
    """Either the list reads, or the only escape is a TgsemiError naming the file and line."""
    try:
        read_list(path, **kwargs)
    except TgsemiError as err:
        assert_names_file_and_line(err, path)


@FAST
@given(text=st.text(max_size=300), name=list_names)
def test_random_text_reads_or_fails_cleanly(workdir, text, name):
    path = workdir / name
    path.write_text(text, encoding="utf-8")
    read_or_explain(path, class_index=["Cls"])


@FAST
@given(data=st.binary(max_size=300), name=list_names)
def test_binary_junk_reads_or_fails_cleanly(workdir, data, name):
    path = workdir / name
    path.write_bytes(data)
    read_or_explain(path)


@FAST
@given(lines=st.lists(st.lists(st.one_of(token, number, negative), max_size=5).map(" ".join), max_size=8))
def test_class_index_and_hmdb_split_files_fail_cleanly(workdir, lines):
    text = "\n".join(lines)
    path = workdir / "classes.txt"
    path.write_text(text)
    try:
        read_class_index(path)
    except TgsemiError as err:
        assert_names_file_and_line(err, path)
    folder = workdir / "hmdb"
    folder.mkdir(exist_ok=True)
    split_file = folder / "wave_test_split1.txt"
    split_file.write_text(text)
    for subset in ("train", "test"):
        try:
            read_list(folder, subset=subset)
        except TgsemiError as err:
            assert_names_file_and_line(err, split_file)


@FAST
@given(text=st.text(max_size=300), name=list_names)
def test_splitting_a_random_list_works_or_fails_cleanly(workdir, text, name):
    path = workdir / name
    path.write_text(text, encoding="utf-8")
    try:
        labeled, unlabeled = split_list_file(path, workdir / "split", fraction=0.5, strategy="random")
    except TgsemiError as err:
        assert isinstance(err, ConfigError) or str(path) in str(err)
    else:
        assert read_list(labeled, fmt="video" if name.endswith(".csv") else "auto").samples


def bad_lines(width: int, numeric: tuple[int, ...]) -> st.SearchStrategy[str]:
    """Lines that cannot be valid for the layout: a wrong column count, or a
    number column holding a non-integer or a negative integer."""
    wrong_width = (
        st.integers(1, 6).filter(lambda k: k != width).flatmap(lambda k: st.lists(token, min_size=k, max_size=k))
    )

    @st.composite
    def bad_value(draw):
        cols = [draw(token)] + [draw(number) for _ in range(width - 1)]
        cols[draw(st.sampled_from(numeric))] = draw(st.one_of(non_number, negative))
        return cols

    return st.one_of(wrong_width, bad_value()).map(" ".join)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_a_bad_line_is_reported_at_its_line(workdir, layout):
    name, good, width, numeric = LAYOUTS[layout]

    @FAST
    @given(before=st.integers(1, 5), after=st.integers(0, 3), bad=bad_lines(width, numeric))
    def check(before, after, bad):
        lines = ["# a comment counts as a line"] + [good.format(i=i) for i in range(before)]
        lines += [bad] + [good.format(i=i) for i in range(after)]
        path = workdir / name
        path.write_text("\n".join(lines) + "\n")
        with pytest.raises(AnnotationError) as err:
            read_list(path, fmt=layout)
        assert err.value.line == before + 2
        assert f"{path}:{before + 2}:" in str(err.value)

    check()


@FAST
@given(row=st.lists(st.one_of(token, number, negative, st.just("")), max_size=8).map(",".join))
def test_a_bad_kinetics_row_is_reported_at_its_line(workdir, row):
    path = workdir / "train.csv"
    path.write_text("label,youtube_id,time_start,time_end,split\nzumba,abc,0,10,train\n" + row + "\n")
    try:
        read_list(path)
    except AnnotationError as err:
        assert err.line == 3 and f"{path}:3:" in str(err)


@FAST
@given(
    labels=st.lists(st.integers(0, 4), min_size=1, max_size=40),
    seed=st.integers(0, 2**32),
    strategy=st.sampled_from(["stratified", "random", "per-class"]),
    fraction=st.one_of(st.none(), st.floats(-1, 2), st.just(float("nan"))),
    count=st.one_of(st.none(), st.integers(-3, 50)),
    per_class=st.one_of(st.none(), st.integers(-1, 6)),
    unlabeled=st.sampled_from(["all", "complement"]),
)
def test_split_arguments_either_work_or_raise_config_error(
    labels, seed, strategy, fraction, count, per_class, unlabeled
):
    train = [Sample(f"v{i}", c) for i, c in enumerate(labels)]
    try:
        labeled, rest = make_split(train, fraction, count, per_class, strategy, seed, unlabeled)
    except ConfigError:
        return
    assert labeled and set(labeled) <= set(train)
    assert rest == train if unlabeled == "all" else set(rest) == set(train) - set(labeled)


# --- paths that climb out of the data root --------------------------------------------------

segments = st.lists(st.sampled_from(["a", "bb", "..", "."]), max_size=8)


@FAST
@given(parts=segments)
def test_paths_escaping_the_root_are_rejected_unless_allowed(parts):
    # names "a" and "bb" can never walk back into "root_DIR", so leaving it once is leaving it for good
    root = Path("/srv/data/root_DIR")
    rel = "/".join(parts)
    depth, escapes = 0, False
    for part in parts:
        depth += {"..": -1, ".": 0}.get(part, 1)
        escapes |= depth < 0
    if escapes:
        with pytest.raises(PathOutsideRootError, match="outside the data root"):
            resolve_path(root, rel)
    else:
        assert resolve_path(root, rel) == root / rel
    assert resolve_path(root, rel, allow_outside=True) == root / rel


@pytest.mark.parametrize("rel", ["../secret", "/etc/passwd", "../root_DIRx/a", "a/../../b"])
def test_known_escapes_are_annotation_errors(rel):
    with pytest.raises(AnnotationError):
        resolve_path("/srv/data/root_DIR", rel)


# --- configs ---------------------------------------------------------------------------------------


def dotted_keys(model: type[BaseModel], prefix: str = "") -> Iterator[str]:
    for name, field in model.model_fields.items():
        yield prefix + name
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            yield from dotted_keys(field.annotation, f"{prefix}{name}.")


KEYS = sorted(dotted_keys(Config))
# real keys, near misses of real keys, and made-up ones
config_key = st.one_of(
    st.sampled_from(KEYS),
    st.text("abxyz_019-.", max_size=10),
    st.sampled_from(KEYS).flatmap(lambda k: st.sampled_from([k + ".x", k + "x", k.upper(), "." + k, k + "."])),
)
yaml_value = st.one_of(
    st.integers().map(str),
    st.floats().map(str),
    st.sampled_from(
        ["true", "null", "~", "", "word", "'quoted'", "[1, 2]", "[]", "{a: 1}", "{}", "1e400", "0x10", "${oops}"]
    ),
)
leaf = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=6), st.lists(st.integers(), max_size=3)
)
REPORTED = settings(max_examples=100, deadline=None, derandomize=True, database=None)  # same figures each run


def names_a_key(err: ConfigError, keys: list[str]) -> bool:
    """The message has a line ``  KEY: ...`` for one of ``keys``, a parent of it (validation stopped
    there) or a part of it (a list item, a union member), or quotes the override."""
    named = [k if k != "<root>" else "" for k in re.findall(r"^  (\S*): ", str(err), re.M)]
    return any(e == k or e.startswith(k + ".") or k.startswith(e + ".") for e in named for k in keys) or any(
        f"{k}=" in str(err) for k in keys
    )


def leaf_keys(tree: dict, prefix: str = "") -> list[str]:
    return [
        path
        for k, v in tree.items()
        for path in (leaf_keys(v, f"{prefix}{k}.") if isinstance(v, dict) and v else [f"{prefix}{k}"])
    ]


def nest(pairs: list[tuple[str, object]]) -> dict:
    """``[("train.lr", 1)]`` -> ``{"train": {"lr": 1}}``; a later key replaces an earlier leaf on its path."""
    tree: dict = {}
    for key, value in pairs:
        *parents, last = key.split(".")
        node = tree
        for part in parents:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[last] = value
    return tree


def test_config_overrides_fail_only_with_config_error_naming_the_key():
    outcomes = Counter()

    @REPORTED
    @given(key=config_key, value=yaml_value)
    def check(key, value):
        try:
            load_config(None, [f"{key}={value}"])
        except ConfigError as err:
            outcomes["named" if names_a_key(err, [key]) else "unnamed"] += 1
            assert names_a_key(err, [key]), str(err)
        else:
            outcomes["valid"] += 1

    check()
    record(
        "Hostile inputs",
        "random `key=value` overrides (real, misspelt and made-up keys; YAML values)",
        sum(outcomes.values()),
        sum(outcomes.values()),
        f"{outcomes['valid']} valid; {outcomes['named']} refused with ConfigError naming the key; no other exception",
    )


def test_config_dicts_fail_only_with_config_error_naming_a_key():
    outcomes = Counter()

    @REPORTED
    @given(pairs=st.lists(st.tuples(config_key, leaf), max_size=5))
    def check(pairs):
        tree = nest(pairs)
        try:
            config_from_dict(tree)
        except ConfigError as err:
            outcomes["refused"] += 1
            assert names_a_key(err, leaf_keys(tree)), str(err)
        else:
            outcomes["valid"] += 1

    check()
    record(
        "Hostile inputs",
        "random nested config mappings (keys and values of any type)",
        sum(outcomes.values()),
        sum(outcomes.values()),
        f"{outcomes['valid']} valid; {outcomes['refused']} refused with ConfigError naming the key; no other exception",
    )


def escapes_of(load, inputs) -> tuple[int, Counter]:
    """Run ``load`` on each input of a hypothesis strategy; count exceptions other than ConfigError by type."""
    tried, escaped = [0], Counter()

    @REPORTED
    @given(inputs)
    def check(item):
        tried[0] += 1
        try:
            load(item)
        except ConfigError:
            pass
        except Exception as exc:  # the bug this looks for: anything else escaping
            escaped[type(exc).__name__] += 1

    check()
    return tried[0], escaped


def test_any_override_text_fails_only_with_config_error():
    overrides = st.lists(st.tuples(config_key, st.text(max_size=12)).map("=".join), min_size=1, max_size=3)
    tried, escaped = escapes_of(lambda items: load_config("synthetic_tiny", items), overrides)
    record(
        "Hostile inputs",
        "random override lists with arbitrary text values, on a preset",
        tried,
        tried - sum(escaped.values()),
        f"escaped as other exceptions: {dict(escaped)}" if escaped else "only ConfigError",
    )
    assert not escaped


def test_any_yaml_file_fails_only_with_config_error(workdir):
    def load(text: str) -> None:
        path = workdir / "preset.yaml"
        path.write_text(text)
        load_config(str(path))

    tried, escaped = escapes_of(load, st.text(max_size=200))
    record(
        "Hostile inputs",
        "config YAML files of random text",
        tried,
        tried - sum(escaped.values()),
        f"escaped as other exceptions: {dict(escaped)}" if escaped else "only ConfigError naming the file",
    )
    assert not escaped


def test_an_override_replacing_a_section_by_a_list_is_a_config_error():
    with pytest.raises(ConfigError, match="data"):
        load_config("synthetic_tiny", ["data=[1]"])


def test_yaml_python_tags_run_no_code(workdir):
    marker = workdir / "yaml_ran"
    evil = workdir / "evil.yaml"
    evil.write_text(f"method: !!python/object/apply:os.system ['touch {marker}']\n")
    yaml.unsafe_load(evil.read_text())  # the payload is live: an unsafe loader runs it
    assert marker.exists()
    marker.unlink()
    with pytest.raises(Exception):  # which type is test_any_yaml_file_fails_only_with_config_error's business
        load_config(str(evil))
    record(
        "Hostile inputs",
        "config YAML with a `!!python/object/apply:os.system` tag",
        1,
        int(not marker.exists()),
        "refused; no code ran (marker file not created)" if not marker.exists() else "CODE RAN",
    )
    assert not marker.exists()


# --- checkpoints ---------------------------------------------------------------------------------


class Payload:
    """Unpickling this runs code (here: creating ``marker``), the shape of a malicious checkpoint."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').close()",)


def test_a_checkpoint_carrying_code_is_refused_without_running_it(tmp_path, capsys):
    marker = tmp_path / "pickle_ran"
    run = tmp_path / "run"
    evil = run / "checkpoints" / checkpoint.LAST
    evil.parent.mkdir(parents=True)
    torch.save({"model": Payload(marker), "position": {"step": 1}}, evil)
    torch.load(evil, weights_only=False)  # the payload is live: an unsafe load runs it
    assert marker.exists()
    marker.unlink()

    for load in (
        lambda: checkpoint.load(evil),
        lambda: load_run(run),
        lambda: train(load_config("synthetic_tiny"), run),
    ):  # a resumed run reads it first
        with pytest.raises(CheckpointError, match="refused"):
            load()
    assert cli(["eval", str(run)]) == 2 and "refused" in capsys.readouterr().err
    record(
        "Hostile inputs",
        "a checkpoint whose pickle runs code, opened by checkpoint.load, load_run, a resumed train and `tgsemi eval`",
        4,
        4 * (not marker.exists()),
        "refused with CheckpointError; no code ran (marker file not created)" if not marker.exists() else "CODE RAN",
    )
    assert not marker.exists()
