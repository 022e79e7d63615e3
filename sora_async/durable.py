"""Durable file writes: whole-or-nothing replacement that survives a crash or a power loss."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterable
from pathlib import Path

from .errors import ConfigurationError

__all__ = [
    "check_writable_dir",
    "fsync_directory",
    "refuse_non_directory",
    "write_lines_atomically",
]


def fsync_directory(directory: str | os.PathLike[str]) -> None:
    """Make a new or renamed entry of ``directory`` survive a power loss.

    Not possible on every platform (Windows); the rename before it is atomic anyway.
    """
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_lines_atomically(path: str | os.PathLike[str], lines: Iterable[str]) -> Path:
    """Replace ``path`` with ``lines``, streamed: a temporary file, fsync, ``os.replace``.

    A reader sees the old file or the new one, never a part; memory stays flat however many
    lines there are. A failure (an exception from ``lines`` included) leaves the old file.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp_name = os.fspath(target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp"))
    # os.open rather than mkstemp: the file gets the umask's usual mode, not 0600.
    fd = os.open(tmp_name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            for line in lines:
                out.write(line)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise
    fsync_directory(target.parent)
    return target


def refuse_non_directory(path: str | os.PathLike[str], setting: str) -> None:
    """ConfigurationError naming ``setting`` when ``path`` exists and is not a directory (a
    file given where a folder is wanted); a missing path is fine."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise ConfigurationError(f"{setting}: {os.fspath(path)!r} is a file, not a directory")


def check_writable_dir(path: str | os.PathLike[str], setting: str) -> None:
    """Make ``path`` and prove a file can be written there, or raise ConfigurationError naming
    ``setting``. Asked before a paid create whose files go there."""
    folder = Path(path)
    refuse_non_directory(folder, setting)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".sora-async-write-check-{os.getpid()}-{secrets.token_hex(4)}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ConfigurationError(
            f"{setting}: cannot write into {os.fspath(folder)!r} ({exc.strerror or exc})"
        ) from None
