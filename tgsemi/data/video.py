"""Decode chosen frames of a video file or of a rawframe folder.

``read_frames(path, indices)`` is the one entry point. A TG clip needs the pairs
``{i_k, i_k + 1}``, so every reader decodes the sorted unique indices in one pass
and the caller gets them back in the order (and multiplicity) it asked for.
``indices`` may be a function of the frame count (a clip sampler): every reader
calls it with the count once the file is open, so sampling from a video whose
count the list does not give costs one open, not two.

Damaged input must fail loudly: a truncated file's header still reports every
frame, and FFmpeg's MPEG-4 decoder *conceals* bitstream damage, returning frames
that look plausible but are wrong. Each reader therefore checks that every wanted
frame came back and that the decoder reported no error, and raises
``VideoReadError`` naming the file otherwise.

Hostile input must not exhaust the machine: ``Decoding`` carries a run's guards
(a file size refused before any read, a decode-time limit) and the training short
side, to which frames far larger than it are scaled while they are decoded.
"""

from __future__ import annotations

import bisect
import functools
import importlib.util
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torchvision.io import ImageReadMode, decode_jpeg, read_file
from torchvision.transforms.v2 import functional as F

from tgsemi.data.transforms import short_side_size
from tgsemi.errors import ArgumentError, ConfigError, VideoReadError
from tgsemi.extras import install_hint

if TYPE_CHECKING:
    from tgsemi.config import DataConfig

Indices = Sequence[int] | np.ndarray
Chooser = Callable[[int], list[int]]  # frame count -> sorted unique frames to decode
# Frames are scaled at decode time only when their short side is over this many times the training
# one: below it they cost at most 4x the pixels and stay exactly the decoded pixels that runs on
# ordinary data (UCF-101's 240 lines for a 128 short side) have always trained on.
SCALE_ABOVE = 2


@dataclass(frozen=True)
class Decoding:
    """How a run decodes its inputs: ``backend`` (None: the fastest installed), ``short_side`` (the
    training short side: larger frames are scaled to it while they are decoded, so memory follows
    the training resolution, not the file's), and the guards against hostile files, ``max_mb`` (larger
    files are refused before a byte is read: a 40 GB sparse file took 216 s per attempt) and
    ``max_seconds`` per read. Every refusal is a ``VideoReadError``: a bad input like any other."""

    backend: str | None = None
    short_side: int | None = None
    max_mb: float | None = None
    max_seconds: float | None = None

    @classmethod
    def of(cls, data: DataConfig) -> Decoding:
        """A run's decoding, from its data config."""
        return cls(data.backend, data.resize, data.max_file_mb, data.max_decode_seconds)

    def size(self, height: int, width: int) -> tuple[int, int]:
        """The ``(height, width)`` that frames of ``height`` x ``width`` are returned at."""
        if self.short_side is None or min(height, width) <= SCALE_ABOVE * self.short_side:
            return height, width
        return short_side_size(height, width, self.short_side)

    def check_size(self, path: Path) -> None:
        size = path.stat().st_size
        if self.max_mb is not None and size > self.max_mb * 2**20:
            raise VideoReadError(
                path, f"is {size / 2**20:.0f} MB, over data.max_file_mb={self.max_mb:g}: refused unread"
            )


def _decoding(backend: str | Decoding | None) -> Decoding:
    return backend if isinstance(backend, Decoding) else Decoding(backend)


class _Clock:
    """The time one read may take (``Decoding.max_seconds``); ``check`` raises once it is spent."""

    def __init__(self, path: Path, seconds: float | None):
        self.path, self.seconds = path, seconds
        self.end = None if seconds is None else time.monotonic() + seconds

    def check(self) -> None:
        if self.end is not None and time.monotonic() > self.end:
            raise VideoReadError(self.path, f"decoding took over data.max_decode_seconds={self.seconds:g}")


@dataclass
class _FrameIndex:
    """A video's frames by presentation timestamp: frame ``i`` is the one shown ``i``-th, whatever the
    frame rate does (variable-rate phone footage), whether or not the container counts its frames
    (MKV, WebM) and whether an edit list hides some (trimmed MP4). ``keyframes``: ``(first frame
    shown from it on, packet number)`` of each keyframe, in packet order."""

    packets: list
    frame_of: dict[int, int]  # presentation timestamp -> frame number
    keyframes: list[tuple[int, int]]
    count: int  # the header's frame count where it gives one (a truncated file keeps it), else the frames found


