"""Helpers for ``cache_key=``: key a cached task on more than its code, inputs and run facts.

A path given to a task is a string: its key changes when the path changes, not when the file
behind it does. :func:`file_content` adds the content of files to the key::

    from rota import task
    from rota.cache import file_content

    @task(cache=True, cache_key=file_content("data/raw.csv", "conf/{{ params.profile }}.yaml"))
    def load(path: str, profile: str) -> "pd.DataFrame": ...

The key is then the task's usual key (code, inputs, constants, run facts, rendered templates)
plus a BLAKE2b hash of each file's bytes (a folder: of the names and bytes of every file under
it). Paths are templates like a shell task's (``{{ ds }}``, ``{{ params.x }}``) and relative ones
are read from the folder Rota runs in, as a task run by the local executor sees it. A path that
does not exist gives the attempt no key: it runs, and ``rota cache explain`` says why.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from rota.errors import DefinitionError
from rota.model import templating
from rota.model.policies import CacheInputs

_CHUNK: Final = 1 << 20


def file_content(*paths: str | os.PathLike[str]) -> FileContent:
    """A ``cache_key=`` that adds the content of *paths* (files or folders) to a task's key.

    Args:
        paths: Files or folders, relative to the folder Rota runs in or absolute; templates
            over the attempt's variables (``data/{{ ds }}.csv``).

    Raises:
        DefinitionError: no path, or a path that is not a non-empty string or an invalid template.
    """
    if not paths:
        raise DefinitionError("file_content() needs at least one path")
    texts: list[str] = []
    for path in paths:
        text = os.fspath(path) if isinstance(path, os.PathLike) else path
        if not isinstance(text, str) or not text.strip():
            raise DefinitionError(
                f"file_content(): a path must be a non-empty string, got {path!r}"
            )
        if templating.is_template(text):
            templating.check_template(text, where=f"file_content({text!r})")
        texts.append(text)
    return FileContent(tuple(texts))


@dataclass(frozen=True, slots=True)
class FileContent:
    """The key parts :func:`file_content` adds: a content hash per path."""

    paths: tuple[str, ...]

    def __call__(self, inputs: CacheInputs) -> Mapping[str, str]:
        """``{"file PATH": "blake2b:<hex>"}`` for each path, rendered with *inputs*' variables.

        Raises:
            TemplateRenderError: a path does not render.
            FileNotFoundError: a path does not exist.
            OSError: a file cannot be read.
        """
        out: dict[str, str] = {}
        for text in self.paths:
            path = text
            if templating.is_template(text):
                path = templating.render(text, inputs.variables, where=f"file_content({text!r})")
            out[f"file {path}"] = f"blake2b:{content_hash(Path(path))}"
        return out


def content_hash(path: Path) -> str:
    """A BLAKE2b digest of a file's bytes, or of a folder's file names and bytes.

    Folders are walked in name order without following links to folders; a link to a file is
    read through. Only names relative to *path* count, so a moved folder keeps its hash.

    Raises:
        FileNotFoundError: *path* does not exist.
        OSError: something under it cannot be read.
    """
    if not path.is_dir():
        h = hashlib.blake2b(digest_size=16)
        _feed(h, path)
        return h.hexdigest()
    h = hashlib.blake2b(digest_size=16)
    for root, dirs, files in os.walk(path, onerror=_raise):
        dirs.sort()
        for name in sorted(files):
            full = Path(root, name)
            h.update(full.relative_to(path).as_posix().encode("utf-8", "surrogateescape"))
            h.update(b"\0")
            inner = hashlib.blake2b(digest_size=16)
            _feed(inner, full)
            h.update(inner.digest())
    return h.hexdigest()


def _feed(h: hashlib.blake2b, path: Path) -> None:
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)


def _raise(err: OSError) -> None:
    raise err


__all__ = ["FileContent", "content_hash", "file_content"]
