"""Red team, data formats and inputs (issue 19, items 1 and 5): real dataset layouts read right, video
containers indexed by their presentation timestamps, and hostile files refused by rule.

Every file is written here in its official layout: HMDB-51 split files (marks 1 train, 2 test, 0 unused),
Kinetics-400 CSVs, and videos encoded with PyAV whose frames carry their own index as a grey level, so
that a reader returning another frame than the one asked for is caught.
"""

from __future__ import annotations

import fractions
import os
from pathlib import Path

import av
import numpy as np
import pytest

from tgsemi.cli import main as run_cli
from tgsemi.config import DataConfig, config_from_dict
from tgsemi.data import video
from tgsemi.data.annotations import PathOutsideRootError, Sample, read_list, write_list
from tgsemi.data.bad_inputs import BadInputs, collect
from tgsemi.data.build import build_splits
from tgsemi.data.datasets import EvalDataset, FrameCache
from tgsemi.data.video import Decoding, num_frames, read_frames
from tgsemi.errors import AnnotationError, ConfigError, VideoReadError

STEP = 6  # grey level of frame i: STEP * i, far apart enough to survive lossy coding
FRAMES = 40


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def touch(root: Path, paths) -> None:
    for p in paths:
        write(root / p, "")


def encoder(name: str) -> str:
    try:
        av.codec.Codec(name, "w")
    except Exception:  # noqa: BLE001 - PyAV raises several types for a codec its FFmpeg lacks
        pytest.skip(f"this PyAV's FFmpeg has no {name} encoder")
    return name


