"""Where a value may stand in a bash command template, so that quoting makes it one literal word.

A template renders every ``{{ }}`` through :func:`shlex.quote`. That holds only where bash parses a
single-quoted string as a literal word: not inside other quotes, backticks, comments or
here-documents, not right after ``\\`` or ``$``, and not where bash evaluates text as arithmetic
(``$(( ))``, ``(( ))``, ``$[ ]``, array subscripts, ``${ }``, ``[[ ]]``). This module follows bash's
quoting over the literal text of a template to find expressions written anywhere else. Pure: it
reads tokens, runs nothing, and does not import jinja2.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

_UNSAFE: Mapping[str, str] = {
    "sq": "inside shell quotes (drop the quotes: the value is quoted for you)",
    "dq": "inside shell quotes (drop the quotes: the value is quoted for you)",
    "ansi": "inside shell quotes (drop the quotes: the value is quoted for you)",
    "bt": "inside backticks (use $( ) instead)",
    "comment": "inside a shell comment",
    "heredoc": 'after a here-document (use an environment variable such as "$ROTA_PARAM_X")',
}
_EVALUATED = (
    "inside $(( )), an array subscript, ${ } or [[ ]], where bash may evaluate a quoted value as "
    'code (use [ ] for tests, or an environment variable such as "$ROTA_PARAM_X")'
)
_CLOSERS: Mapping[str, str] = {
    "param": "}",
    "subscript": "]",
    "bracket": "]",
    "dtest": "]]",
    "arith": "))",
    "paren": ")",
}
_BREAKS = frozenset(" \t\n;&|()<>")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


@dataclass
class _ShellScan:
    """Follows bash's quoting over the literal text of a command template, one piece at a time.

    A context stack: ``cmd`` is plain command text (also inside ``$( )``), where a quoted word is
    a literal word; every other context makes an expression unsafe. Unknown constructs err on the
    side of rejecting a template, never of accepting one.
    """

    stack: list[str] = field(default_factory=lambda: ["cmd"])
    word: str = ""
    escaped: bool = False
    dollar: bool = False

    def problem(self) -> str | None:
        """Why an expression may not stand here, or None when it may."""
        top = self.stack[-1]
        if "heredoc" in self.stack:
            return _UNSAFE["heredoc"]
        if top != "cmd":
            return _UNSAFE.get(top, _EVALUATED)
        if self.escaped:
            return "right after a backslash"
        if self.dollar:
            return "right after '$'"
        return None

    def key(self) -> tuple[object, ...]:
        """The state, as far as it decides what follows (compared across ``{% %}`` tags)."""
        ident = bool(_IDENT.match(self.word))
        return (tuple(self.stack), self.escaped, self.dollar, self.word == "", ident)

    def feed(self, text: str) -> None:
        """Advance over literal shell text."""
        i = 0
        while i < len(text):
            if self.escaped:
                self.escaped = False
                self.word += text[i]
                i += 1
                continue
            self.dollar = False
            i = self._step(text, i)

    def _step(self, text: str, i: int) -> int:
        top = self.stack[-1]
        if top == "cmd":
            return self._cmd(text, i)
        if top in ("sq", "ansi", "bt", "comment"):
            return self._closing(text, i, top)
        if top == "heredoc":
            return len(text)
        return self._nested(text, i, top)

    def _cmd(self, text: str, i: int) -> int:
        c, rest = text[i], text[i + 1 :]
        at_start = self.word == ""
        self.word = "" if c in _BREAKS else self.word + c
        if c == "#" and at_start:
            self.stack.append("comment")
        elif c == "[" and at_start and rest.startswith("["):
            self.stack.append("dtest")
            return i + 2
        elif c == "[" and _IDENT.match(self.word[:-1]):
            self.stack.append("subscript")
        elif c == "<" and rest.startswith("<"):
            if rest.startswith("<<"):  # a here-string: its word is an ordinary word
                return i + 3
            self.stack.append("heredoc")
            return i + 2
        elif c == "(" and rest.startswith("("):
            self.stack.append("arith")
            return i + 2
        elif c == ")" and len(self.stack) > 1:
            self.stack.pop()
        elif c != "#":
            return self._common(text, i)
        return i + 1

    def _common(self, text: str, i: int) -> int:
        """Quotes, escapes, ``$`` expansions and subshells: the same in most contexts."""
        c, rest = text[i], text[i + 1 :]
        opens = {"'": "sq", '"': "dq", "`": "bt", "(": "cmd"}
        if c == "\\":
            self.escaped = True
        elif c in opens:
            self.stack.append(opens[c])
        elif c == "$":
            return self._dollar(rest, i)
        return i + 1

    def _dollar(self, rest: str, i: int) -> int:
        starts = (("((", "arith"), ("(", "cmd"), ("{", "param"), ("[", "bracket"))
        for prefix, context in (*starts, ("'", "ansi"), ('"', "dq")):
            if rest.startswith(prefix):
                self.stack.append(context)
                return i + 1 + len(prefix)
        self.dollar = rest == ""
        return i + 1

    def _closing(self, text: str, i: int, top: str) -> int:
        c = text[i]
        closer = {"sq": "'", "ansi": "'", "bt": "`", "comment": "\n"}[top]
        if c == "\\" and top in ("ansi", "bt"):
            self.escaped = True
        elif c == closer:
            self.stack.pop()
            self.word = "" if top == "comment" else self.word
        return i + 1

    def _nested(self, text: str, i: int, top: str) -> int:
        """Double quotes, ``${ }``, subscripts, ``[[ ]]`` and arithmetic."""
        c = text[i]
        closer = '"' if top == "dq" else _CLOSERS[top]
        if text.startswith(closer, i):
            self.stack.pop()
            return i + len(closer)
        if c == "(" and top in ("arith", "paren"):
            self.stack.append("paren")
            return i + 1
        if top == "dq" and c in "'(":
            return i + 1
        return self._common(text, i)


@dataclass(frozen=True, slots=True)
class Misplaced:
    """An expression of a command template that stands where quoting cannot make it one word."""

    lineno: int
    problem: str


def misplaced_expression(tokens: Iterable[tuple[int, str, str]]) -> Misplaced | None:
    """The first expression standing where a quoted value is not a literal shell word.

    Args:
        tokens: A command template's Jinja tokens, ``(lineno, kind, value)``, as
            ``jinja2.Environment.lex`` yields them.

    Returns:
        Where and why, or None when every ``{{ }}`` stands where a quoted word is a word and the
        shell's quoting is the same at every ``{% %}`` tag (so loops and branches cannot change it).
    """
    scan = _ShellScan()
    first_block: tuple[object, ...] | None = None
    for lineno, kind, value in tokens:
        if kind == "data":
            scan.feed(value)
        elif kind == "variable_begin":
            problem = scan.problem()
            if problem is not None:
                return Misplaced(lineno, f"{{{{ ... }}}} {problem}")
            scan.feed("0")  # the value: one word, never a name that [ could subscript
        elif kind == "block_begin":
            first_block = first_block or scan.key()
            if scan.key() != first_block:
                return Misplaced(
                    lineno, "shell quotes, brackets or comments open across {% %} tags"
                )
    return None
