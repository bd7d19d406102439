"""The fenced code blocks of a Markdown page, and what the page says to do with each.

A block is run according to its language and the marker on the line right above it:

- ``python``: executed (a page's blocks in order, in one namespace).
- ``console``, ``bash``, ``sh``: each line that starts with ``$ `` is a command run by bash; its
  exit code must be 0, or N when the line ends with ``# exit N``. Other lines are its output.
- ``text`` (and the data languages in :data:`DATA`): shown, never run.
- ``<!-- file: PATH -->`` above a block: its text is written to PATH (relative to the page's
  working folder) for the commands and blocks after it; a Python file is also compiled.
- ``<!-- sketch: REASON -->`` above a block: not run (a Python sketch is still compiled), and
  counted. Any other block that cannot run is an error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

RUN_PYTHON = frozenset({"python", "py"})
RUN_SHELL = frozenset({"console", "bash", "sh", "shell"})
DATA = frozenset({"text", "toml", "json", "ini", "csv", "yaml"})

_FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")
_MARKER = re.compile(r"^<!--\s*(?P<kind>sketch|file):\s*(?P<value>.*?)\s*-->$")
_EXIT = re.compile(r"#\s*exit\s+(?P<code>\d+)\s*$")


@dataclass(frozen=True)
class Block:
    """One fenced block: where it is, its language, its text and its marker."""

    path: Path  # as given to blocks(): Python code is compiled with it, for tracebacks
    line: int  # the line of the block's first line of code (1-based)
    lang: str
    text: str
    sketch: str | None = None  # the reason given by <!-- sketch: ... -->
    file: str | None = None  # the path given by <!-- file: ... -->
    shown: str = ""  # the path as errors name it

    @property
    def where(self) -> str:
        return f"{self.shown or self.path}:{self.line}"

    def commands(self) -> list[tuple[int, str, int]]:
        """(line, command, expected exit code) for each ``$ `` line of a shell block."""
        found = []
        for offset, raw in enumerate(self.text.splitlines()):
            if raw.startswith("$ "):
                cmd = raw[2:].strip()
                wanted = _EXIT.search(cmd)
                found.append((self.line + offset, cmd, int(wanted["code"]) if wanted else 0))
        return found


def blocks(path: Path, root: Path | None = None) -> list[Block]:
    """The fenced blocks of the Markdown file *path*, in order, named relative to *root*.

    Raises:
        ValueError: a fence that is never closed.
    """
    lines = path.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        opened = _FENCE.match(lines[i])
        if not opened:
            i += 1
            continue
        end = _closing(lines, i, opened["fence"])
        body = [ln[len(opened["indent"]) :] for ln in lines[i + 1 : end]]
        kind, value = _marker_above(lines, i)
        found.append(
            Block(
                path=path,
                line=i + 2,
                lang=opened["info"].strip().split(" ")[0].lower(),
                text="\n".join(body) + "\n",
                sketch=value if kind == "sketch" else None,
                file=value if kind == "file" else None,
                shown=str(path.relative_to(root)) if root else str(path),
            )
        )
        i = end + 1
    return found


def _closing(lines: list[str], start: int, fence: str) -> int:
    for j in range(start + 1, len(lines)):
        stripped = lines[j].strip()
        if stripped.startswith(fence[0] * len(fence)) and set(stripped) == {fence[0]}:
            return j
    raise ValueError(f"line {start + 1}: a code fence that is never closed")


def _marker_above(lines: list[str], fence_line: int) -> tuple[str | None, str]:
    """The marker on the nearest non-blank line above the fence, if that line is one."""
    j = fence_line - 1
    while j >= 0 and not lines[j].strip():
        j -= 1
    found = _MARKER.match(lines[j].strip()) if j >= 0 else None
    return (found["kind"], found["value"]) if found else (None, "")


def problem(block: Block) -> str | None:
    """Why *block* is neither runnable nor explicitly marked, or None when it is fine."""
    if block.sketch is not None:
        return None if block.sketch else f"{block.where}: a sketch marker needs a reason"
    if block.file is not None:
        return (
            None
            if block.file and not block.file.startswith("/")
            else (f"{block.where}: a file marker needs a relative path")
        )
    if block.lang in RUN_PYTHON or block.lang in DATA:
        return None
    if block.lang in RUN_SHELL:
        if block.commands():
            return None
        return f"{block.where}: a {block.lang} block with no '$ ' command (fence it as text?)"
    return (
        f"{block.where}: a block fenced as {block.lang or 'nothing'!r} is neither run nor "
        "marked: fence it as text, or put <!-- sketch: why --> above it"
    )
