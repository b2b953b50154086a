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


class CellCounterWarning(UserWarning):
    """Something in the input was fixed or dropped; the message says what and where."""


class ProjectError(CellCounterError):
    """A project file is missing, foreign, damaged, locked by another process or from a newer version."""
