"""A command's output as a task prints it: copied to the attempt's stdout as it comes, its
last non-empty line kept (a shell or container task's output when it writes no file)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable


def stdout_sink() -> Callable[[bytes], None]:
    """Where the command's stdout goes: this thread's stdout, looked up here, in the attempt's
    thread (thread executors route ``sys.stdout`` per thread, so the pump must not look)."""
    stream = sys.stdout
    if not has_fileno(stream):

        def write_text(raw: bytes) -> None:
            stream.write(raw.decode(errors="replace"))

        return write_text
    fd = stream.fileno()

    def write(raw: bytes) -> None:
        view = memoryview(raw)
        while view:
            view = view[os.write(fd, view) :]

    return write


def copy_lines(
    proc: subprocess.Popen[bytes], lines: list[str], sink: Callable[[bytes], None]
) -> None:
    """Copy the command's stdout to *sink*, keeping its last non-empty line."""
    assert proc.stdout is not None
    for raw in proc.stdout:
        sink(raw)
        line = raw.decode(errors="replace")
        if line.strip():
            lines.append(line.rstrip("\n"))
            del lines[:-1]


def has_fileno(stream: object) -> bool:
    """Whether *stream* has a real file descriptor (pytest's capture and thread routing may not)."""
    try:
        stream.fileno()  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError):
        return False
    return True
