"""Short, human previews of task outputs, for the CLI and the web pages.

A preview never walks a whole large value: arrays show their shape and a few values, tables their
shape and first rows, anything else a ``reprlib`` repr cut to a few hundred characters. A preview
is plain text with every non-printable character escaped (``\\x1b``, ``\\u202e``), so a value
cannot move a terminal's cursor or change its colours.

This module previews values already in memory; :mod:`rota.artifacts.peek` previews stored outputs
from their bytes without loading what would run code.
"""

from __future__ import annotations

import reprlib
from typing import Any, Final

MAX_CHARS: Final = 300
_HEAD_ROWS: Final = 5

_REPR = reprlib.Repr()
_REPR.maxstring = 120
_REPR.maxother = 120
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = 8


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def printable(text: str) -> str:
    """*text* with every non-printable character but the newline escaped as in a repr."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c == "\n" else repr(c)[1:-1] for c in text)


def lines(text: str, max_chars: int = MAX_CHARS, max_lines: int = _HEAD_ROWS + 3) -> str:
    """*text* made printable, cut to *max_lines* lines of at most *max_chars* characters."""
    kept = printable(text).splitlines()[:max_lines]
    return "\n".join(_cut(line, max_chars) for line in kept)


def array_summary(shape: tuple[int, ...], dtype: Any, first: Any, size: int) -> str:
    """One line for an array: its *shape*, *dtype* and *first* values (a 1-d array, of *size*)."""
    import numpy as np

    shown = "" if first is None else np.array2string(first[:6], separator=", ", threshold=6)
    more = ", …" if size > 6 and shown else ""
    return f"ndarray shape={shape} dtype={dtype} {shown[:-1]}{more}{shown[-1:]}".rstrip()


def frame_summary(rows: int, head: Any) -> str:
    """A DataFrame of *rows* rows, shown by its *head* (a DataFrame of its first rows)."""
    cols = head.shape[1]
    return f"DataFrame {rows} rows x {cols} columns\n{head.head(_HEAD_ROWS).to_string()}"


def table_summary(rows: int, schema: Any) -> str:
    """A pyarrow Table of *rows* rows with *schema*."""
    text = schema.to_string(show_field_metadata=False, show_schema_metadata=False)
    return f"pyarrow.Table num_rows={rows}\n{text}"


def _numpy(value: Any) -> str | None:
    import numpy as np

    if not isinstance(value, np.ndarray):
        return None
    return array_summary(value.shape, value.dtype, value.ravel()[:6], value.size)


def _pandas(value: Any) -> str | None:
    import pandas as pd

    if isinstance(value, pd.DataFrame):
        return frame_summary(len(value), value)
    if isinstance(value, pd.Series):
        return f"Series {len(value)} rows dtype={value.dtype}\n{value.head(_HEAD_ROWS).to_string()}"
    return None


def _arrow(value: Any) -> str | None:
    import pyarrow as pa

    if not isinstance(value, pa.Table):
        return None
    return table_summary(value.num_rows, value.schema)


def preview(value: Any, max_chars: int = MAX_CHARS) -> str:
    """A short preview of *value*: a few lines at most, *max_chars* per line at most."""
    module = type(value).__module__.split(".", 1)[0]
    special = {"numpy": _numpy, "pandas": _pandas, "pyarrow": _arrow}.get(module)
    try:
        text = special(value) if special is not None else None
        if text is None:
            text = _REPR.repr(value)
    except Exception as err:  # a broken __repr__ must not break a page that shows outputs
        text = f"<{type(value).__qualname__}: no preview ({type(err).__name__})>"
    return lines(text, max_chars)
