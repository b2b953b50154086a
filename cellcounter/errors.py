"""Exceptions and warnings of the core library.

Every error about a file names the file, so a user seeing the message knows
which of a thousand images to look at.
"""

from __future__ import annotations

from os import PathLike


class CellCounterError(Exception):
    """Base class of all errors the core raises on purpose."""


class FormatError(CellCounterError):
    """A label or data file is malformed or does not match what it describes."""

    def __init__(self, path: str | PathLike[str] | None, message: str) -> None:
        self.path = None if path is None else str(path)
        self.message = message
        super().__init__(f"{self.path}: {message}" if self.path else message)


class ImageReadError(FormatError):
    """A file could not be read as an image."""


class WriteError(CellCounterError):
    """A file could not be written; the message names it and says why in words (disk full, read-only...)."""

    def __init__(self, path: str | PathLike[str], reason: str) -> None:
        self.path = str(path)
        super().__init__(f"cannot write {self.path}: {reason}; nothing was written there")


def os_error_reason(exc: OSError) -> str:
    """What went wrong, in words a user can act on."""
    import errno

    reasons = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is used up",
               errno.EROFS: "the file system is read-only", errno.EACCES: "permission denied",
               errno.EPERM: "permission denied", errno.EISDIR: "it is a folder, not a file",
               errno.ENOTDIR: "a part of its path is a file, not a folder",
               errno.EEXIST: "a part of its path is a file, not a folder", errno.ELOOP: "a symbolic link loop",
               errno.ENAMETOOLONG: "the name is too long", errno.ENOENT: "no such file or folder"}
    return reasons.get(exc.errno, exc.strerror or str(exc))


def missing_reason(path: str | PathLike[str]) -> str:
    """Why ``path`` cannot be opened: no such file, a broken link, a link loop, permission..."""
    import errno
    import os

    try:
        os.stat(path)
    except OSError as exc:
        if os.path.islink(path) and exc.errno == errno.ENOENT:
            return f"a symbolic link to {os.readlink(path)}, which does not exist"
        return os_error_reason(exc)
    return "no such file or folder"


class CellCounterWarning(UserWarning):
    """Something in the input was fixed or dropped; the message says what and where."""


class ProjectError(CellCounterError):
    """A project file is missing, foreign, damaged, locked by another process or from a newer version."""


#: what a command reports in a line and exits 2 on, instead of a traceback
REPORTED_ERRORS: tuple[type[BaseException], ...] = (CellCounterError, OSError)


def error_line(exc: BaseException) -> str:
    """The one line a command prints for one of :data:`REPORTED_ERRORS` (after ``error: ``): our message, or
    the file and the reason in words for an OSError."""
    if isinstance(exc, OSError):  # a file read or written outside the atomic writers
        name = exc.filename2 if exc.filename2 is not None else exc.filename
        return f"{name if name is not None else 'a file'}: {os_error_reason(exc)}"
    return str(exc)
