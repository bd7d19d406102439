"""Text that did not come from Rota's own code, made safe to print on a terminal.

An error message, a parameter, a task id, a file name, a log line or a dataset URI is data. Printed
as it is, its control characters act on the terminal: ESC starts a sequence that can recolour,
move the cursor, rewrite the window title or make a link; CR and backspace overwrite what was
printed before; bidirectional overrides reorder what the reader sees; a lone surrogate (an
undecodable file name) makes the write itself fail. :func:`safe_text` replaces each of them with
a visible escape (``\\x1b``, ``\\r``, ``\\u202e``), so the text reads as what it is and nothing in
it acts. Markup (``[red]``, ``[link=…]``) is not this module's concern: the CLI's consoles never
parse markup at all (see :mod:`rota.cli.console`).
"""

from __future__ import annotations

from typing import Final

_NAMED: Final = {0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r"}

_BIDI_AND_BREAKS: Final = (
    0x061C,  # arabic letter mark
    0x200E,  # left-to-right mark
    0x200F,  # right-to-left mark
    *range(0x202A, 0x202F),  # embeddings and overrides (LRE RLE PDF LRO RLO)
    *range(0x2066, 0x206A),  # isolates (LRI RLI FSI PDI)
    0x2028,  # line separator
    0x2029,  # paragraph separator
)


def _escape(code: int) -> str:
    if code in _NAMED:
        return _NAMED[code]
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def _table(*, keep: frozenset[int]) -> dict[int, str]:
    codes = [*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0), *_BIDI_AND_BREAKS]
    codes += range(0xD800, 0xE000)  # lone surrogates (from surrogateescape decoding)
    return {code: _escape(code) for code in codes if code not in keep}


_ONE_LINE: Final = _table(keep=frozenset())
_MULTILINE: Final = _table(keep=frozenset({0x09, 0x0A}))


def safe_text(value: object, *, multiline: bool = False) -> str:
    """*value* as text in which no character acts on a terminal.

    C0 controls (ESC, CR, BEL, backspace, ...), DEL, C1 controls, bidirectional marks, overrides
    and isolates, line and paragraph separators and lone surrogates become visible escapes such as
    ``\\x1b`` or ``\\u202e``. Backslashes are left alone, so ordinary text (a Windows path) reads
    the same.

    Args:
        value: anything; a non-string is turned into text with ``str()`` first.
        multiline: keep newlines and tabs (a log, a table cell); otherwise they are escaped too, so
            the result is always one line.

    Returns:
        The safe text.
    """
    text = value if isinstance(value, str) else str(value)
    if multiline:
        return text.replace("\r\n", "\n").translate(_MULTILINE)
    return text.translate(_ONE_LINE)
