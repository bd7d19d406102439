"""The CLI's consoles: outside text is printed as text, never as markup or terminal controls.

Everything the CLI prints mixes Rota's own words with text it did not write: error messages, ids,
parameters, file names, log lines, dataset URIs. :class:`SafeConsole` reads no markup and no emoji
codes in any string it is given, and passes every string through
:func:`~rota.model.safetext.safe_text`, so ``[/]`` and ``[link=x]`` print as those characters and
an ESC byte as ``\\x1b``. Rota's own styling is never markup: it is :class:`rich.text.Text` with
explicit styles, built with :func:`line`, which makes the text of each part safe too.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console, HighlighterType, JustifyMethod, OverflowMethod
from rich.style import Style
from rich.text import Text

from rota.model.safetext import safe_text


class SafeConsole(Console):
    """A rich console that prints every string as plain, safe text.

    Markup, emoji codes and highlighting are off, and a call cannot turn markup or emoji back on.
    Strings given to :meth:`print`, and those in tables and live displays, are made safe
    (newlines and tabs kept); a :class:`~rich.text.Text` is printed as built, so build it with
    :func:`line`.
    """

    def __init__(self, **options: Any) -> None:
        super().__init__(**{**options, "markup": False, "emoji": False, "highlight": False})

    def render_str(
        self,
        text: str,
        *,
        style: str | Style = "",
        justify: JustifyMethod | None = None,
        overflow: OverflowMethod | None = None,
        emoji: bool | None = None,
        markup: bool | None = None,
        highlight: bool | None = None,
        highlighter: HighlighterType | None = None,
    ) -> Text:
        """*text* as a plain :class:`~rich.text.Text`: no markup, no emoji, control characters
        replaced by visible escapes (the *emoji* and *markup* arguments are ignored)."""
        del emoji, markup
        return super().render_str(
            safe_text(text, multiline=True),
            style=style,
            justify=justify,
            overflow=overflow,
            emoji=False,
            markup=False,
            highlight=highlight,
            highlighter=highlighter,
        )


def line(*parts: object | tuple[object, str]) -> Text:
    """One styled line: each part is text (made safe, on one line) or a ``(text, style)`` pair.

    A :class:`~rich.text.Text` part is kept as it is (it was built by this function or by Rota's
    own code).
    """
    out = Text()
    for part in parts:
        if isinstance(part, Text):
            out.append_text(part)
        elif isinstance(part, tuple):
            value, style = part
            out.append(safe_text(value), style=style)
        else:
            out.append(safe_text(part))
    return out