class PyAVReader:
    """PyAV: demux the packets, decode forward from the keyframe before each wanted frame.

    It jumps to a later keyframe only when one lies between the last packet fed
    and the next wanted frame: that beats decoding through (docs/benchmarks.md,
    "Data pipeline"). The packets' presentation timestamps, ranked, give display
    indices (``_FrameIndex``) even with B-frames, where keyframes' decode and display
    order differ and timestamp seeks land late, and at a variable frame rate, where
    a timestamp times the average rate is not a frame number. ``err_detect=explode``
    turns FFmpeg's error concealment into an error. The RGB conversion (and the
    scaling to ``Decoding.size``) runs on one thread too: swscale's default (a thread
    per CPU) made it 2-3.5x slower on 2 busy cores (0.39 against 0.11 ms for a demo
    clip's 16 frames).
    """

    module = "av"

    @staticmethod
    @contextmanager
    def _open(path: Path) -> Iterator[tuple]:
        import av

        try:
            with av.open(str(path)) as container:
                kind = container.format.name
                if kind.startswith("image2") or kind.endswith("_pipe"):
                    raise VideoReadError(path, f"is a still image ({kind}), not a video")
                if not container.streams.video:
                    raise VideoReadError(path, "has no video stream")
                stream = container.streams.video[0]
                # one thread per item on purpose: parallelism comes from DataLoader workers, sized to
                # the CPUs granted (cpus.plan); decoder threads on top would oversubscribe them
                stream.codec_context.thread_count = 1
                stream.codec_context.options = {"err_detect": "explode"}
                yield container, stream
        except av.FFmpegError as e:
            raise VideoReadError(path, f"FFmpeg cannot decode it: {e}") from e

    @staticmethod
    def _check_against_index(path: Path, stream, packets: list) -> None:
        """Packets must lie where the container's index puts them.

        Damage in the middle of an AVI makes the demuxer resync further on and
        number the packets that follow consecutively: every later frame would come
        back under the wrong index, with no decode error.
        """
        listed = [e for e in stream.index_entries if e.size]
        shifts = {p.pos - e.pos for p, e in zip(packets, listed) if p.pos is not None and p.pos >= 0}
        if len(shifts) > 1 or len(packets) < len(listed):
            raise VideoReadError(
                path,
                f"its packets do not match its index ({len(packets)} read, "
                f"{len(listed)} listed): damaged in the middle?",
            )

    @classmethod
    def _index(cls, path: Path, container, stream, clock: _Clock) -> _FrameIndex:
        packets = []
        for packet in container.demux(stream):  # ~1 ms for a UCF clip
            clock.check()
            if packet.size:
                packets.append(packet)
        cls._check_against_index(path, stream, packets)
        stamps = [p.pts if p.pts is not None else p.dts for p in packets]
        if not packets or None in stamps:
            raise VideoReadError(path, "has no timestamped video packets")
        # an edit list's leading frames (a trimmed MP4) are decoded as references, never shown
        discarded = sum(p.is_discard for p in packets)
        shown = sorted({t for p, t in zip(packets, stamps) if not p.is_discard})
        keyframes = [
            (bisect.bisect_left(shown, t), n) for n, (p, t) in enumerate(zip(packets, stamps)) if p.is_keyframe
        ]
        if not keyframes:
            raise VideoReadError(path, "has no keyframe")
        count = stream.frames - discarded if stream.frames else len(shown)
        return _FrameIndex(packets, {t: i for i, t in enumerate(shown)}, keyframes, count)

    def num_frames(self, path: Path) -> int:
        stat = path.stat()
        return _pyav_count(type(self), os.path.abspath(path), stat.st_size, stat.st_mtime_ns)

    def read(self, path: Path, choose: Chooser, decoding: Decoding) -> np.ndarray:
        clock = _Clock(path, decoding.max_seconds)
        with self._open(path) as (container, stream):
            index = self._index(path, container, stream, clock)
            wanted = _wanted(path, choose, index.count)
            packets, keyframes = index.packets, index.keyframes
            codec, wanted_set, out, fed, pos = stream.codec_context, set(wanted), {}, 0, -1
            for i in wanted:
                start = keyframes[max(0, bisect.bisect_right(keyframes, (i, len(packets))) - 1)][1]
                if start > fed:
                    codec.flush_buffers()
                    fed = start
                while pos < i and fed <= len(packets):  # a None packet drains the decoder
                    clock.check()
                    for frame in codec.decode(packets[fed] if fed < len(packets) else None):
                        if frame.pts is None or frame.is_corrupt:
                            raise VideoReadError(path, f"frame after {pos} is corrupt or untimed")
                        pos = index.frame_of.get(frame.pts, -1)
                        if pos < 0:
                            raise VideoReadError(path, f"a frame at timestamp {frame.pts} that no packet carries")
                        if pos in wanted_set:
                            out[pos] = _rgb(frame, decoding)
                    fed += 1
        missing = [i for i in wanted if i not in out]
        if missing:
            raise VideoReadError(path, f"frames {missing[:5]} are not in the file (truncated?)")
        return np.stack([out[i] for i in wanted])


