"""SafeConsole: strings print as plain safe text, in tables and live displays too; Rota's own
styles still apply."""

from __future__ import annotations

import io

from rich.table import Table
from rich.text import Text

from rota.cli.console import SafeConsole, line

HOSTILE = "[/] [link=http://x]y[/link] [bold]b[/] :smile: \x1b[31mred\x1b]0;title\x07 \u202eevil"
SHOWN = "[/] [link=http://x]y[/link] [bold]b[/] :smile: \\x1b[31mred\\x1b]0;title\\x07 \\u202eevil"


def _console(*, terminal: bool = False) -> tuple[SafeConsole, io.StringIO]:
    buf = io.StringIO()
    color = "standard" if terminal else None
    console = SafeConsole(file=buf, width=400, force_terminal=terminal, color_system=color)
    return console, buf


def test_a_string_prints_literally_even_when_a_call_asks_for_markup() -> None:
    console, buf = _console()
    console.print(HOSTILE)
    console.print(HOSTILE, markup=True, emoji=True, style="red")
    assert buf.getvalue() == f"{SHOWN}\n{SHOWN}\n"


def test_table_cells_and_titles_are_safe_text() -> None:
    console, buf = _console()
    table = Table(title=HOSTILE)
    table.add_column("value")
    table.add_row(HOSTILE)
    console.print(table)
    out = buf.getvalue()
    assert "\x1b" not in out and "\u202e" not in out
    assert out.count(SHOWN) == 2


def test_on_a_terminal_only_rotas_own_styles_emit_escapes() -> None:
    console, buf = _console(terminal=True)
    console.print(line("state ", ("failed", "red"), " ", HOSTILE))
    out = buf.getvalue()
    assert "\x1b[31mfailed\x1b[0m" in out  # Rota's style, as an escape sequence
    assert SHOWN in out
    assert "\x1b]" not in out and "\x07" not in out  # no title or link sequence from the value
    assert out.replace("\x1b[31m", "").replace("\x1b[0m", "").count("\x1b") == 0


def test_line_keeps_text_parts_and_makes_every_string_one_line() -> None:
    made = line("a\nb", ("c\x1b", "red"), Text("own", style="green"))
    assert made.plain == "a\\nbc\\x1bown"
    assert [(s.start, s.end, str(s.style)) for s in made.spans] == [(4, 9, "red"), (9, 12, "green")]
