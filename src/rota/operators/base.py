"""What every operator shares: the execution context handed to it by the attempt runner."""

from __future__ import annotations

import ast
import functools
import hashlib
import inspect
import textwrap
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class ExecContext:
    """Facts about the attempt being run; a Python task with a ``ctx`` parameter receives it."""

    run_id: str
    flow: str
    task_id: str
    try_number: int
    params: Mapping[str, Any] = field(default_factory=dict)

    def environ(self) -> dict[str, str]:
        """Environment variables that describe this attempt to a child process."""
        return {
            "ROTA_RUN_ID": self.run_id,
            "ROTA_FLOW": self.flow,
            "ROTA_TASK_ID": self.task_id,
            "ROTA_TRY_NUMBER": str(self.try_number),
        }


def digest(*parts: str) -> str:
    """A short, stable hex digest of text parts."""
    h = hashlib.blake2b(digest_size=16)
    for part in parts:
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()


@functools.lru_cache(maxsize=4096)
def source_hash(fn: Callable[..., Any]) -> str:
    """Digest of *fn*'s source with comments, docstrings and formatting normalised away.

    Falls back to the compiled bytecode when the source is not available.
    """
    try:
        src = textwrap.dedent(inspect.getsource(fn))
        tree = ast.parse(src)
    except (OSError, TypeError, SyntaxError):
        code = getattr(fn, "__code__", None)
        return digest(getattr(fn, "__qualname__", repr(fn)), repr(code.co_code if code else None))
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            node.decorator_list = []
            body = node.body
            first = body[0] if body else None
            is_doc = isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
            if is_doc and isinstance(first.value.value, str):  # type: ignore[union-attr]
                node.body = body[1:] or [ast.Pass()]
    return digest(ast.dump(tree, annotate_fields=False))
