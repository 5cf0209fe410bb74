"""The project's own error types.

Every failure caused by user input (a file, a list line, a config key) raises one
of these, naming what is at fault, so that a user never has to read a traceback
from deep inside a third-party library to find the broken line.
"""

from __future__ import annotations


class TgsemiError(Exception):
    """Base class of every error tgsemi raises on purpose."""


class ArgumentError(TgsemiError, ValueError):
    """A value a caller passed that is not among the valid ones (a stream, a layer, a list format,
    a method name); also a ValueError, so code that caught ValueError before still does."""


class VideoReadError(TgsemiError):
    """A video or frame folder cannot be decoded into the frames asked for."""

    def __init__(self, path: object, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class AnnotationError(TgsemiError):
    """A malformed annotation / split list line."""

    def __init__(self, file: object, line: int | None, reason: str):
        self.file = str(file)
        self.line = line
        where = f"{self.file}:{line}" if line is not None else self.file
        super().__init__(f"{where}: {reason}")


class ConfigError(TgsemiError):
    """An invalid configuration key or value."""


class CheckpointError(TgsemiError):
    """A checkpoint that cannot be loaded safely."""


class MissingFilesError(TgsemiError):
    """Files named in an annotation list do not exist."""


class TooManyBadInputsError(TgsemiError):
    """More inputs failed to decode than the configured share allows."""


class NonFiniteLossError(TgsemiError):
    """A loss term became NaN or inf."""


class OutputError(TgsemiError):
    """A file or folder tgsemi must write cannot be: a file where a folder must be, a read-only or
    full disk, no permission."""


class RunLockedError(TgsemiError):
    """Another process is training the same run folder."""


class RunInterrupted(TgsemiError):
    """SIGINT or SIGTERM stopped training at a step boundary, after saving a checkpoint the same
    command resumes from. ``exit_code`` is 128 + the signal's number (130, 143), what a shell
    reports for a process that signal ended."""

    def __init__(self, signum: int, message: str):
        self.signum = signum
        self.exit_code = 128 + signum
        super().__init__(message)


class MissingExtraError(TgsemiError, ImportError):
    """A feature's optional package is not installed; the message names the pip extra that brings it
    (also an ImportError, so code that caught ImportError before still does)."""


class DataCheckError(TgsemiError):
    """The lists of a run disagree with each other or with the class range (checked before training,
    and by ``tgsemi check-data``, which also opens every file)."""


class ExportError(TgsemiError):
    """An exported file that does not compute what the network computes."""
