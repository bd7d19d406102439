"""Reading files under a root (the logs folder) without ever leaving it.

A path is opened one component at a time from the root's folder, each with ``O_NOFOLLOW``: a
symbolic link anywhere below the root (planted in the logs folder, say) is refused, never
followed, so no byte from outside the root is read, whatever the link points at and however the
request spelled the path.
"""

from __future__ import annotations

import contextlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Final

_FLAGS: Final = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
_DIR: Final = _FLAGS | getattr(os, "O_DIRECTORY", 0)
MAX_CHUNK: Final = 1024 * 1024


def parts_inside(root: Path, path: str) -> tuple[str, ...] | None:
    """The components of *path* below *root* (lexically), or None if it is not below it."""
    if "\x00" in path:
        return None
    try:
        rel = PurePosixPath(os.path.normpath(path)).relative_to(os.path.normpath(root))
    except ValueError:
        return None
    parts = rel.parts
    if not parts or any(p in ("", ".", "..") for p in parts):
        return None
    return parts


def open_inside(root: Path, parts: tuple[str, ...]) -> int | None:
    """A read-only descriptor of the regular file *root*/*parts*, or None if it is missing, is
    not a regular file, or a component of it is a symbolic link."""
    try:
        here = os.open(root, _DIR)
    except OSError:
        return None
    try:
        for part in parts[:-1]:
            nxt = os.open(part, _DIR, dir_fd=here)
            os.close(here)
            here = nxt
        fd = os.open(parts[-1], _FLAGS, dir_fd=here)
    except OSError:  # ELOOP for a link, ENOTDIR, ENOENT, EACCES
        return None
    finally:
        os.close(here)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    return fd


@dataclass(frozen=True, slots=True)
class Chunk:
    """Bytes of a file from *offset*, and the file's size when they were read."""

    data: bytes
    offset: int
    size: int

    @property
    def next_offset(self) -> int:
        return self.offset + len(self.data)


def read_chunk(fd: int, offset: int, length: int) -> Chunk:
    """Up to *length* bytes (at most MAX_CHUNK) of *fd* from *offset*; the descriptor stays
    open."""
    size = os.fstat(fd).st_size
    start = min(max(offset, 0), size)
    data = os.pread(fd, max(0, min(length, MAX_CHUNK, size - start)), start)
    return Chunk(data, start, size)


def read_inside(root: Path, parts: tuple[str, ...], offset: int, length: int) -> Chunk | None:
    """:func:`read_chunk` of the file *root*/*parts*, or None (see :func:`open_inside`)."""
    fd = open_inside(root, parts)
    if fd is None:
        return None
    try:
        return read_chunk(fd, offset, length)
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)