def _rgb(frame, decoding: Decoding) -> np.ndarray:
    """A decoded PyAV frame as RGB, scaled to ``decoding.size`` by swscale in the same conversion."""
    height, width = decoding.size(frame.height, frame.width)
    if (height, width) == (frame.height, frame.width):
        return frame.to_ndarray(format="rgb24", threads=1)
    return frame.to_ndarray(format="rgb24", width=width, height=height, interpolation="AREA", threads=1)


@functools.lru_cache(maxsize=2**16)
def _pyav_count(reader: type[PyAVReader], path: str, size: int, mtime_ns: int) -> int:
    """A file's frame count as ``read`` sees it, by its (size, modification time) version: the packets
    are demuxed (a container may count no frames, or hidden ones) once per process, not at every call."""
    with reader._open(Path(path)) as (container, stream):
        return reader._index(Path(path), container, stream, _Clock(Path(path), None)).count


_FFMPEG_ERROR = re.compile(r"^\[\w+ @ 0x[0-9a-f]+\] .*$", re.MULTILINE)
_STDERR_LOCK = threading.Lock()


@contextmanager
def _captured_stderr() -> Iterator[list[str]]:
    """Capture file descriptor 2; the list holds the text once the block exits.

    decord's FFmpeg reports decode errors only as log lines on stderr, so this is
    the one way to notice them. The lock keeps threads from swapping fd 2 at once.
    """
    text: list[str] = []
    with _STDERR_LOCK, tempfile.TemporaryFile() as log:
        saved = os.dup(2)
        os.dup2(log.fileno(), 2)
        try:
            yield text
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            log.seek(0)
            text.append(log.read().decode(errors="replace"))


class DecordReader:
    """decord: random access by frame number; decode errors read from FFmpeg's log.

    Known limits, hence not the default: after a seek in an AVI file with B-frames
    it returns frames from the wrong position (dmlc/decord#195, #365; see
    tests/test_video.py), and it cannot tell renumbered frames after mid-file
    damage (no packet access).
    """

    module = "decord"

    @staticmethod
    def _open(path: Path):
        import decord

        try:
            return decord.VideoReader(str(path), num_threads=1)  # on purpose, as in PyAVReader._open
        except (RuntimeError, decord.DECORDError) as e:
            raise VideoReadError(path, f"decord cannot open it: {str(e).splitlines()[0]}") from e

    def num_frames(self, path: Path) -> int:
        return len(self._open(path))

    def read(self, path: Path, choose: Chooser, decoding: Decoding) -> np.ndarray:
        import decord

        clock = _Clock(path, decoding.max_seconds)
        with _captured_stderr() as log:
            reader = self._open(path)
            wanted = _wanted(path, choose, len(reader))
            try:
                frames = reader.get_batch(wanted).asnumpy()
            except (RuntimeError, decord.DECORDError) as e:
                raise VideoReadError(path, f"decord cannot decode it: {e}") from e
        error = _FFMPEG_ERROR.search(log[0])  # decord logs FFmpeg at level ERROR only
        if error:
            raise VideoReadError(path, f"FFmpeg reported a decode error: {error.group()}")
        os.write(2, log[0].encode())  # pass on anything else that was printed meanwhile
        clock.check()
        return _scaled(frames, decoding)


