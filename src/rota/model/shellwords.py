"""Where a template value may stand in a bash command, decided by a real bash parser.

A shell command template never has its values spliced into its text. Each ``{{ ... }}`` renders
to a reference ``${ROTA_TPL_<n>}`` to an environment variable that the task sets to the value
(:mod:`rota.model.templating`), so bash parses only the template author's text and expands the
value once, as data. What is left to check is that bash would not evaluate such a reference again
or read it as a name: this module parses the command with ``bashlex`` (a port of bash's own
grammar) and accepts a reference only as (part of) an ordinary word of a simple command, a
redirection target or a ``for`` list, never

- inside single quotes, ``$'...'``, a comment or a here-document (it would not expand);
- inside ``$(( ))``, ``(( ))``, ``$[ ]``, ``[[ ]]``, ``${...}`` or an array subscript, where bash
  evaluates text as arithmetic, and ``$( )`` in a value would run;
- where :mod:`rota.model.shellrules` says a command takes the word as code or a name (``eval``,
  ``bash -c``, ``declare``, ``read``, the command's own name, ...).

Commands the parser cannot read (``case``, ``$(( ))``, ``[[ ]]``, ``time``, arrays ``a=(...)``)
are refused when they hold a reference: refusing is safe, guessing is not. A reference that is
accepted is then made one word: wrapped in double quotes where it stands outside them.

Pure: parses text, runs nothing.
"""

from __future__ import annotations

import functools
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from rota.model import bashgrammar as grammar
from rota.model.shellrules import RISKY_NAMES, Word, judge

REF_PREFIX: Final = "ROTA_TPL_"
"""Prefix of the environment variables that carry a shell template's values."""

_REF = re.compile(r"\$\{ROTA_TPL_([0-9]+)\}")
_NAME_EQ = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\+?=")
_ARITH = "inside (( )), where bash evaluates text as arithmetic (a $( ) in a value would run)"
_HINT = 'use an environment variable such as "$ROTA_PARAM_X" in a script file instead'
_UNSUPPORTED: Final[Mapping[str, str]] = {
    "arithmetic": "$(( )) or $[ ]",
    "pattern": "case",
    "select": "select",
    "coproc": "coproc",
    "time": "time",
}


def ref(index: int) -> str:
    """The reference a template's *index*-th value renders to (bare; quoted when placed)."""
    return "${" + f"{REF_PREFIX}{index}" + "}"


class Misplaced(Exception):
    """Raised when a reference stands where it would not be one literal word, or be code.

    Attributes:
        offset: Where in the command text the reference (or the problem) starts.
        problem: Why, as a phrase ("inside single quotes, ...").
    """

    def __init__(self, offset: int, problem: str) -> None:
        super().__init__(f"{problem} (at offset {offset})")
        self.offset = offset
        self.problem = problem


@dataclass
class _Scan:
    """What a walk over one parsed command found."""

    text: str
    placed: dict[int, bool] = field(default_factory=dict)  # offset of a ref -> stands quoted
    heredocs: list[tuple[int, int]] = field(default_factory=list)
    expansions: list[tuple[int, int]] = field(default_factory=list)  # ${...} holding a ref
    functions: frozenset[str] = frozenset()


@functools.lru_cache(maxsize=1024)
def quote_refs(text: str) -> str:
    """Check every reference in *text* and return *text* with each one a double-quoted word.

    Args:
        text: A bash command holding references made by :func:`ref`.

    Returns:
        The command to run: references outside double quotes are wrapped in them.

    Raises:
        Misplaced: a reference stands where bash would not expand it exactly once as data, or
            the command cannot be parsed.
    """
    first = _scan(text)
    out: list[str] = []
    last = 0
    for match in _REF.finditer(text):
        quoted = first.placed.get(match.start())
        if quoted is None:
            raise Misplaced(match.start(), _unplaced(first, match.start()))
        out += [text[last : match.start()], match.group() if quoted else f'"{match.group()}"']
        last = match.end()
    result = "".join([*out, text[last:]])
    again = _scan(result)
    for match in _REF.finditer(result):
        if not again.placed.get(match.start(), False):  # quoting the refs changed the parse
            raise Misplaced(match.start(), "where quoting cannot make it one word")
    return result


def _unplaced(scan: _Scan, offset: int) -> str:
    if any(a <= offset < b for a, b in scan.heredocs):
        return f"inside a here-document ({_HINT})"
    if any(a <= offset < b for a, b in scan.expansions):
        return "inside ${ }, where bash may evaluate it as arithmetic or a pattern"
    return (
        "inside single quotes, $'...', a comment or after a backslash, where it is not expanded"
        " (drop the quotes: a value is one word by itself)"
    )


