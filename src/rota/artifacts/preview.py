"""Short, human previews of task outputs, for the CLI and the web pages.

A preview never walks a whole large value: arrays show their shape and a few values, tables their
shape and first rows, anything else a ``reprlib`` repr cut to a few hundred characters.
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


def _numpy(value: Any) -> str | None:
    import numpy as np

    if not isinstance(value, np.ndarray):
        return None
    first = np.array2string(value.ravel()[:6], separator=", ", threshold=6)
    more = ", …" if value.size > 6 else ""
    return f"ndarray shape={value.shape} dtype={value.dtype} {first[:-1]}{more}]"


def _pandas(value: Any) -> str | None:
    import pandas as pd

    if isinstance(value, pd.DataFrame):
        rows, cols = value.shape
        return f"DataFrame {rows} rows x {cols} columns\n{value.head(_HEAD_ROWS).to_string()}"
    if isinstance(value, pd.Series):
        return f"Series {len(value)} rows dtype={value.dtype}\n{value.head(_HEAD_ROWS).to_string()}"
    return None


def _arrow(value: Any) -> str | None:
    import pyarrow as pa

    if not isinstance(value, pa.Table):
        return None
    schema = value.schema.to_string(show_schema_metadata=False)
    return f"pyarrow.Table num_rows={value.num_rows}\n{schema}"


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
    return "\n".join(_cut(line, max_chars) for line in text.splitlines()[: _HEAD_ROWS + 3])