def encode(path: Path, codec: str, count: int = FRAMES, stamps_ms: list[int] | None = None, size=(64, 48)) -> Path:
    """A video whose frame i is flat grey STEP * i; ``stamps_ms``: presentation times (variable rate)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream(encoder(codec), rate=25)
        stream.width, stream.height, stream.pix_fmt = *size, "yuv420p"
        if stamps_ms is not None:
            stream.codec_context.time_base = stream.time_base = fractions.Fraction(1, 1000)
        for i in range(count):
            frame = av.VideoFrame.from_ndarray(np.full((size[1], size[0], 3), STEP * i, np.uint8), format="rgb24")
            if stamps_ms is not None:
                frame.pts, frame.time_base = stamps_ms[i], fractions.Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def frame_numbers(frames: np.ndarray) -> list[int]:
    return np.rint(frames.reshape(len(frames), -1).mean(axis=1) / STEP).astype(int).tolist()


def variable_stamps(count: int) -> list[int]:
    """Phone-like timing: frame gaps of 10 to 200 ms, so no average rate maps a time to a frame."""
    gaps = np.random.default_rng(0).choice([10, 33, 34, 50, 120, 200], count - 1)
    return [0, *np.cumsum(gaps).tolist()]


# --- HMDB-51: the test route reads the test marks -----------------------------------------------------

HMDB = {  # class -> (video, mark): 1 train, 2 test, 0 unused
    "brush_hair": [("b1.avi", 1), ("b2.avi", 2), ("b3.avi", 0), ("b4.avi", 1)],
    "wave": [("w1.avi", 2), ("w2.avi", 1), ("w3.avi", 1), ("w4.avi", 0)],
}


def hmdb_root(tmp_path: Path, split: int = 1) -> tuple[Path, Path]:
    root, folder = tmp_path / "hmdb51", tmp_path / "testTrainMulti_7030_splits"
    for name, rows in HMDB.items():
        # the official files: one '<video> <mark> ' line each, a trailing space after the mark
        write(folder / f"{name}_test_split{split}.txt", "".join(f"{v} {mark} \n" for v, mark in rows))
        touch(root, [f"{name}/{v}" for v, _ in rows])
    return root, folder


def marked(mark: int) -> set[str]:
    return {f"{name}/{v}" for name, rows in HMDB.items() for v, m in rows if m == mark}


def test_hmdb51_split_folder_gives_train_marks_to_training_and_test_marks_to_testing(tmp_path):
    root, folder = hmdb_root(tmp_path)
    cfg = DataConfig(root=str(root), train_list=str(folder), test_list=str(folder), labeled_fraction=1.0)
    splits = build_splits(cfg, seed=0)
    assert {s.path for s in splits.test} == marked(2)  # before: the train marks, test accuracy was train accuracy
    assert {s.path for s in splits.train} == marked(1)
    assert not {s.path for s in splits.train + splits.test} & marked(0)
    assert splits.class_names == sorted(HMDB)
    assert all(s.label == splits.class_names.index(s.path.split("/")[0]) for s in splits.train + splits.test)


# --- Kinetics-400: one class index for every split, stored in the run ---------------------------------

K400_HEADER = "label,youtube_id,time_start,time_end,split,is_cc\n"


def kinetics_root(tmp_path: Path) -> tuple[Path, Path, Path]:
    root = tmp_path / "k400"
    train = write(
        root / "train.csv",
        K400_HEADER + 'abseiling,aaa,0,10,train,0\n"air drumming",bbb,3,13,train,0\nzumba,ccc,20,30,train,1\n',
    )
    val = write(root / "validate.csv", K400_HEADER + "abseiling,ddd,5,15,val,0\nzumba,eee,0,10,val,0\n")  # no drums
    for s in read_list(train).samples + read_list(val).samples:
        touch(root, [s.path])
    return root, train, val


def test_kinetics_class_ids_agree_between_splits_that_lack_a_class(tmp_path):
    root, train, val = kinetics_root(tmp_path)
    cfg = DataConfig(root=str(root), train_list=str(train), test_list=str(val), labeled_fraction=1.0)
    splits = build_splits(cfg, seed=0)
    names = splits.class_names
    assert names == ["abseiling", "air drumming", "zumba"]  # the union, not the names of one CSV
    label_of = {s.path.split("/")[1][:3]: names[s.label] for s in splits.train + splits.test}
    assert label_of == {"aaa": "abseiling", "bbb": "air drumming", "ccc": "zumba", "ddd": "abseiling", "eee": "zumba"}
    # evaluation reads the test list alone, with the names the run stored: the same ids
    assert read_list(val, class_index=names).samples == splits.test


def test_a_class_index_file_fixes_the_ids(tmp_path):
    root, train, val = kinetics_root(tmp_path)
    index = write(tmp_path / "labels.txt", "zumba\nabseiling\nair drumming\nyoga\n")
    cfg = DataConfig(root=str(root), train_list=str(train), test_list=str(val), class_index=str(index))
    splits = build_splits(cfg.model_copy(update={"labeled_fraction": 1.0}), seed=0)
    assert splits.class_names == ["zumba", "abseiling", "air drumming", "yoga"]
    assert [splits.class_names[s.label] for s in splits.test] == ["abseiling", "zumba"]
    write(index, "zumba\nabseiling\n")
    with pytest.raises(AnnotationError, match="air drumming.*not in the class list") as err:
        build_splits(cfg, seed=0)
    assert err.value.file == str(train) and err.value.line == 3


# --- unlabeled videos without invented labels ---------------------------------------------------------


def test_an_unlabeled_list_of_paths_or_a_folder_joins_the_unlabeled_pool(tmp_path):
    root = tmp_path / "data"
    touch(root, ["a/1.avi", "b/2.avi", "raw/x.mp4", "raw/deep/y.mkv", "raw/notes.txt"])
    train, test = write(root / "train.txt", "a/1.avi 0\nb/2.avi 1\n"), write(root / "test.txt", "a/1.avi 0\n")
    paths = write(tmp_path / "unlabeled.txt", "raw/x.mp4\n# a comment\nraw/deep/y.mkv\n")
    base = DataConfig(root=str(root), train_list=str(train), test_list=str(test), labeled_fraction=1.0)
    for source in (paths, root / "raw"):
        splits = build_splits(base.model_copy(update={"unlabeled_list": str(source)}), seed=0)
        assert splits.unlabeled[:2] == splits.train  # the paper's pool: the train list too
        assert sorted(splits.unlabeled[2:], key=str) == [Sample("raw/deep/y.mkv", -1), Sample("raw/x.mp4", -1)]
        assert splits.labeled == splits.train
    write(paths, "raw/x.mp4 3\n")
    with pytest.raises(AnnotationError, match="one path a line") as err:
        build_splits(base.model_copy(update={"unlabeled_list": str(paths)}), seed=0)
    assert err.value.file == str(paths) and err.value.line == 1
    touch(tmp_path, ["elsewhere/z.mp4"])
    with pytest.raises(PathOutsideRootError, match="outside the data root"):
        build_splits(base.model_copy(update={"unlabeled_list": str(tmp_path / "elsewhere")}), seed=0)
    with pytest.raises(ConfigError, match="unlabeled_list"):
        config_from_dict({"data": {"unlabeled_list": ""}})  # "" would silently mean the working directory


# --- tgsemi lists convert ---------------------------------------------------------------------------


def test_lists_convert_between_video_and_rawframe_lists(tmp_path, capsys):
    frames = tmp_path / "rawframes"
    videos = [Sample("Walk/v_Walk_g01_c01.avi", 0), Sample("Run/v_Run_g02_c03.avi", 1)]
    for s, count in zip(videos, (3, 5)):
        touch(frames, [f"{Path(s.path).with_suffix('')}/img_{i + 1:05d}.jpg" for i in range(count)])
    src = write_list(tmp_path / "videos.txt", videos, "video")
    raw, back = tmp_path / "raw.txt", tmp_path / "back.txt"
    assert (
        run_cli(["lists", "convert", str(src), "--to", "rawframes", "--out", str(raw), "--frames-root", str(frames)])
        == 0
    )
    assert read_list(raw).samples == [Sample("Walk/v_Walk_g01_c01", 0, 3), Sample("Run/v_Run_g02_c03", 1, 5)]
    assert run_cli(["lists", "convert", str(raw), "--to", "video", "--suffix", ".avi", "--out", str(back)]) == 0
    assert read_list(back).samples == videos
    capsys.readouterr()
    gone = tmp_path / "gone.txt"
    argv = ["lists", "convert", str(src), "--to", "rawframes", "--out", str(gone), "--frames-root", str(tmp_path)]
    assert run_cli(argv) == 2
    err = capsys.readouterr().err
    assert "Walk/v_Walk_g01_c01" in err and "Traceback" not in err and not gone.exists()


# --- containers: frames by presentation timestamp ----------------------------------------------------


@pytest.mark.parametrize(
    "name, codec, stamps",
    [
        ("vfr.mp4", "libx264", variable_stamps(FRAMES)),  # before: "not in the file (truncated?)"
        ("vfr.mkv", "libx264", variable_stamps(FRAMES)),
        ("cfr.mkv", "libx264", None),  # before: "neither a frame count nor a duration"
        ("cfr.webm", "libvpx-vp9", None),
    ],
)
def test_variable_rate_mkv_and_webm_return_the_frames_asked_for(tmp_path, name, codec, stamps):
    path = encode(tmp_path / name, codec, stamps_ms=stamps)
    assert num_frames(path, "pyav") == FRAMES
    for indices in ([0, 1, 2], [39, 0, 17, 17, 38, 5], list(range(FRAMES))[::-1]):
        assert frame_numbers(read_frames(path, indices, "pyav")) == indices
    counted = []
    assert frame_numbers(read_frames(path, lambda n: counted.append(n) or [n - 1], "pyav")) == [FRAMES - 1]
    assert counted == [FRAMES]


def test_frames_an_edit_list_hides_are_not_counted(tmp_path):
    """A trimmed MP4 keeps the frames before its cut as references, hidden by its edit list: before,
    a healthy file whose first frames read as "not in the file (truncated?)"."""
    hidden, stamps = 3, variable_stamps(FRAMES)
    stamps = [t - stamps[hidden] for t in stamps]  # the frames before 0 ms are hidden
    path = encode(tmp_path / "trimmed.mp4", "libx264", stamps_ms=stamps)
    assert num_frames(path, "pyav") == FRAMES - hidden
    for indices in ([0, 1], [FRAMES - hidden - 1, 0, 5, 5]):
        assert frame_numbers(read_frames(path, indices, "pyav")) == [hidden + i for i in indices]


def test_a_container_without_a_count_is_indexed_once(tmp_path, monkeypatch):
    path = encode(tmp_path / "count.mkv", "libx264")
    opens, open_file = [], video.PyAVReader._open
    monkeypatch.setattr(video.PyAVReader, "_open", staticmethod(lambda p: opens.append(p) or open_file(p)))
    assert [num_frames(path, "pyav") for _ in range(3)] == [FRAMES] * 3
    assert len(opens) == 1
    encode(path, "libx264", count=FRAMES - 4)  # a new version of the file is counted anew
    os.utime(path, ns=(1, 1))
    assert num_frames(path, "pyav") == FRAMES - 4


@pytest.mark.parametrize("name, codec", [("one.mp4", "libx264"), ("one.mkv", "libx264"), ("one.avi", "mpeg4")])
def test_a_one_frame_video_names_the_real_cause(tmp_path, name, codec):
    path = encode(tmp_path / name, codec, count=1)
    with pytest.raises(VideoReadError, match=f"{name}: holds a single frame.*a clip needs at least two"):
        read_frames(path, [0, 1], "pyav")  # a clip's first frame and the next one, for its temporal gradient


# --- resources: size and time guards, decode-time scaling --------------------------------------------


def test_a_huge_sparse_file_is_refused_by_size_before_any_read(tmp_path, monkeypatch):
    huge = tmp_path / "huge.mp4"
    with open(huge, "wb") as f:
        f.truncate(40 * 2**30)  # 40 GB, sparse: nothing written
    monkeypatch.setattr(video.PyAVReader, "_open", None)  # any attempt to open it fails the test
    guards = Decoding.of(DataConfig())  # the defaults guard
    for call in (lambda: read_frames(huge, [0], guards), lambda: num_frames(huge, guards)):
        with pytest.raises(VideoReadError, match="huge.mp4: is 40960 MB, over data.max_file_mb=4096"):
            call()


def test_inputs_over_the_guards_are_bad_inputs_of_the_run(tmp_path, monkeypatch):
    path = encode(tmp_path / "clip.mp4", "libx264")
    log = tmp_path / "bad_inputs.jsonl"
    small = Decoding("pyav", max_mb=path.stat().st_size / 2**20 / 2)
    item = EvalDataset(tmp_path, [Sample(path.name, 0)], 4, 2, backend=small, bad=BadInputs(1.0, log))[0]
    assert not item["ok"] and "max_file_mb" in item["error"]
    ticks = iter(range(10**6))  # a clock that advances a second each time it is read
    monkeypatch.setattr(video.time, "monotonic", lambda: float(next(ticks)))
    with pytest.raises(VideoReadError, match="clip.mp4: decoding took over data.max_decode_seconds=5"):
        read_frames(path, np.arange(FRAMES), Decoding("pyav", max_seconds=5))
    assert [e["path"] for e in collect(log)] == [str(path)]


def test_large_frames_are_scaled_while_decoding(tmp_path):
    path = encode(tmp_path / "wide.mp4", "libx264", count=12, size=(320, 240))
    with av.open(str(path)) as container:  # swscale's own scaling, as the decoder should have done it
        expected = np.stack(
            [f.to_ndarray(format="rgb24", width=42, height=32, interpolation="AREA") for f in container.decode(video=0)]
        )
    cache = FrameCache()
    frames = cache.video(path, Decoding("pyav", short_side=32))
    assert frames.shape == (12, 32, 42, 3)  # memory follows the training short side, not the file's
    np.testing.assert_array_equal(frames, expected)
    assert frame_numbers(frames) == list(range(12))
    near = read_frames(path, [3], Decoding("pyav", short_side=120))  # not over twice the short side: as decoded
    np.testing.assert_array_equal(near, read_frames(path, [3], "pyav"))


# --- the data root is a boundary ---------------------------------------------------------------------


def test_symlinks_out_of_the_data_root_are_refused_unless_followed(tmp_path):
    outside, root = tmp_path / "outside", tmp_path / "real_root"
    touch(outside, ["secret.avi", "folder/v.avi"])
    touch(root, ["a/ok.avi"])
    (root / "escape.avi").symlink_to(outside / "secret.avi")
    (root / "linked").symlink_to(outside / "folder")
    (root / "inside.avi").symlink_to(root / "a" / "ok.avi")  # a link that stays inside is fine
    (tmp_path / "root_link").symlink_to(root)  # and so is a root that is itself a link
    train, test = root / "train.txt", write(root / "test.txt", "a/ok.avi 0\ninside.avi 0\n")
    cfg = DataConfig(root=str(tmp_path / "root_link"), train_list=str(train), test_list=str(test), labeled_fraction=1)
    for leaving in ("escape.avi", "linked/v.avi"):
        write(train, f"a/ok.avi 0\n{leaving} 0\n")
        with pytest.raises(PathOutsideRootError, match=f"{leaving}.*symbolic link.*data.follow_symlinks=true"):
            build_splits(cfg, seed=0)
        followed = build_splits(cfg.model_copy(update={"follow_symlinks": True}), seed=0)
        assert [s.path for s in followed.train] == ["a/ok.avi", leaving]
    write(train, "a/ok.avi 0\n")
    assert [s.path for s in build_splits(cfg, 0).test] == ["a/ok.avi", "inside.avi"]
