"""Annotation readers: real reference lists, each official layout, and clear errors."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tgsemi.data.annotations import (
    PathOutsideRootError,
    Sample,
    check_exists,
    read_class_index,
    read_list,
    resolve_path,
    write_list,
)
from tgsemi.errors import AnnotationError, MissingFilesError

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference_splits"
needs_reference = pytest.mark.skipif(not REFERENCE.is_dir(), reason="shared/reference_splits is absent")


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


# --- the real lists (docs/method.md section 5) ----------------------------------------------------


@needs_reference
@pytest.mark.parametrize("name", sorted(p.name for p in REFERENCE.glob("*.txt")) if REFERENCE.is_dir() else [])
def test_every_reference_list_loads_as_rawframes(name):
    listing = read_list(REFERENCE / name)
    assert listing.format == "rawframes"
    assert all(s.total_frames is not None and s.label >= 0 for s in listing.samples)


# counts from docs/method.md section 5; HMDB-51 subsets are floor(p * 5236), the rounding its UCF counts show
SPEC_COUNTS = {
    "ucf101_train_split_1_rawframes.txt": 9537,
    "ucf101_val_split_1_rawframes.txt": 3783,
    "ucf101_train_5_percent_labeled_split_1_rawframes.txt": 476,
    "ucf101_train_10_percent_labeled_split_1_rawframes.txt": 953,
    "ucf101_train_20_percent_labeled_split_1_rawframes.txt": 1907,
    "ucf101_train_50_percent_labeled_split_1_rawframes.txt": 4768,
    "hmdb51_val_split_1_rawframes.txt": 1530,
    "hmdb51_train_100_percent_labeled_split_1_rawframes.txt": 5236,
    "hmdb51_train_40_percent_labeled_split_1_rawframes.txt": 2094,
    "hmdb51_train_50_percent_labeled_split_1_rawframes.txt": 2618,
    "hmdb51_train_60_percent_labeled_split_1_rawframes.txt": 3141,
}


@needs_reference
@pytest.mark.parametrize("name, expected", SPEC_COUNTS.items())
def test_reference_counts_match_spec(name, expected):
    assert len(read_list(REFERENCE / name).samples) == expected


@needs_reference
def test_ucf_20_percent_list_covers_101_classes():
    samples = read_list(REFERENCE / "ucf101_train_20_percent_labeled_split_1_rawframes.txt").samples
    assert len(samples) == 1907
    assert {s.label for s in samples} == set(range(101))
    assert samples[0] == Sample("SumoWrestling/v_SumoWrestling_g12_c04", 86, 261)


@needs_reference
@pytest.mark.parametrize(
    "pool, subsets",
    [
        ("ucf101_train_split_1_rawframes.txt", ["ucf101_train_*_percent_*labeled_split_1_rawframes.txt"]),
        ("hmdb51_train_100_percent_labeled_split_1_rawframes.txt", ["hmdb51_train_[4-6]0_percent_labeled_*.txt"]),
    ],
)
def test_reference_subsets_are_drawn_from_the_train_pool(pool, subsets):
    full = set(read_list(REFERENCE / pool).samples)
    files = [f for pattern in subsets for f in REFERENCE.glob(pattern)]
    assert len(files) >= 3
    for f in files:
        assert set(read_list(f).samples) <= full, f.name


# --- MMAction2 lists ------------------------------------------------------------------------


def test_video_and_rawframe_lists(tmp_path):
    video = write(tmp_path / "v.txt", "# comment\n\na/x.mp4 3\r\nb/y.mp4\t0\n")
    frames = write(tmp_path / "f.txt", "a/x 120 3\n\n  b/y 7 0  \n")
    assert read_list(video).samples == [Sample("a/x.mp4", 3), Sample("b/y.mp4", 0)]
    assert read_list(video).format == "video"
    assert read_list(frames).samples == [Sample("a/x", 3, 120), Sample("b/y", 0, 7)]
    assert read_list(frames).format == "rawframes"


@pytest.mark.parametrize(
    "text, line, words",
    [
        ("a 10 1\nfoo bar\n", 2, ["'path total_frames label'", "'foo bar'"]),
        ("a 10 1\nb 10 x\n", 2, ["integer", "'b 10 x'"]),
        ("a 10 1\n\n# c\nb -3 1\n", 4, ["non-negative"]),
        ("a 1\nb -1\n", 2, ["non-negative integer label"]),
        ("a 1\nb 2 3\n", 2, ["like the first entry (line 1)", "3 columns"]),
        ("a b c d\n", 1, ["expected"]),
        ("ok 1\nbad\x01path 2\n", 2, ["whitespace or control characters"]),
    ],
)
def test_malformed_lines_name_file_line_and_layout(tmp_path, text, line, words):
    path = write(tmp_path / "list.txt", text)
    with pytest.raises(AnnotationError) as err:
        read_list(path)
    assert err.value.line == line
    assert f"{path}:{line}" in str(err.value)
    for word in words:
        assert word in str(err.value)


def test_explicit_format_rejects_the_other_layout(tmp_path):
    path = write(tmp_path / "list.txt", "a 10 1\n")
    with pytest.raises(AnnotationError, match="'path label'"):
        read_list(path, fmt="video")


def test_non_utf8_bytes_are_an_annotation_error_at_their_line(tmp_path):
    path = write(tmp_path / "list.txt", b"a 1\nb 2\nc\xff\xfe 3\n")
    with pytest.raises(AnnotationError, match="UTF-8") as err:
        read_list(path)
    assert err.value.line == 3


def test_empty_and_missing_lists_are_annotation_errors(tmp_path):
    with pytest.raises(AnnotationError, match="no entries"):
        read_list(write(tmp_path / "empty.txt", "# only a comment\n\n"))
    with pytest.raises(AnnotationError, match="cannot read"):
        read_list(tmp_path / "absent.txt")


# --- UCF-101 --------------------------------------------------------------------------------

CLASS_IND = "1 ApplyEyeMakeup\n2 Archery\n3 HandstandPushups\n"


def test_ucf101_trainlist_is_converted_to_0_based(tmp_path):
    path = write(
        tmp_path / "trainlist01.txt",
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\r\nHandstandPushups/v_HandStandPushups_g08_c01.avi 3\r\n",
    )
    listing = read_list(path)
    assert listing.format == "ucf101"
    assert [s.label for s in listing.samples] == [0, 2]
    assert listing.samples[1].path == "HandstandPushups/v_HandStandPushups_g08_c01.avi"


def test_ucf101_testlist_takes_labels_from_the_class_folder(tmp_path):
    write(tmp_path / "classInd.txt", CLASS_IND)
    path = write(tmp_path / "testlist01.txt", "Archery/v_Archery_g01_c01.avi\nhandstandpushups/v_x.avi\n")
    assert [s.label for s in read_list(path).samples] == [1, 2]


def test_ucf101_testlist_without_class_index_fails(tmp_path):
    path = write(tmp_path / "testlist01.txt", "Archery/v_Archery_g01_c01.avi\n")
    with pytest.raises(AnnotationError, match="classInd"):
        read_list(path)
    assert read_list(path, class_index=["ApplyEyeMakeup", "Archery"]).samples[0].label == 1


def test_ucf101_unknown_class_folder_is_located(tmp_path):
    write(tmp_path / "classInd.txt", CLASS_IND)
    path = write(tmp_path / "testlist01.txt", "Archery/a.avi\nBowling/b.avi\n")
    with pytest.raises(AnnotationError, match="'Bowling'") as err:
        read_list(path)
    assert err.value.line == 2


def test_list_beside_classind_is_read_as_1_based_and_checked(tmp_path):
    write(tmp_path / "classInd.txt", CLASS_IND)
    good = write(tmp_path / "labeled.txt", "Archery/a.avi 2\n")
    assert read_list(good).samples == [Sample("Archery/a.avi", 1)]
    zero_based = write(tmp_path / "videos.txt", "Archery/a.avi 1\n")
    with pytest.raises(AnnotationError, match="fmt='video'"):
        read_list(zero_based)
    assert read_list(zero_based, fmt="video").samples == [Sample("Archery/a.avi", 1)]


def test_ucf101_label_zero_is_rejected(tmp_path):
    with pytest.raises(AnnotationError, match="1-based"):
        read_list(write(tmp_path / "trainlist01.txt", "A/a.avi 0\n"))


@pytest.mark.parametrize(
    "text, message",
    [
        ("A/a.avi 1\nA/b.avi 2\n", "class 1 that an earlier line gives folder 'A'"),
        ("A/a.avi 1\nB/b.avi 1\n", "already used by another class folder"),
    ],
)
def test_ucf101_trainlist_without_class_index_is_checked_for_one_class_per_folder(tmp_path, text, message):
    with pytest.raises(AnnotationError, match=message) as err:
        read_list(write(tmp_path / "trainlist01.txt", text))
    assert err.value.line == 2


def test_class_index_files(tmp_path):
    assert read_class_index(write(tmp_path / "classInd.txt", CLASS_IND)) == {
        "ApplyEyeMakeup": 0,
        "Archery": 1,
        "HandstandPushups": 2,
    }
    assert read_class_index(write(tmp_path / "names.txt", "air drumming\nabseiling\n")) == {
        "air drumming": 0,
        "abseiling": 1,
    }
    assert read_class_index(write(tmp_path / "gap.txt", "1 A\n3 C\n")) == {"A": 0, "C": 2}
    with pytest.raises(AnnotationError, match="twice") as err:
        read_class_index(write(tmp_path / "dup.txt", "1 A\n2 B\n3 A\n"))
    assert err.value.line == 3


# --- HMDB-51 --------------------------------------------------------------------------------


def hmdb_folder(root: Path) -> Path:
    write(root / "wave_test_split1.txt", "w1.avi 1 \nw2.avi 2 \nw3.avi 0 \n")
    write(root / "brush_hair_test_split1.txt", "b1.avi 2\nb2.avi 1\n")
    write(root / "brush_hair_test_split2.txt", "b1.avi 1\nb2.avi 2\n")
    return root


def test_hmdb51_split_folder(tmp_path):
    folder = hmdb_folder(tmp_path / "splits")
    assert read_list(folder).samples == [Sample("brush_hair/b2.avi", 0), Sample("wave/w1.avi", 1)]
    assert read_list(folder, subset="test").samples == [Sample("brush_hair/b1.avi", 0), Sample("wave/w2.avi", 1)]
    assert read_list(folder, subset="unused").samples == [Sample("wave/w3.avi", 1)]
    assert read_list(folder, split=2).samples == [Sample("brush_hair/b1.avi", 0)]


def test_hmdb51_bad_id_and_missing_split(tmp_path):
    folder = hmdb_folder(tmp_path / "splits")
    write(folder / "wave_test_split1.txt", "w1.avi 1\nw2.avi 3\n")
    with pytest.raises(AnnotationError, match="id 0 .unused., 1 .train. or 2 .test.") as err:
        read_list(folder)
    assert err.value.file.endswith("wave_test_split1.txt") and err.value.line == 2
    with pytest.raises(AnnotationError, match="_test_split3.txt"):
        read_list(folder, split=3)


# --- Kinetics-400 ---------------------------------------------------------------------------

KINETICS = (
    "label,youtube_id,time_start,time_end,split,is_cc\n"
    "zumba,-0aBc_dEf12,5,15,train,0\n"
    '"air drumming",xyz,0,10,train,0\n'
)


def test_kinetics_csv(tmp_path):
    path = write(tmp_path / "train.csv", KINETICS)
    assert read_list(path).samples == [
        Sample("train/-0aBc_dEf12_000005_000015.mp4", 1),
        Sample("train/xyz_000000_000010.mp4", 0),
    ]
    given = read_list(path, class_index=["abseiling", "air drumming", "zumba"]).samples
    assert [s.label for s in given] == [2, 1]


def test_kinetics_csv_errors(tmp_path):
    with pytest.raises(AnnotationError, match="not in the class list") as err:
        read_list(write(tmp_path / "a.csv", KINETICS), class_index=["zumba"])
    assert err.value.line == 3
    with pytest.raises(AnnotationError, match="header"):
        read_list(write(tmp_path / "b.csv", "label,id,start\nx,y,1\n"))
    with pytest.raises(AnnotationError, match="non-negative integer time_start") as err:
        read_list(write(tmp_path / "c.csv", KINETICS + "zumba,q,-1,9,train,0\n"))
    assert err.value.line == 4
    with pytest.raises(AnnotationError, match="6 comma-separated fields"):
        read_list(write(tmp_path / "d.csv", KINETICS + "zumba,q,1\n"))


def test_kinetics_csv_without_labels(tmp_path):
    path = write(tmp_path / "test.csv", "youtube_id,time_start,time_end,split\nabc,1,11,test\n")
    assert read_list(path).samples == [Sample("test/abc_000001_000011.mp4", -1)]


# --- writing --------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt, line", [("video", "a/x.mp4 4"), ("rawframes", "a/x 30 4"), ("ucf101", "a/x.mp4 5")])
def test_write_list_layouts_round_trip(tmp_path, fmt, line):
    sample = Sample("a/x.mp4" if fmt != "rawframes" else "a/x", 4, 30 if fmt == "rawframes" else None)
    path = write_list(tmp_path / "out.txt", [sample], fmt)
    assert path.read_text() == line + "\n"
    assert read_list(path, fmt=fmt).samples == [sample]


def test_write_list_refuses_what_it_cannot_read_back(tmp_path):
    for sample, fmt in [(Sample("a", -1), "video"), (Sample("a b", 1), "video"), (Sample("a", 1), "rawframes")]:
        with pytest.raises(ValueError):
            write_list(tmp_path / "out.txt", [sample], fmt)


# --- paths on disk --------------------------------------------------------------------------


def test_resolve_path_stays_inside_the_root(tmp_path):
    root = tmp_path / "data"
    assert resolve_path(root, "a/b.mp4") == root / "a/b.mp4"
    assert resolve_path(root, "a/../b.mp4") == root / "a/../b.mp4"
    assert resolve_path(root, str(root / "c.mp4")) == root / "c.mp4"
    for rel in ["../x.mp4", "a/../../x.mp4", "/etc/passwd", str(tmp_path / "datax" / "y")]:
        with pytest.raises(PathOutsideRootError, match="outside the data root"):
            resolve_path(root, rel)
    assert resolve_path(root, "../x.mp4", allow_outside=True) == root / "../x.mp4"


def test_check_exists_reports_count_and_first_paths(tmp_path, caplog):
    write(tmp_path / "a.mp4", b"")
    (tmp_path / "frames").mkdir()
    samples = [Sample("a.mp4", 0), Sample("frames", 1, 10)] + [Sample(f"gone{i}.mp4", 0) for i in range(7)]
    with pytest.raises(MissingFilesError, match="7 of 9") as err:
        check_exists(tmp_path, samples)
    assert "gone0.mp4" in str(err.value) and "gone6.mp4" not in str(err.value)
    with caplog.at_level(logging.WARNING):
        assert check_exists(tmp_path, samples, on_missing="skip") == samples[:2]
    assert "7 of 9" in caplog.text and "gone0.mp4" in caplog.text
    with pytest.raises(PathOutsideRootError):
        check_exists(tmp_path / "frames", [Sample("../a.mp4", 0)])
