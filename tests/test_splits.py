"""Labeled / unlabeled splits: protocols, determinism, and list files in the input's layout."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tgsemi.data.annotations import Sample, read_list
from tgsemi.data.splits import make_split, split_list_file
from tgsemi.errors import AnnotationError, ConfigError

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference_splits"
UCF_TRAIN = REFERENCE / "ucf101_train_split_1_rawframes.txt"
needs_reference = pytest.mark.skipif(not UCF_TRAIN.is_file(), reason="shared/reference_splits is absent")

SIZES = {0: 100, 1: 50, 2: 20, 3: 3}  # an imbalanced 173-clip train list


@pytest.fixture
def train() -> list[Sample]:
    # classes interleaved so that "input order" differs from "grouped by class"
    return [Sample(f"c{c}/v{i}", c, 10 + i) for i in range(100) for c, n in SIZES.items() if i < n]


def is_subsequence(part: list, whole: list) -> bool:
    it = iter(whole)
    return all(any(x == y for y in it) for x in part)


@pytest.mark.parametrize(
    "kwargs", [dict(fraction=0.2), dict(fraction=0.2, strategy="random"), dict(per_class=2, strategy="per-class")]
)
def test_split_is_deterministic_for_a_seed(train, kwargs):
    first, _ = make_split(train, seed=3, **kwargs)
    assert make_split(train, seed=3, **kwargs)[0] == first
    assert make_split(train, seed=4, **kwargs)[0] != first


def test_stratified_is_proportional_with_one_per_class(train):
    labeled, _ = make_split(train, fraction=0.2)
    per_class = Counter(s.label for s in labeled)
    assert len(labeled) == 34  # floor(0.2 * 173)
    assert set(per_class) == set(SIZES)
    for c, n in SIZES.items():
        assert per_class[c] >= 1
        assert abs(per_class[c] - 0.2 * n) <= 1.5, (c, per_class[c])


def test_random_strategy_draws_the_exact_count(train):
    labeled, _ = make_split(train, count=40, strategy="random", seed=1)
    assert len(labeled) == 40 and len(set(labeled)) == 40


def test_per_class_gives_exactly_k(train):
    labeled, _ = make_split(train, per_class=3, strategy="per-class")
    assert Counter(s.label for s in labeled) == {c: 3 for c in SIZES}
    with pytest.raises(ConfigError, match=r"fewer than 4 clips \(labels \[3\]\)"):
        make_split(train, per_class=4, strategy="per-class")


@pytest.mark.parametrize(
    "strategy, kwargs",
    [("stratified", dict(fraction=0.3)), ("random", dict(fraction=0.3)), ("per-class", dict(per_class=1))],
)
def test_labeled_is_an_ordered_subset_and_unlabeled_all_or_complement(train, strategy, kwargs):
    labeled, everything = make_split(train, strategy=strategy, **kwargs)
    assert everything == train
    assert is_subsequence(labeled, train)
    _, complement = make_split(train, strategy=strategy, unlabeled="complement", **kwargs)
    assert set(labeled).isdisjoint(complement)
    assert sorted(labeled + complement, key=train.index) == train
    assert is_subsequence(complement, train)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(fraction=0.2, count=5), "exactly one"),
        (dict(), "exactly one"),
        (dict(fraction=0.0), r"\(0, 1\]"),
        (dict(fraction=1.5), r"\(0, 1\]"),
        (dict(count=500), "1..173"),
        (dict(count=3), "at least one clip per class"),
        (dict(fraction=0.2, per_class=2), "only with it"),
        (dict(strategy="per-class"), "only with it"),
        (dict(strategy="per-class", per_class=0), "per_class must be >= 1"),
        (dict(fraction=0.2, strategy="balanced"), "unknown split strategy"),
        (dict(fraction=0.2, unlabeled="none"), "'all' or 'complement'"),
    ],
)
def test_bad_split_arguments_are_config_errors(train, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        make_split(train, **kwargs)


@needs_reference
@pytest.mark.parametrize("fraction, expected", [(0.05, 476), (0.1, 953), (0.2, 1907), (0.5, 4768)])
def test_fractions_give_the_videossl_counts(fraction, expected):
    """docs/method.md section 5: the paper's subsets of the 9537 UCF-101 train clips."""
    train = read_list(UCF_TRAIN).samples
    assert len(make_split(train, fraction=fraction, strategy="random")[0]) == expected
    assert len(make_split(train, fraction=fraction)[0]) == expected


@needs_reference
def test_split_list_file_keeps_the_rawframe_layout(tmp_path):
    labeled, unlabeled = split_list_file(UCF_TRAIN, tmp_path / "out", fraction=0.1, seed=7, unlabeled="complement")
    source_lines = UCF_TRAIN.read_text().splitlines()
    written = labeled.read_text().splitlines()
    assert labeled == tmp_path / "out" / "labeled.txt" and unlabeled == tmp_path / "out" / "unlabeled.txt"
    assert len(written) == 953
    assert is_subsequence(written, source_lines)
    assert sorted(written + unlabeled.read_text().splitlines()) == sorted(source_lines)
    assert read_list(labeled).format == "rawframes"


def test_split_list_file_keeps_a_ucf_trainlist_1_based(tmp_path):
    classes = ["ApplyEyeMakeup", "Archery", "Bowling"]
    lines = [f"{name}/v_{name}_g{g:02d}_c01.avi {c + 1}" for g in range(1, 9) for c, name in enumerate(classes)]
    trainlist = tmp_path / "ucf" / "trainlist01.txt"
    trainlist.parent.mkdir()
    trainlist.write_text("\r\n".join(lines) + "\r\n")
    labeled, unlabeled = split_list_file(trainlist, tmp_path / "out", per_class=2, strategy="per-class", seed=1)
    written = labeled.read_text().splitlines()
    assert len(written) == 6 and is_subsequence(written, lines)
    assert unlabeled.read_text().splitlines() == lines
    # read back on its own, the split still means the trainlist's classes
    back = read_list(labeled).samples
    assert Counter(s.label for s in back) == {0: 2, 1: 2, 2: 2}
    assert all(s.path.startswith(classes[s.label] + "/") for s in back)


@settings(max_examples=50, deadline=None)
@given(
    rows=st.lists(st.tuples(st.sampled_from("ABCDE"), st.integers(1, 6)), min_size=1, max_size=20),
    seed=st.integers(0, 99),
)
def test_any_readable_trainlist_splits_into_lists_that_read_back_the_same(tmp_path_factory, rows, seed):
    folder = tmp_path_factory.mktemp("ucf")
    lines = [f"{name}/v_{name}_{i}.avi {label}" for i, (name, label) in enumerate(rows)]
    (folder / "trainlist01.txt").write_text("\n".join(lines) + "\n")
    try:
        source = read_list(folder / "trainlist01.txt").samples
    except AnnotationError:
        return  # a folder with two labels, or two folders with one label: not a UCF trainlist
    labeled, unlabeled = split_list_file(
        folder / "trainlist01.txt", folder / "out", count=1, strategy="random", seed=seed
    )
    assert read_list(unlabeled).samples == source
    assert set(read_list(labeled).samples) <= set(source)
