"""Hostile inputs: whatever a user feeds in, tgsemi fails with its own error type
naming what is at fault, never with a traceback from deep inside a library."""
from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tgsemi.data.annotations import PathOutsideRootError, Sample, read_class_index, read_list, resolve_path
from tgsemi.data.splits import make_split, split_list_file
from tgsemi.errors import AnnotationError, ConfigError, TgsemiError

FAST = settings(max_examples=100, deadline=None)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("hostile")


# --- annotation lists and split files -----------------------------------------------------------

# one whitespace-free column; Z* and C* hold every character str.split() and str.strip() treat as space
token = st.text(st.characters(blacklist_categories=("Z", "C")), min_size=1, max_size=8).filter(
    lambda t: not t.startswith("#"))
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
    wrong_width = st.integers(1, 6).filter(lambda k: k != width).flatmap(
        lambda k: st.lists(token, min_size=k, max_size=k))

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
@given(labels=st.lists(st.integers(0, 4), min_size=1, max_size=40), seed=st.integers(0, 2**32),
       strategy=st.sampled_from(["stratified", "random", "per-class"]),
       fraction=st.one_of(st.none(), st.floats(-1, 2), st.just(float("nan"))),
       count=st.one_of(st.none(), st.integers(-3, 50)),
       per_class=st.one_of(st.none(), st.integers(-1, 6)), unlabeled=st.sampled_from(["all", "complement"]))
def test_split_arguments_either_work_or_raise_config_error(labels, seed, strategy, fraction, count, per_class,
                                                          unlabeled):
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
