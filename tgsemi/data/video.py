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
"""

from __future__ import annotations

import bisect
import functools
import importlib.util
import os
import re
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from torchvision.io import ImageReadMode, decode_jpeg, read_file

from tgsemi.errors import ArgumentError, ConfigError, VideoReadError

Indices = Sequence[int] | np.ndarray
Chooser = Callable[[int], list[int]]  # frame count -> sorted unique frames to decode


class PyAVReader:
    """PyAV: demux the packets, decode forward from the keyframe before each wanted frame.

    It jumps to a later keyframe only when one lies between the last packet fed
    and the next wanted frame: that beats decoding through (docs/benchmarks.md,
    "Data pipeline"). Packet timestamps give display indices (constant frame rate
    assumed) even with B-frames, where keyframes' decode and display order differ
    and timestamp seeks land late. ``err_detect=explode`` turns FFmpeg's error
    concealment into an error. The RGB conversion runs on one thread too:
    swscale's default (a thread per CPU) made it 2-3.5x slower on 2 busy cores
    (0.39 against 0.11 ms for a demo clip's 16 frames).
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
    def _frame_count(path: Path, stream) -> int:
        if stream.frames:
            return stream.frames
        if stream.duration and stream.average_rate:
            return round(stream.duration * stream.time_base * stream.average_rate)
        raise VideoReadError(path, "the container reports neither a frame count nor a duration")

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

    def num_frames(self, path: Path) -> int:
        with self._open(path) as (_, stream):
            return self._frame_count(path, stream)

    def read(self, path: Path, choose: Chooser) -> np.ndarray:
        with self._open(path) as (container, stream):
            wanted = _wanted(path, choose, self._frame_count(path, stream))
            packets = [p for p in container.demux(stream) if p.size]  # ~1 ms for a UCF clip
            self._check_against_index(path, stream, packets)
            stamps = [p.pts if p.pts is not None else p.dts for p in packets]
            if not packets or None in stamps:
                raise VideoReadError(path, "has no timestamped video packets")
            first = min(stamps)
            frames_per_tick = stream.time_base * (stream.average_rate or stream.guessed_rate)
            keyframes = [
                (round((t - first) * frames_per_tick), n)
                for n, (p, t) in enumerate(zip(packets, stamps))
                if p.is_keyframe
            ]
            if not keyframes:
                raise VideoReadError(path, "has no keyframe")
            codec, wanted_set, out, fed, pos = stream.codec_context, set(wanted), {}, 0, -1
            for i in wanted:
                start = keyframes[max(0, bisect.bisect_right(keyframes, (i, len(packets))) - 1)][1]
                if start > fed:
                    codec.flush_buffers()
                    fed = start
                while pos < i and fed <= len(packets):  # a None packet drains the decoder
                    for frame in codec.decode(packets[fed] if fed < len(packets) else None):
                        if frame.pts is None or frame.is_corrupt:
                            raise VideoReadError(path, f"frame after {pos} is corrupt or untimed")
                        pos = round((frame.pts - first) * frames_per_tick)
                        if pos in wanted_set:
                            out[pos] = frame.to_ndarray(format="rgb24", threads=1)
                    fed += 1
        missing = [i for i in wanted if i not in out]
        if missing:
            raise VideoReadError(path, f"frames {missing[:5]} are not in the file (truncated?)")
        return np.stack([out[i] for i in wanted])


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

    def read(self, path: Path, choose: Chooser) -> np.ndarray:
        import decord

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
        return frames


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

    def read(self, path: Path, choose: Chooser) -> np.ndarray:
        decoder = self._open(path)
        wanted = _wanted(path, choose, len(decoder))
        try:
            return decoder.get_frames_at(indices=wanted).data.permute(0, 2, 3, 1).numpy()
        except (RuntimeError, IndexError) as e:
            raise VideoReadError(path, f"torchcodec cannot decode it: {e}") from e


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
        raise ConfigError(f"video backend {name!r} is not installed")
    return BACKENDS[name]()


def _wanted(path: Path, choose: Chooser, total: int) -> list[int]:
    """``choose(total)``, checked against the frame count the open file reports."""
    wanted = choose(total)
    if wanted[0] < 0 or wanted[-1] >= total:
        bad = wanted[0] if wanted[0] < 0 else wanted[-1]
        raise VideoReadError(path, f"frame index {bad} out of range: it has {total} frames")
    return wanted


def _count_rawframes(folder: Path, prefix: str) -> int:
    count = sum(1 for _ in folder.glob(f"{prefix}*.jpg"))
    if not count:
        raise VideoReadError(folder, f"holds no {prefix}*.jpg frames")
    return count


def _read_rawframes(folder: Path, choose: Chooser, prefix: str) -> np.ndarray:
    """MMAction2 rawframe folder: ``{prefix}00001.jpg`` is frame 0."""
    wanted = choose(_count_rawframes(folder, prefix))
    files = [folder / f"{prefix}{i + 1:05d}.jpg" for i in wanted]
    absent = [f.name for f in files if not f.is_file()]
    if absent:
        raise VideoReadError(folder, f"frame files {absent[:5]} do not exist")
    try:
        images = decode_jpeg([read_file(str(f)) for f in files], mode=ImageReadMode.RGB)
        return torch.stack(images).permute(0, 2, 3, 1).numpy()
    except RuntimeError as e:
        raise VideoReadError(folder, f"cannot decode its JPEG frames: {e}") from e


def num_frames(path: str | Path, backend: str | None = None, prefix: str = "img_") -> int:
    """Frame count from metadata (a truncated file may hold fewer than it reports)."""
    path = Path(path)
    _check_exists(path)
    if path.is_dir():
        return _count_rawframes(path, prefix)
    return _reader(backend).num_frames(path)


def read_frames(
    path: str | Path,
    indices: Indices | Callable[[int], Indices],
    backend: str | None = None,
    prefix: str = "img_",
) -> np.ndarray:
    """Frames ``indices`` (0-based, any order, repeats allowed) as uint8 ``(N, H, W, 3)`` RGB.

    ``indices`` may instead be a function of the frame count, called once with
    the count the open file reports (as ``num_frames`` would return it): counting
    and decoding then take one open of the file. A directory is read as a rawframe
    folder (``prefix`` selects e.g. precomputed ``tempgrad_`` frames); a file with
    ``backend`` (default: ``default_backend()``).
    """
    path = Path(path)
    if not callable(indices):
        indices = _checked_indices(indices)  # bad arguments fail before the file is looked at
    _check_exists(path)
    request = _Request(indices)
    if path.is_dir():
        frames = _read_rawframes(path, request, prefix)
    else:
        frames = _reader(backend).read(path, request)
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


def _check_exists(path: Path) -> None:
    if not path.exists():
        raise VideoReadError(path, "does not exist")
    if path.is_file() and path.stat().st_size == 0:
        raise VideoReadError(path, "is an empty (zero-byte) file")