class TorchCodecReader:
    """torchcodec (optional): exact frame-number seeking in C++.

    Known limits (0.17), hence not the default: it cannot set ``err_detect`` nor
    expose packets, so concealed MPEG-4 damage comes back as frames without an
    error; in AVI files with B-frames it returns each frame one index late.
    """

    module = "torchcodec"

    @staticmethod
    def _open(path: Path):
        from torchcodec.decoders import VideoDecoder

        try:
            # one thread on purpose, as in PyAVReader._open
            return VideoDecoder(str(path), seek_mode="exact", num_ffmpeg_threads=1)
        except (RuntimeError, ValueError) as e:
            raise VideoReadError(path, f"torchcodec cannot open it: {e}") from e

    def num_frames(self, path: Path) -> int:
        return len(self._open(path))

    def read(self, path: Path, choose: Chooser, decoding: Decoding) -> np.ndarray:
        clock = _Clock(path, decoding.max_seconds)
        decoder = self._open(path)
        wanted = _wanted(path, choose, len(decoder))
        try:
            frames = decoder.get_frames_at(indices=wanted).data.permute(0, 2, 3, 1).numpy()
        except (RuntimeError, IndexError) as e:
            raise VideoReadError(path, f"torchcodec cannot decode it: {e}") from e
        clock.check()
        return _scaled(frames, decoding)


BACKENDS = {"pyav": PyAVReader, "decord": DecordReader, "torchcodec": TorchCodecReader}
# Fastest first: pyav decodes UCF-style XviD 1.3-2.2x and the synthetic set 2x
# faster than decord (docs/benchmarks.md, "Data pipeline"). torchcodec 0.17 (with
# FFmpeg 5.1, 2026-12-01) decodes as fast as pyav, not faster: 798 against 832
# demo clips per CPU-second, 182 against 160 UCF-like GOP-12 ones, 74 against 75
# GOP-250 ones. It comes last because it fails the damage checks: it returns
# concealed frames of damaged MPEG-4 without an error, and frame i - 1 for i in
# AVI files with B-frames (tests/test_video.py).
PREFERENCE = ("pyav", "decord", "torchcodec")


@functools.cache
def _installed(module: str) -> bool:
    """Cached: ``find_spec`` searches ``sys.path``, 0.24 ms for the three
    backends, and a dataset item asks four times with the default backend."""
    return importlib.util.find_spec(module) is not None


def available_backends() -> list[str]:
    """Backends whose library is installed, in preference order."""
    return [name for name in PREFERENCE if _installed(BACKENDS[name].module)]


def default_backend() -> str:
    """The fastest installed backend."""
    installed = available_backends()
    if not installed:
        raise ConfigError(f"no video backend installed; install one of {list(BACKENDS)}")
    return installed[0]


def _reader(backend: str | None):
    name = backend or default_backend()
    if name not in BACKENDS:
        raise ConfigError(f"unknown video backend {name!r}; choose one of {list(BACKENDS)}")
    if name not in available_backends():
        raise ConfigError(f"video backend {name!r} is not installed: {install_hint(BACKENDS[name].module)}")
    return BACKENDS[name]()


def _wanted(path: Path, choose: Chooser, total: int) -> list[int]:
    """``choose(total)``, checked against the frame count the open file reports."""
    if total < 1:
        raise VideoReadError(path, "holds no video frame")
    wanted = choose(total)
    if wanted[0] < 0 or wanted[-1] >= total:
        bad = wanted[0] if wanted[0] < 0 else wanted[-1]
        if total == 1:  # what a clip sampler asks of a still: the next frame, for the temporal gradient
            raise VideoReadError(path, f"holds a single frame (frame {bad} asked): a clip needs at least two")
        raise VideoReadError(path, f"frame index {bad} out of range: it has {total} frames")
    return wanted


def _scaled(frames: np.ndarray, decoding: Decoding) -> np.ndarray:
    """``(N, H, W, 3)`` frames at ``decoding.size``, for decoders that cannot scale while decoding."""
    size = list(decoding.size(*frames.shape[1:3]))
    if size == list(frames.shape[1:3]):
        return frames
    tchw = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)
    return F.resize(tchw, size, antialias=True).permute(0, 2, 3, 1).numpy()


