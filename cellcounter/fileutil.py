"""Atomic file writing: a file is either the old one or the complete new one, never half written."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from cellcounter.errors import WriteError, os_error_reason

_UMASK = os.umask(0)
os.umask(_UMASK)


def not_regular_reason(path: str | os.PathLike) -> str | None:
    """Why ``path`` is no file to read (a device such as ``/dev/zero``, a pipe, a socket, a folder), following
    links; ``None`` for a regular file or one that does not exist (its own error says so). Reading a device
    or a pipe never ends."""
    import stat

    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if stat.S_ISREG(mode):
        return None
    kind = ("a folder" if stat.S_ISDIR(mode) else "a pipe (FIFO)" if stat.S_ISFIFO(mode) else
            "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode) else
            "not a regular file")
    return f"is {kind}, not a file that can be read"


def _normal_mode(path: str) -> None:
    """mkstemp makes files private (0600); give ours the mode any new file of the user would have."""
    os.chmod(path, 0o666 & ~_UMASK)


def _prepare(target: Path, suffix: str) -> str:
    """The target's folder made and a temporary file created beside it; its path."""
    if target.exists() and not target.is_file():
        raise WriteError(target, "it is a folder" if target.is_dir() else "it is not a regular file")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix, dir=target.parent)
    except OSError as exc:
        raise WriteError(target, os_error_reason(exc)) from exc
    os.close(fd)
    _normal_mode(tmp)
    return tmp


@contextlib.contextmanager
def _replacing(target: Path, tmp: str) -> Iterator[None]:
    """Rename ``tmp`` over ``target`` when the block succeeds; otherwise remove ``tmp`` (``target`` untouched),
    an OSError becoming a :class:`WriteError` naming the target."""
    try:
        yield
        os.replace(tmp, target)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and not isinstance(exc, WriteError):
            raise WriteError(target, os_error_reason(exc)) from exc
        raise


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w", **kwargs) -> Iterator[IO]:
    """Open a temporary file beside ``path``; on success it replaces ``path`` in one rename.

    On an exception the temporary file is removed and ``path`` is untouched.
    """
    target = Path(path)
    tmp = _prepare(target, ".tmp")
    with _replacing(target, tmp), open(tmp, mode, **kwargs) as fh:
        yield fh
        fh.flush()
        os.fsync(fh.fileno())


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_open(path, "wb") as fh:
        fh.write(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_open(path, "w", encoding="utf-8", newline="") as fh:
        fh.write(text)


def atomic_write_with(path: str | Path, writer: Callable[[str], None]) -> None:
    """Let ``writer(tmp_path)`` write a file by path (for libraries that take a path), then rename."""
    target = Path(path)
    tmp = _prepare(target, target.suffix)
    with _replacing(target, tmp):
        writer(tmp)
