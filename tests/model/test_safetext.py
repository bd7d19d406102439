"""safe_text: every character that acts on a terminal becomes a visible escape; text stays text."""

from __future__ import annotations

import unicodedata

import pytest

from rota.model.safetext import safe_text


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("\x1b[31mred\x1b[0m", "\\x1b[31mred\\x1b[0m"),
        (
            "\x1b]8;;http://evil\x07click\x1b]8;;\x07",
            "\\x1b]8;;http://evil\\x07click\\x1b]8;;\\x07",
        ),
        ("done\rFAKE", "done\\rFAKE"),
        ("ab\x08\x08xy", "ab\\x08\\x08xy"),
        ("nul\x00del\x7f", "nul\\x00del\\x7f"),
        ("c1 \x9b31m csi", "c1 \\x9b31m csi"),
        ("\u202eevil.py", "\\u202eevil.py"),
        ("iso\u2066late\u2069", "iso\\u2066late\\u2069"),
        ("not\udcffutf8", "not\\udcffutf8"),
        ("one\ntwo\tthree", "one\\ntwo\\tthree"),
        ("line\u2028sep", "line\\u2028sep"),
    ],
)
def test_controls_become_visible_escapes(raw: str, shown: str) -> None:
    assert safe_text(raw) == shown


def test_markup_and_ordinary_text_are_left_as_they_are() -> None:
    text = "[/] [link=x]y[/link] [bold red]no[/] C:\\temp\\x1b :smile: é 日本 ✓ → 🙂"
    assert safe_text(text) == text


def test_multiline_keeps_newlines_and_tabs_and_reads_crlf_as_a_newline() -> None:
    assert safe_text("a\n\tb\r\nc\rd\x1b", multiline=True) == "a\n\tb\nc\\rd\\x1b"


def test_the_result_has_no_control_character_at_all() -> None:
    every = "".join(chr(c) for c in [*range(0x00, 0xA0), *range(0x2000, 0x2070), 0xD800, 0xDFFF])
    for multiline, allowed in ((False, set()), (True, {"\n", "\t"})):
        out = safe_text(every, multiline=multiline)
        bad = {
            ch
            for ch in out
            if ch not in allowed and unicodedata.category(ch) in ("Cc", "Cs", "Zl", "Zp")
        }
        assert bad == set()
        for ch in "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f":
            assert ch not in out
        out.encode("utf-8")  # no lone surrogate left: the write cannot fail


def test_non_strings_are_turned_into_text_first() -> None:
    assert safe_text(ValueError("bad\x1b")) == "bad\\x1b"
    assert safe_text(42) == "42"