def _scan(text: str) -> _Scan:
    nodes = _parse(text)
    scan = _Scan(text, functions=frozenset(_function_names(nodes)))
    _check_integer_declarations(nodes)
    walker = _Walker(scan)
    for node in nodes:
        walker.visit(node, None)
    return scan


class _OverBudget(Exception):
    """Raised inside bashlex when a parse makes far more calls than its text can need."""


def _bashlex(text: str) -> list[Any]:
    """``bashlex.parse(text)``, stopped after a number of Python calls bounded by its length.

    bashlex loops without end on some input (a ``${`` whose ``}`` lies in another word), growing a
    string each turn. A parse makes about 40 calls per character, so 200 per character (plus a
    floor) never stops a real one and stops a runaway within a fraction of a second. Counting calls
    with a trace function keeps the limit deterministic (no clock), and only the parse is traced.

    Raises:
        _OverBudget: the parse ran past the budget.
    """
    bashlex = grammar.bashlex()
    budget = 200 * len(text) + 50_000
    calls = 0

    def count(frame: Any, event: str, arg: Any) -> None:
        nonlocal calls
        calls += 1
        if calls > budget:
            raise _OverBudget

    previous = sys.gettrace()
    sys.settrace(count)
    try:
        return list(bashlex.parse(text))
    finally:
        sys.settrace(previous)


def _parse(text: str) -> list[Any]:
    errors = grammar.bashlex().errors
    try:
        return _bashlex(text)
    except _OverBudget:
        raise Misplaced(
            0, f"in a command Rota's shell parser cannot read in time; {_HINT}"
        ) from None
    except errors.ParsingError as err:
        raise Misplaced(err.position, _parse_problem(text, err.message)) from None
    except NotImplementedError as err:
        what = next((v for k, v in _UNSUPPORTED.items() if k in str(err)), "this construct")
        problem = f"in a command using {what}, which Rota's shell parser cannot check; {_HINT}"
        raise Misplaced(0, problem) from None
    except Exception as err:  # bashlex fails on some input it should parse (a lone comment)
        problem = f"in a command Rota's shell parser cannot read ({type(err).__name__}); {_HINT}"
        raise Misplaced(0, problem) from None


def _parse_problem(text: str, message: str) -> str:
    for construct, name in (("[[", "[[ ]]"), ("=(", "array assignments"), ("((", "(( ))")):
        if construct in text:
            return f"in a command using {name}, which Rota's shell parser cannot check; {_HINT}"
    return f"in a command bash would not parse ({message})"


def _walk(node: Any) -> Iterator[Any]:
    """Every node under *node*, itself included, in source order."""
    yield node
    for child in _children(node):
        yield from _walk(child)


def _children(node: Any) -> Iterable[Any]:
    for attr in ("parts", "list", "redirects"):
        yield from getattr(node, attr, None) or ()
    for attr in ("command", "output", "heredoc"):
        child = getattr(node, attr, None)
        if child is not None and hasattr(child, "kind"):
            yield child


def _function_names(nodes: list[Any]) -> Iterator[str]:
    for top in nodes:
        for node in _walk(top):
            if node.kind == "function":
                yield next(p.word for p in node.parts if p.kind == "word")


def _check_integer_declarations(nodes: list[Any]) -> None:
    """Refuse ``declare -i`` and kin: a later plain assignment to the name is arithmetic."""
    for top in nodes:
        for node in _walk(top):
            if node.kind != "command":
                continue
            words = [p for p in node.parts if p.kind == "word"]
            if not words or words[0].word not in ("declare", "typeset", "local", "export"):
                continue
            for w in words[1:]:
                if w.word.startswith(("-", "+")) and "i" in w.word:
                    problem = f"near {words[0].word} {w.word}: an integer variable evaluates"
                    raise Misplaced(w.pos[0], problem + " a value assigned to it as arithmetic")