def _count_rawframes(folder: Path, prefix: str) -> int:
    count = sum(1 for _ in folder.glob(f"{prefix}*.jpg"))
    if not count:
        raise VideoReadError(folder, f"holds no {prefix}*.jpg frames")
    return count


def _read_rawframes(folder: Path, choose: Chooser, prefix: str, decoding: Decoding) -> np.ndarray:
    """MMAction2 rawframe folder: ``{prefix}00001.jpg`` is frame 0."""
    clock = _Clock(folder, decoding.max_seconds)
    wanted = choose(_count_rawframes(folder, prefix))
    files = [folder / f"{prefix}{i + 1:05d}.jpg" for i in wanted]
    absent = [f.name for f in files if not f.is_file()]
    if absent:
        raise VideoReadError(folder, f"frame files {absent[:5]} do not exist")
    for f in files:
        decoding.check_size(f)
    try:
        images = decode_jpeg([read_file(str(f)) for f in files], mode=ImageReadMode.RGB)
        frames = torch.stack(images).permute(0, 2, 3, 1).numpy()
    except RuntimeError as e:
        raise VideoReadError(folder, f"cannot decode its JPEG frames: {e}") from e
    clock.check()
    return _scaled(frames, decoding)


def num_frames(path: str | Path, backend: str | Decoding | None = None, prefix: str = "img_") -> int:
    """Frame count from metadata (a truncated file may hold fewer than it reports), else from the
    packets (MKV, WebM: counted once per file version and process)."""
    path, decoding = Path(path), _decoding(backend)
    _check_exists(path, decoding)
    if path.is_dir():
        return _count_rawframes(path, prefix)
    return _reader(decoding.backend).num_frames(path)


def read_frames(
    path: str | Path,
    indices: Indices | Callable[[int], Indices],
    backend: str | Decoding | None = None,
    prefix: str = "img_",
) -> np.ndarray:
    """Frames ``indices`` (0-based, any order, repeats allowed) as uint8 ``(N, H, W, 3)`` RGB.

    ``indices`` may instead be a function of the frame count, called once with
    the count the open file reports (as ``num_frames`` would return it): counting
    and decoding then take one open of the file. A directory is read as a rawframe
    folder (``prefix`` selects e.g. precomputed ``tempgrad_`` frames); a file with
    ``backend``, a name (default: ``default_backend()``) or a ``Decoding``, which
    also sets the guards and the short side frames are scaled to while decoding.
    """
    path, decoding = Path(path), _decoding(backend)
    if not callable(indices):
        indices = _checked_indices(indices)  # bad arguments fail before the file is looked at
    _check_exists(path, decoding)
    request = _Request(indices)
    if path.is_dir():
        frames = _read_rawframes(path, request, prefix, decoding)
    else:
        frames = _reader(decoding.backend).read(path, request, decoding)
    return frames[request.order]


def _checked_indices(indices: Indices) -> np.ndarray:
    indices = np.asarray(indices)
    if indices.ndim != 1 or indices.size == 0 or not np.issubdtype(indices.dtype, np.integer):
        raise ArgumentError(f"indices must be a non-empty 1-D sequence of integers, got {indices!r}")
    return indices


class _Request:
    """A reader's ``Chooser``: the sorted unique frames to decode, from the caller's
    indices or its function of the frame count, and ``order``, which puts the
    decoded frames back in the caller's order and multiplicity."""

    def __init__(self, indices: np.ndarray | Callable[[int], Indices]):
        self.indices = indices
        self.order = np.empty(0, dtype=np.intp)

    def __call__(self, total: int) -> list[int]:
        indices = self.indices
        if callable(indices):
            indices = _checked_indices(indices(total))
        wanted, self.order = np.unique(indices, return_inverse=True)
        return wanted.tolist()


def _check_exists(path: Path, decoding: Decoding) -> None:
    if not path.exists():
        raise VideoReadError(path, "does not exist")
    if path.is_file():
        if path.stat().st_size == 0:
            raise VideoReadError(path, "is an empty (zero-byte) file")
        decoding.check_size(path)
