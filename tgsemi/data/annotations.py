"""Annotation lists: which videos a dataset holds and their labels.

Reads the layouts real datasets ship with (MMAction2 video and rawframe lists,
the UCF-101 and HMDB-51 official splits, Kinetics CSVs, and lists of unlabeled
paths or folders of videos) into one `Sample` type,
and rejects every malformed line with an `AnnotationError` naming the file, the
line and the layout that was expected, so that a broken list fails at start-up
instead of as a shape error deep in a training run.
"""

from __future__ import annotations

import csv
import functools
import logging
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

from tgsemi.errors import AnnotationError, ArgumentError, MissingFilesError

log = logging.getLogger(__name__)

ListFormat = Literal["video", "rawframes", "ucf101"]
ReadFormat = Literal["auto", "video", "rawframes", "ucf101", "hmdb51", "kinetics"]
ClassIndex = Mapping[str, int] | Sequence[str] | str | os.PathLike
Line = tuple[int, str]  # (1-based line number, text without the line break)

_UCF_NAME = re.compile(r"(train|test)list\d*\.txt", re.IGNORECASE)
_HMDB_NAME = re.compile(r"(.+)_test_split(\d+)\.txt")
_HMDB_SUBSETS = {"0": "unused", "1": "train", "2": "test"}
_UNWRITABLE = re.compile(r"[\s\x00-\x1f\x7f]")  # a list line could not hold it
_SHOW = 80  # characters of an offending line quoted in an error
VIDEO_SUFFIXES = (".avi", ".mp4", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv")


@dataclass(frozen=True)
class Sample:
    """One video: `path` as written in the list (relative to the data root),
    0-based `label` (-1 when unknown), `total_frames` for rawframe folders."""

    path: str
    label: int
    total_frames: int | None = None


@dataclass
class AnnotationList:
    """Samples plus the layout their list was written in, so that a split of a
    list is written back in the layout the list's consumers expect."""

    samples: list[Sample]
    format: ListFormat


class PathOutsideRootError(AnnotationError):
    """A listed path that resolves outside the data root."""


# --- reading text ---------------------------------------------------------------


def _show(text: str) -> str:
    return repr(text if len(text) <= _SHOW else text[:_SHOW] + "...")


def _read_lines(file: Path) -> list[Line]:
    """Numbered non-blank, non-comment lines; undecodable bytes become an
    `AnnotationError` at their line instead of a `UnicodeDecodeError`."""
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise AnnotationError(file, None, f"cannot read the list: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise AnnotationError(file, line, f"not UTF-8 text (byte 0x{data[exc.start]:02x})") from None
    # split on "\n" only: str.splitlines also breaks on \x1c, \x85, ... and would shift line numbers
    numbered = ((n, raw.strip()) for n, raw in enumerate(text.split("\n"), 1))
    return [(n, line) for n, line in numbered if line and not line.startswith("#")]


def _nonneg_int(token: str) -> int | None:
    """ASCII digits only: `int()` would also take '+3', '1_0' and non-Latin digits."""
    return int(token) if token.isascii() and token.isdigit() else None


def _check_path(file: Path, n: int, path: str) -> str:
    if _UNWRITABLE.search(path):
        raise AnnotationError(file, n, f"path contains whitespace or control characters: {_show(path)}")
    return path


def _rows(file: Path, lines: list[Line], layouts: Mapping[int, str]) -> tuple[int, list[tuple[int, str, list[str]]]]:
    """Split lines into whitespace columns; the first entry fixes the column
    count (one of `layouts`: count -> description) for the whole file."""
    if not lines:
        raise AnnotationError(file, None, "the list contains no entries")
    rows = [(n, line, line.split()) for n, line in lines]
    first_n, first_line, first_cols = rows[0]
    width = len(first_cols)
    if width not in layouts:
        expected = " or ".join(layouts[k] for k in sorted(layouts, reverse=True))
        raise AnnotationError(file, first_n, f"expected {expected}, got {_show(first_line)}")
    for n, line, cols in rows:
        if len(cols) != width:
            raise AnnotationError(
                file,
                n,
                f"expected {layouts[width]} like the first entry (line {first_n}), "
                f"got {len(cols)} columns: {_show(line)}",
            )
    return width, rows


# --- class indices ----------------------------------------------------------------


def read_class_index(path: str | os.PathLike) -> dict[str, int]:
    """Class name -> 0-based index from UCF-101's classInd.txt ('1 ApplyEyeMakeup',
    1-based) or from a file with one class name per line (index = line order)."""
    file = Path(path)
    lines = _read_lines(file)
    if not lines:
        raise AnnotationError(file, None, "the class list contains no entries")
    numbered = _nonneg_int(lines[0][1].split()[0]) is not None and len(lines[0][1].split()) > 1
    index: dict[str, int] = {}
    for n, line in lines:
        if numbered:
            number, _, name = line.replace("\t", " ").partition(" ")
            position, name = _nonneg_int(number), name.strip()
            if position is None or position < 1 or not name:
                raise AnnotationError(file, n, f"expected 'index name' with a 1-based integer index, got {_show(line)}")
            position -= 1
        else:
            name, position = line, len(index)
        if name in index:
            raise AnnotationError(file, n, f"class {name!r} is listed twice")
        if position in index.values():
            raise AnnotationError(file, n, f"class index {position + 1} is used twice")
        index[name] = position
    return index


def _class_lookup(class_index: ClassIndex | None) -> dict[str, int] | None:
    if class_index is None:
        return None
    if isinstance(class_index, Mapping):
        return dict(class_index)
    if isinstance(class_index, (str, os.PathLike)):
        return read_class_index(class_index)
    return {name: i for i, name in enumerate(class_index)}


# --- the layouts ----------------------------------------------------------------------


def _read_mmaction(file: Path, lines: list[Line], fmt: ListFormat | None) -> AnnotationList:
    """MMAction2 lists: 'path label' (videos) or 'path total_frames label' (rawframes)."""
    layouts = {
        2: "'path label' with a non-negative integer label",
        3: "'path total_frames label' with non-negative integer total_frames and label",
    }
    if fmt is not None:
        layouts = {k: v for k, v in layouts.items() if (k == 3) == (fmt == "rawframes")}
    width, rows = _rows(file, lines, layouts)
    samples = []
    for n, line, cols in rows:
        numbers = [_nonneg_int(c) for c in cols[1:]]
        if None in numbers:
            raise AnnotationError(file, n, f"expected {layouts[width]}, got {_show(line)}")
        path = _check_path(file, n, cols[0])
        samples.append(Sample(path, numbers[-1], numbers[0] if width == 3 else None))
    return AnnotationList(samples, "rawframes" if width == 3 else "video")


def _read_ucf101(file: Path, lines: list[Line], class_index: ClassIndex | None) -> AnnotationList:
    """UCF-101 trainlist ('Class/v.avi 1', 1-based) or testlist ('Class/v.avi',
    label from the class folder). A folder is one class: trainlist labels must
    agree with the class index, or without one with each other, which turns an
    off-by-one or shuffled list into a loud error."""
    beside = file.parent / "classInd.txt"
    if class_index is None and beside.is_file():
        class_index = beside
    classes = _class_lookup(class_index)
    learned = classes is None
    # case-insensitive: copies of UCF-101 differ in the case of a few names (HandstandPushups)
    by_folder = {name.lower(): i for name, i in (classes or {}).items()}
    width, rows = _rows(
        file, lines, {2: "'Class/video.avi label' with a 1-based integer label", 1: "'Class/video.avi'"}
    )
    if width == 1 and learned:
        raise AnnotationError(
            file, None, "a UCF-101 testlist has no labels: pass class_index or put classInd.txt beside it"
        )
    samples = []
    for n, line, cols in rows:
        path = _check_path(file, n, cols[0])
        folder = path.split("/")[0]
        if width == 2:
            label = _nonneg_int(cols[1])
            if label is None or label < 1:
                raise AnnotationError(
                    file, n, f"expected 'Class/video.avi label' with a 1-based integer label, got {_show(line)}"
                )
            if learned and label - 1 not in by_folder.values():
                by_folder.setdefault(folder.lower(), label - 1)
        expected = by_folder.get(folder.lower())
        if expected is None:
            raise AnnotationError(
                file,
                n,
                f"class folder {folder!r} is not in the class index"
                if not learned
                else f"label {label} is already used by another class folder",
            )
        if width == 2 and expected != label - 1:
            source = "an earlier line" if learned else "the class index"
            raise AnnotationError(
                file,
                n,
                f"label {label} (1-based) disagrees with class {expected + 1} that {source} "
                f"gives folder {folder!r}; if this list is 0-based, read it with fmt='video'",
            )
        samples.append(Sample(path, expected))
    return AnnotationList(samples, "ucf101")


def _read_hmdb51(folder: Path, split: int, subset: str, class_index: ClassIndex | None) -> AnnotationList:
    """HMDB-51 split folder: '<class>_test_split<N>.txt' files of 'video.avi id'
    lines, id 1 = train, 2 = test, 0 = unused; path '<class>/<video>'."""
    files = {}
    for file in folder.iterdir():
        match = _HMDB_NAME.fullmatch(file.name)
        if match and int(match.group(2)) == split:
            files[match.group(1)] = file
    if not files:
        raise AnnotationError(folder, None, f"no HMDB-51 split files '<class>_test_split{split}.txt' in this folder")
    classes = _class_lookup(class_index) or {name: i for i, name in enumerate(sorted(files))}
    samples = []
    for name in sorted(files):
        file = files[name]
        if name not in classes:
            raise AnnotationError(file, None, f"class {name!r} is not in the class index")
        _, rows = _rows(file, _read_lines(file), {2: "'video.avi id' with id 0 (unused), 1 (train) or 2 (test)"})
        for n, line, (video, flag) in rows:
            if flag not in _HMDB_SUBSETS:
                raise AnnotationError(
                    file, n, f"expected 'video.avi id' with id 0 (unused), 1 (train) or 2 (test), got {_show(line)}"
                )
            if _HMDB_SUBSETS[flag] == subset:
                samples.append(Sample(_check_path(file, n, f"{name}/{video}"), classes[name]))
    return AnnotationList(samples, "video")


def _csv_fields(file: Path, n: int, line: str) -> list[str]:
    try:
        return next(csv.reader([line]))
    except csv.Error as exc:
        raise AnnotationError(file, n, f"not a CSV line ({exc}): {_show(line)}") from None


def _kinetics_rows(file: Path, lines: list[Line]) -> tuple[dict[str, int], list[tuple[int, str, list[str]]]]:
    """The columns of a Kinetics CSV's header (name -> position) and its rows, each as wide as it."""
    if not lines:
        raise AnnotationError(file, None, "the list contains no entries")
    parsed = [(n, line, _csv_fields(file, n, line)) for n, line in lines]
    (header_n, header_line, header), rows = parsed[0], parsed[1:]
    needed = {"youtube_id", "time_start", "time_end", "split"}
    if not needed <= set(header):
        raise AnnotationError(
            file,
            header_n,
            f"expected a header with columns label (optional), {', '.join(sorted(needed))}, got {_show(header_line)}",
        )
    for n, line, row in rows:
        if len(row) != len(header):
            raise AnnotationError(
                file, n, f"expected {len(header)} comma-separated fields like the header, got {len(row)}: {_show(line)}"
            )
    return {name: i for i, name in enumerate(header)}, rows


def _read_kinetics(file: Path, lines: list[Line], class_index: ClassIndex | None) -> AnnotationList:
    """Kinetics CSV ('label,youtube_id,time_start,time_end,split[,is_cc]') ->
    '<split>/<youtube_id>_<start:06d>_<end:06d>.mp4' as the common downloader
    names the clips; labels from `class_index`, else the sorted labels of this file
    alone: a run reads every list with one index (data/build.py `class_names`)."""
    col, rows = _kinetics_rows(file, lines)
    has_label = "label" in col
    classes = _class_lookup(class_index)
    if classes is None and has_label:
        classes = {name: i for i, name in enumerate(sorted({row[col["label"]] for _, _, row in rows}))}
    samples = []
    for n, line, row in rows:
        start, end = _nonneg_int(row[col["time_start"]]), _nonneg_int(row[col["time_end"]])
        video_id, split = row[col["youtube_id"]], row[col["split"]]
        if start is None or end is None or not video_id or not split:
            raise AnnotationError(
                file,
                n,
                f"expected a non-empty youtube_id and split and non-negative integer "
                f"time_start and time_end, got {_show(line)}",
            )
        label = -1
        if has_label:
            if row[col["label"]] not in classes:
                raise AnnotationError(file, n, f"label {row[col['label']]!r} is not in the class list")
            label = classes[row[col["label"]]]
        samples.append(Sample(_check_path(file, n, f"{split}/{video_id}_{start:06d}_{end:06d}.mp4"), label))
    if not samples:
        raise AnnotationError(file, None, "the list contains no entries")
    return AnnotationList(samples, "video")


def read_list(
    path: str | os.PathLike,
    fmt: ReadFormat = "auto",
    class_index: ClassIndex | None = None,
    *,
    split: int = 1,
    subset: Literal["train", "test", "unused"] = "train",
) -> AnnotationList:
    """Read any supported annotation list into `Sample`s with 0-based labels.

    `fmt="auto"` decides by name, then content: a folder is an HMDB-51 split
    folder (`split` and `subset` pick the list in it); `*.csv` is Kinetics;
    `trainlistNN.txt` / `testlistNN.txt`, or a one/two-column list with a
    classInd.txt beside it, is UCF-101 (1-based); otherwise two columns are an
    MMAction2 video list and three a rawframe list. `class_index` (mapping,
    class-name sequence or class-list file) supplies labels where the list has
    names instead of numbers.
    """
    if fmt not in get_args(ReadFormat) or subset not in _HMDB_SUBSETS.values():
        raise ArgumentError(f"unknown list format {fmt!r} or subset {subset!r}")
    file = Path(path)
    fmt = _detect(file, fmt)
    if fmt == "hmdb51":
        return _read_hmdb51(file, split, subset, class_index)
    lines = _read_lines(file)
    if fmt == "auto":
        fmt = _detect_by_content(file, lines)
    if fmt == "kinetics":
        return _read_kinetics(file, lines, class_index)
    if fmt == "ucf101":
        return _read_ucf101(file, lines, class_index)
    return _read_mmaction(file, lines, None if fmt == "auto" else fmt)


def _detect(file: Path, fmt: ReadFormat) -> ReadFormat:
    """`fmt`, or for "auto" the layouts a name decides: a folder is HMDB-51, `*.csv` Kinetics."""
    if fmt == "hmdb51" or (fmt == "auto" and file.is_dir()):
        if not file.is_dir():
            raise AnnotationError(file, None, "an HMDB-51 split source must be a folder of split files")
        return "hmdb51"
    return "kinetics" if fmt == "auto" and file.suffix.lower() == ".csv" else fmt


def _detect_by_content(file: Path, lines: list[Line]) -> ReadFormat:
    first = lines[0][1] if lines else ""
    if first.startswith(("label,youtube_id", "youtube_id,")):
        return "kinetics"
    if _UCF_NAME.fullmatch(file.name) or (len(first.split()) <= 2 and (file.parent / "classInd.txt").is_file()):
        return "ucf101"
    return "auto"


def list_class_names(path: str | os.PathLike, fmt: ReadFormat = "auto") -> set[str] | None:
    """The class names a list labels its videos with (a Kinetics CSV's label column, the classes of an
    HMDB-51 split folder), or None for a list of numbers: a run's class index is the union of these
    over its lists, so a class one split lacks cannot shift the labels of the others."""
    file = Path(path)
    fmt = _detect(file, fmt)
    if fmt == "hmdb51":
        return {m.group(1) for f in file.iterdir() if (m := _HMDB_NAME.fullmatch(f.name))}
    lines = _read_lines(file)
    if fmt == "kinetics" or (fmt == "auto" and _detect_by_content(file, lines) == "kinetics"):
        col, rows = _kinetics_rows(file, lines)
        return {row[col["label"]] for _, _, row in rows} if "label" in col else None
    return None


def video_files(folder: str | os.PathLike) -> list[Path]:
    """The video files (by suffix, ``VIDEO_SUFFIXES``) at any depth under ``folder``, sorted."""
    return sorted(f for f in Path(folder).rglob("*") if f.suffix.lower() in VIDEO_SUFFIXES and f.is_file())


def read_paths(path: str | os.PathLike, root: str | os.PathLike) -> list[Sample]:
    """Videos without labels (label -1): a list of paths under `root`, one a line, or a folder,
    whose video files (at any depth, sorted) are given relative to `root`."""
    source = Path(path)
    if source.is_dir():
        base = os.path.abspath(root)
        found = video_files(source)
        if not found:
            raise AnnotationError(source, None, f"the folder holds no video file ({', '.join(VIDEO_SUFFIXES)})")
        return [Sample(os.path.relpath(os.path.abspath(f), base), -1) for f in found]
    _, rows = _rows(source, _read_lines(source), {1: "one path a line (labeled videos go in the other lists)"})
    return [Sample(_check_path(source, n, cols[0]), -1) for n, _, cols in rows]


def convert_list(
    source: str | os.PathLike,
    out: str | os.PathLike,
    to: Literal["video", "rawframes"],
    frames_root: str | os.PathLike | None = None,
    suffix: str = ".mp4",
    prefix: str = "img_",
) -> Path:
    """Write the labeled list `source` (any readable layout) as a video or a rawframe list.

    To rawframes, each video's frame folder is its path without the suffix (MMAction2's layout), and
    its frame count, `prefix`*.jpg files counted under `frames_root`; to videos, each folder gets
    `suffix`. Every folder absent is named in one error, before anything is written."""
    from tgsemi.data.video import num_frames  # decoding stays unimported for reading lists

    if to not in ("video", "rawframes"):
        raise ArgumentError(f"a list converts to 'video' or 'rawframes', not {to!r}")
    samples = read_list(source).samples
    if to == "video":
        if not re.fullmatch(r"\.\w+", suffix):
            raise ArgumentError(f"the video suffix must look like '.mp4', got {suffix!r}")
        converted = [Sample(s.path if s.total_frames is None else s.path + suffix, s.label) for s in samples]
    else:
        if frames_root is None:
            raise ArgumentError("converting to rawframes needs the frames root, where the frame folders are counted")
        folders = [s.path if s.total_frames is not None else str(Path(s.path).with_suffix("")) for s in samples]
        absent = [f for f in folders if not (Path(frames_root) / f).is_dir()]
        if absent:
            raise MissingFilesError(
                f"{len(absent)} of {len(folders)} frame folders are missing under {frames_root}, e.g. "
                + ", ".join(absent[:5])
            )
        converted = [
            Sample(f, s.label, num_frames(resolve_path(frames_root, f), prefix=prefix))
            for f, s in zip(folders, samples)
        ]
    return write_list(out, converted, to)


def write_list(path: str | os.PathLike, samples: Iterable[Sample], fmt: ListFormat) -> Path:
    """Write samples in one of the readable line layouts (atomically: a crash
    never leaves a half-written list that would silently train on fewer clips)."""
    if fmt not in get_args(ListFormat):
        raise ArgumentError(f"unknown list format {fmt!r}")
    lines = []
    for s in samples:
        if s.label < 0 or s.path.split() != [s.path] or s.path.startswith("#"):
            raise ArgumentError(f"cannot write {s!r}: needs a label >= 0 and a path without whitespace or leading '#'")
        if fmt == "rawframes":
            if s.total_frames is None:
                raise ArgumentError(f"cannot write {s!r} as a rawframe entry: total_frames is unknown")
            lines.append(f"{s.path} {s.total_frames} {s.label}")
        else:
            lines.append(f"{s.path} {s.label + (fmt == 'ucf101')}")
    out = Path(path)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    os.replace(tmp, out)
    return out


# --- files on disk ----------------------------------------------------------------------


def inside(base: str, path: str) -> bool:
    """Whether ``path`` is ``base`` or below it (both absolute and normalised)."""
    return os.path.commonpath([base, path]) == base


# Folders' real locations, cached: a list's clips share a few folders. Resolving every component of
# every path took checking a list from 25 to 93 us a clip; with the cache, 40.
_real_folder = functools.lru_cache(maxsize=2**12)(os.path.realpath)


def _real(path: str) -> str:
    real = os.path.join(_real_folder(os.path.dirname(path)), os.path.basename(path))
    return os.path.realpath(real) if os.path.islink(real) else real


def resolve_path(root: str | os.PathLike, rel: str, allow_outside: bool = False, follow_symlinks: bool = True) -> Path:
    """`root / rel`, refusing paths that climb out of the data root ('../x',
    absolute paths elsewhere) so a shared list cannot read arbitrary files; with
    `follow_symlinks=False` also those a symbolic link on the way leads out of it
    (the root itself may be a link). `check_exists` checks a whole list so when
    it is built; the datasets then take its paths as they are written."""
    base = os.path.abspath(root)
    full = os.path.normpath(os.path.join(base, rel))
    if allow_outside:
        return Path(root) / rel
    if not inside(base, full):
        raise PathOutsideRootError(
            rel, None, f"resolves outside the data root {base} (set allow_outside_root to permit this)"
        )
    if not follow_symlinks and not inside(_real_folder(base), real := _real(full)):
        raise PathOutsideRootError(
            rel,
            None,
            f"is a symbolic link (or inside a linked folder) to {real}, outside the data root {base} "
            "(set data.follow_symlinks=true to read it)",
        )
    return Path(root) / rel


def check_exists(
    root: str | os.PathLike,
    samples: Sequence[Sample],
    on_missing: Literal["error", "skip"] = "error",
    allow_outside: bool = False,
    follow_symlinks: bool = False,
) -> list[Sample]:
    """The samples whose file or frame folder exists under `root`; missing ones
    raise `MissingFilesError` (or, with on_missing="skip", are dropped with a warning).
    A path outside the root, or led out of it by a symbolic link unless
    `follow_symlinks`, raises `PathOutsideRootError` (see `resolve_path`)."""
    if on_missing not in ("error", "skip"):
        raise ArgumentError(f"on_missing must be 'error' or 'skip', got {on_missing!r}")
    present, missing = [], []
    for s in samples:
        full = resolve_path(root, s.path, allow_outside, follow_symlinks)
        (present if os.path.exists(full) else missing).append(s)
    if missing:
        message = f"{len(missing)} of {len(samples)} listed files are missing under {root}, e.g. " + ", ".join(
            s.path for s in missing[:5]
        )
        if on_missing == "error":
            raise MissingFilesError(message)
        log.warning("%s; skipping them", message)
    return present