class _Walker:
    """Visits a bashlex tree, recording where each reference stands or refusing it."""

    def __init__(self, scan: _Scan) -> None:
        self.scan = scan
        self._visit: Mapping[str, Callable[[Any, str | None], None]] = {
            "command": self._command,
            "compound": self._compound,
            "for": self._for,
            "function": self._function,
            "word": self._word,
            "assignment": self._assignment,
            "redirect": self._redirect,
        }

    def visit(self, node: Any, refuse: str | None) -> None:
        """Record the references under *node*; *refuse* says why none may stand there."""
        handler = self._visit.get(node.kind)
        if handler is not None:
            handler(node, refuse)
            return
        for child in _children(node):
            self.visit(child, refuse)

    def _compound(self, node: Any, refuse: str | None) -> None:
        items = list(node.list)
        if _is_arithmetic(items):
            refuse = _ARITH
        for child in [*items, *(getattr(node, "redirects", None) or ())]:
            self.visit(child, refuse)

    def _for(self, node: Any, refuse: str | None) -> None:
        seen_name = False
        for part in node.parts:
            if part.kind == "word" and not seen_name:
                seen_name = True
                self.visit(part, "as the name of a for loop's variable")
            else:
                self.visit(part, refuse)

    def _function(self, node: Any, refuse: str | None) -> None:
        for part in node.parts:
            why = "as a function's name" if part.kind == "word" else refuse
            self.visit(part, why)

    def _redirect(self, node: Any, refuse: str | None) -> None:
        heredoc = getattr(node, "heredoc", None)
        if heredoc is not None:
            self.scan.heredocs.append(heredoc.pos)
        output = getattr(node, "output", None)
        if output is not None and hasattr(output, "kind"):
            self.visit(output, refuse)

    def _command(self, node: Any, refuse: str | None) -> None:
        words = [p for p in node.parts if p.kind == "word"]
        verdicts = judge([self._word_info(w) for w in words], self.scan.functions)
        why = dict(zip((id(w) for w in words), verdicts, strict=True))
        for part in node.parts:
            self.visit(part, refuse or why.get(id(part)))

    def _assignment(self, node: Any, refuse: str | None) -> None:
        info = self._word_info(node)
        if info.refs and info.assigns is None:
            refuse = refuse or "in an array subscript, where bash evaluates it as arithmetic"
        elif info.assigns in RISKY_NAMES:
            refuse = refuse or f"assigned to {info.assigns}, which bash or a program runs as code"
        self._word(node, refuse)

    def _word(self, node: Any, refuse: str | None) -> None:
        for part in getattr(node, "parts", None) or ():
            if part.kind == "parameter":
                self._parameter(node, part, refuse)
            else:
                self.visit(part, refuse)

    def _parameter(self, word: Any, param: Any, refuse: str | None) -> None:
        value = getattr(param, "value", "") or ""
        start, end = param.pos
        if not re.fullmatch(f"{REF_PREFIX}[0-9]+", value):
            if REF_PREFIX in value:
                self.scan.expansions.append((start, end))
            return
        if refuse is not None:
            raise Misplaced(start, refuse)
        raw = self.scan.text[word.pos[0] : word.pos[1]]
        if "$'" in raw or '$"' in raw:  # bashlex does not follow these quotes
            raise Misplaced(start, "in a word using $'...' or $\"...\" quoting")
        self.scan.placed[start] = _stands_quoted(raw, start - word.pos[0], end - start)

    def _word_info(self, node: Any) -> Word:
        parts = getattr(node, "parts", None) or ()
        refs = [
            n.pos[0]
            for n in _walk(node)
            if n.kind == "parameter" and REF_PREFIX in (getattr(n, "value", "") or "")
        ]
        literal = node.word if all(p.kind == "tilde" for p in parts) else None
        if literal is not None and ("`" in literal or "$" in literal):
            literal = None  # an expansion bashlex did not take apart (``eval): not a known name
        raw = self.scan.text[node.pos[0] : node.pos[1]]
        assign = _NAME_EQ.match(raw)
        assigns = None
        if assign is not None and all(start - node.pos[0] >= assign.end() for start in refs):
            assigns = assign.group().rstrip("+=")
        return Word(literal, bool(refs), assigns)


def _is_arithmetic(items: list[Any]) -> bool:
    """Whether a compound's items are bashlex's reading of ``(( ... ))`` as two subshells."""
    if len(items) < 2 or items[0].kind != "reservedword" or items[0].word != "(":
        return False
    inner = items[1]
    if inner.kind != "compound" or not inner.list:
        return False
    head = inner.list[0]
    return bool(head.kind == "reservedword" and head.pos[0] == items[0].pos[0] + 1)


def _stands_quoted(raw: str, offset: int, length: int) -> bool:
    """Whether the reference at *offset* in word *raw* is inside double quotes.

    Put two words' worth of text in its place and parse again: inside double quotes it stays
    one word, outside them it splits.
    """
    probe = raw[:offset] + "A B" + raw[offset + length :]
    try:
        nodes = _bashlex(probe)
    except Exception:  # any parse failure: not provably one quoted word
        return False
    if len(nodes) != 1 or nodes[0].kind != "command":
        return False
    return len(nodes[0].parts) == 1
