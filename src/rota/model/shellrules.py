"""Which arguments of a shell command are code: the commands that run, evaluate or name their
arguments as code, and the wrappers that run another command.

A template value travels to bash in an environment variable (:mod:`rota.model.shellwords`), so
bash itself never parses it. It can still become code when a command treats an argument as code:
``eval``, ``let``, ``source``, ``bash -c``, ``ssh``, ``python -c``, an awk or sed program; as a
variable name or subscript that bash evaluates as arithmetic (``declare``, ``read``, ``unset``,
``printf -v``, ``test -v``); as the name of the program to run (``{{ x }} arg``, ``env {{ x }}``,
``timeout 5 {{ x }}``); or as the argument of a function the command defines itself. This module
decides, for one simple command's words, which may hold a value. It errs towards refusing: an
unknown option of a wrapper is taken for the wrapped command's name, so a value after it is refused
only when a known pattern says so; a value before the command a wrapper runs is always refused.

Pure: tables and list walking, no parsing (the caller gives the words).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True, slots=True)
class Word:
    """One word of a simple command, as far as the rules need to know it.

    Attributes:
        literal: The word's text when it holds no expansion (quotes removed), else None.
        refs: Whether the word holds a template value (also inside a ``$( )`` in it).
        assigns: For a word ``NAME=...`` (or ``NAME+=...``) whose values all stand after the ``=``:
            NAME. None otherwise (a value in the name or a subscript, or no ``=`` at all).
    """

    literal: str | None
    refs: bool = False
    assigns: str | None = None


RISKY_NAMES: Final = frozenset(
    {
        "PS1", "PS2", "PS3", "PS4", "PROMPT_COMMAND", "BASH_ENV", "ENV", "SHELLOPTS", "BASHOPTS",
        "PATH", "LD_PRELOAD", "LD_LIBRARY_PATH", "LD_AUDIT", "PYTHONPATH", "PYTHONSTARTUP",
        "PYTHONHOME", "PERL5LIB", "PERL5OPT", "RUBYOPT", "RUBYLIB", "NODE_OPTIONS", "IFS",
        "GIT_SSH_COMMAND", "GIT_EXTERNAL_DIFF", "EDITOR", "VISUAL", "PAGER",
    }
)  # fmt: skip
"""Variables whose value bash or a program later runs or loads as code (PS4 is expanded under
``set -x``, BASH_ENV is sourced, PATH chooses programs...): a value may not be assigned to them."""

_AS_NAME = "as the command's name (a value cannot choose the program to run)"
_DYNAMIC = "as an argument of a command whose name is known only at run time (it could be eval)"

_EVALUATE: Final[Mapping[str, str]] = {
    "eval": "which runs them as code",
    "let": "which evaluates them as arithmetic (a $( ) in a value would run)",
    "source": "which runs the file named",
    ".": "which runs the file named",
    "trap": "which runs it as code",
    "alias": "which makes code of it",
    "read": "which assigns to the names given, evaluating their subscripts",
    "mapfile": "which assigns to the array named, evaluating its subscript",
    "readarray": "which assigns to the array named, evaluating its subscript",
    "unset": "which evaluates the subscripts of the names given",
    "getopts": "which assigns to the name given",
    "bind": "which can run it as code (-x)",
    "complete": "which can run it as code (-C)",
    "compgen": "which can run it as code (-C)",
    "enable": "which can load it as code (-f)",
    "fc": "which runs commands",
    "hash": "which chooses the program a name runs (-p)",
    "wait": "which assigns to the name given (-p)",
    "ssh": "which runs its arguments as a shell command on the other host",
    "watch": "which runs its arguments with sh -c",
    "su": "which runs its -c argument as a shell command",
    "script": "which runs its -c argument as a shell command",
    "parallel": "which runs its arguments as shell commands",
}
"""Commands that take every argument as (part of) code or a variable to evaluate."""

_DECLARE: Final = frozenset({"declare", "typeset", "local", "export", "readonly"})
_SHELLS: Final = frozenset(
    {"sh", "bash", "rbash", "dash", "ash", "zsh", "ksh", "mksh", "pdksh", "fish", "csh", "tcsh"}
)
_GLOB = re.compile(r"[*?]|\[.*\]|\{.*(,|\.\.).*\}")  # a pattern or braces: may become any name
_NUMBER = re.compile(r"[+-]?[0-9]+(\.[0-9]+)?[smhd]?")


@dataclass(frozen=True, slots=True)
class Wrapper:
    """A command that runs another command given by its arguments.

    Attributes:
        value_options: Options that take the next word as their value.
        positionals: Words after the options that are not the command (``timeout``'s duration).
        shell_options: Options that make it run a shell command string instead.
    """

    value_options: frozenset[str] = frozenset()
    positionals: int = 0
    shell_options: frozenset[str] = frozenset()


def _w(values: str = "", positionals: int = 0, shell: str = "") -> Wrapper:
    return Wrapper(frozenset(values.split()), positionals, frozenset(shell.split()))


WRAPPERS: Final[Mapping[str, Wrapper]] = {
    "exec": _w("-a"),
    "command": _w(),
    "builtin": _w(),
    "nohup": _w(),
    "setsid": _w(),
    "time": _w("-f -o --format --output"),
    "nice": _w("-n --adjustment"),
    "ionice": _w("-c -n -p -t --class --classdata"),
    "timeout": _w("-s -k --signal --kill-after", positionals=1),
    "stdbuf": _w("-i -o -e --input --output --error"),
    "env": _w("-u -C -P --unset --chdir", shell="-S --split-string"),
    "xargs": _w("-a -d -E -e -I -i -L -l -n -P -s --arg-file --delimiter --max-args"),
    "sudo": _w("-u -g -C -D -h -p -r -t -U -R", shell="-s -i --shell --login"),
    "doas": _w("-u -C", shell="-s"),
    "flock": _w("-w -E --timeout --conflict-exit-code", positionals=1, shell="-c --command"),
    "chroot": _w("--userspec --groups", positionals=1),
    "taskset": _w("-c --cpu-list", positionals=1),
    "chrt": _w("-T -P -D", positionals=1),
    "strace": _w("-o -e -p -s -E -u -a -b -I -O -S -P -X"),
    "ltrace": _w("-o -e -p -s -E -u -a -n"),
    "unbuffer": _w(),
    "busybox": _w(),
    "catchsegv": _w(),
    "numactl": _w("-C -m -N -p -i --physcpubind --membind --cpunodebind --preferred"),
}
"""Commands that run the command named by their arguments (after their options)."""


@dataclass(frozen=True, slots=True)
class Interpreter:
    """A program whose arguments may be a program in its own language.

    Its first word that is not an option is the program (awk, sed) or the file of the program
    (python, perl), unless an option gave the program already (``python -c``, ``awk -f``).

    Attributes:
        code: Options whose value is code or chooses code (``-c``, ``-e``, ``-m``, ``-f``, ``-r``).
        values: Options whose value is data (``awk -F``, ``python -W``).
    """

    code: frozenset[str]
    values: frozenset[str] = frozenset()


def _i(code: str, values: str = "") -> Interpreter:
    return Interpreter(frozenset(code.split()), frozenset(values.split()))


_PYTHON = _i("-c -m --command", "-W -X --check-hash-based-pycs")
_AWK = _i("-f -e -i -l --file --source --include --load", "-F -v --field-separator --assign")
_SED = _i("-e -f --expression --file", "-l --line-length")
_NODE = _i("-e -p -r --eval --print --require --import --loader", "--title")
INTERPRETERS: Final[Mapping[str, Interpreter]] = {
    **dict.fromkeys(("python", "python2", "python3", "pypy", "pypy3"), _PYTHON),
    **dict.fromkeys(("perl", "ruby"), _i("-e -E -M -m -r -I")),
    **dict.fromkeys(("lua", "julia", "Rscript", "R"), _i("-e -l -L")),
    **dict.fromkeys(("node", "nodejs", "deno", "bun"), _NODE),
    "php": _i("-r -f -B -E -R -F"),
    **dict.fromkeys(("awk", "gawk", "mawk", "nawk"), _AWK),
    **dict.fromkeys(("sed", "gsed"), _SED),
}
"""Programs whose code a value could be: ``python -c``, ``perl -e``, an awk or sed program."""


def judge(words: Sequence[Word], functions: frozenset[str] = frozenset()) -> list[str | None]:
    """For each word of a simple command, why a value may not stand in it (None: it may).

    Args:
        words: The command's words, after its leading assignments (``X=1 cmd ...``).
        functions: Names of the functions the whole command defines.

    Returns:
        One entry per word: None where a value is plain data, else the reason it would be code.
    """
    verdicts: list[str | None] = [None] * len(words)
    _judge_from(words, 0, verdicts, functions)
    return verdicts


def _judge_from(
    words: Sequence[Word], start: int, verdicts: list[str | None], functions: frozenset[str]
) -> None:
    if start >= len(words):
        return
    head = words[start]
    if head.refs:
        verdicts[start] = _AS_NAME
        return
    if head.literal is None or _unknown_name(head.literal):  # $CMD, $(...), a pattern
        _refuse(words, start + 1, verdicts, _DYNAMIC)
        return
    name = head.literal.rsplit("/", 1)[-1]
    if name in functions:
        reason = f"as an argument of {name}, a function this command defines (Rota cannot tell"
        _refuse(words, start + 1, verdicts, reason + " what it does with it)")
        return
    rule = _RULES.get(name)
    if rule is not None:
        rule(words, start, verdicts, functions)
    elif name in _EVALUATE:
        _refuse(words, start + 1, verdicts, f"as an argument of {name}, {_EVALUATE[name]}")
    elif name in WRAPPERS:
        _wrapped(words, start, verdicts, functions, WRAPPERS[name])
    elif name in _SHELLS:
        _shell(words, start, verdicts)
    elif name in INTERPRETERS:
        _interpreter(words, start, verdicts, INTERPRETERS[name])


def _unknown_name(text: str) -> bool:
    """Whether a literal command-name word may become another name: a pattern, or ``a[...``
    (bash reads ``a[x y]=1`` as one assignment, evaluating its subscript)."""
    return bool(_GLOB.search(text)) or ("[" in text and text != "[")


def _refuse(words: Sequence[Word], start: int, verdicts: list[str | None], reason: str) -> None:
    for i in range(start, len(words)):
        if words[i].refs:
            verdicts[i] = reason


def _options(words: Sequence[Word], start: int) -> list[str]:
    return [w.literal for w in words[start:] if w.literal and w.literal[:1] in "-+"]


def _declare(
    words: Sequence[Word], start: int, verdicts: list[str | None], functions: frozenset[str]
) -> None:
    """declare, local, export...: a value only as the value of ``NAME=`` and without options."""
    del functions
    name = words[start].literal
    if _options(words, start + 1):
        reason = f"as an argument of {name} with options, which may evaluate it"
        _refuse(words, start + 1, verdicts, reason)
        return
    for i in range(start + 1, len(words)):
        word = words[i]
        if not word.refs:
            continue
        if word.assigns is None:
            verdicts[i] = f"as a name given to {name}, which evaluates its subscript"
        elif word.assigns in RISKY_NAMES:
            verdicts[i] = f"assigned to {word.assigns}, which bash or a program runs as code"


def _option_test(option: str, reason: str) -> Callable[..., None]:
    """A rule for a command that evaluates a value only when *option* is among its words."""

    def rule(
        words: Sequence[Word], start: int, verdicts: list[str | None], functions: frozenset[str]
    ) -> None:
        del functions
        if any(o == option or o.startswith(option) for o in _options(words, start + 1)):
            _refuse(words, start + 1, verdicts, reason)

    return rule


def _find(
    words: Sequence[Word], start: int, verdicts: list[str | None], functions: frozenset[str]
) -> None:
    """find: the words after -exec (up to ``;`` or ``+``) are a command of their own."""
    i = start + 1
    while i < len(words):
        if words[i].literal not in ("-exec", "-execdir", "-ok", "-okdir"):
            i += 1
            continue
        end = i + 1
        while end < len(words) and words[end].literal not in (";", "+"):
            end += 1
        inner: list[str | None] = [None] * (end - i - 1)
        _judge_from(words[i + 1 : end], 0, inner, functions)
        verdicts[i + 1 : end] = inner
        i = end + 1


def _wrapped(
    words: Sequence[Word],
    start: int,
    verdicts: list[str | None],
    functions: frozenset[str],
    wrapper: Wrapper,
) -> None:
    """Skip a wrapper's options and positionals; judge what follows as a command of its own."""
    name = words[start].literal
    before = f"before the command that {name} runs (Rota cannot tell an option from a program)"
    i, left = start + 1, wrapper.positionals
    while i < len(words):
        word = words[i]
        text = word.literal
        if word.refs:
            verdicts[i] = before
            return
        if text is None or _unknown_name(text):
            _refuse(words, i + 1, verdicts, _DYNAMIC)
            return
        if text in wrapper.shell_options or text.split("=", 1)[0] in wrapper.shell_options:
            reason = f"as an argument of {name} {text}, which runs a shell command string"
            _refuse(words, i + 1, verdicts, reason)
            return
        if text.startswith("-") and text != "-":
            i += 2 if text in wrapper.value_options else 1
        elif left > 0:
            left, i = left - 1, i + 1
        elif (name == "env" and "=" in text) or _NUMBER.fullmatch(text):
            i += 1
        else:
            break
    _judge_from(words, i, verdicts, functions)


def _shell(words: Sequence[Word], start: int, verdicts: list[str | None]) -> None:
    """bash, sh...: ``-c`` makes code of the arguments; otherwise the first word is the script."""
    name = words[start].literal
    for i in range(start + 1, len(words)):
        text = words[i].literal
        if text is not None and text.startswith("-") and "c" in text and not text.startswith("--"):
            reason = f"as an argument of {name} -c, which runs it as code"
            _refuse(words, start + 1, verdicts, reason)
            return
        if words[i].refs:
            verdicts[i] = f"as the script {name} runs"
            return
        if text is None or not text.startswith(("-", "+")):
            return


def _interpreter(
    words: Sequence[Word], start: int, verdicts: list[str | None], spec: Interpreter
) -> None:
    """python -c, perl -e, awk 'program'...: a value may not be the program or name its file."""
    code = f"as the program (or the program's file) that {words[start].literal} runs"
    given = False
    i = start + 1
    while i < len(words):
        word, text = words[i], words[i].literal
        if text is None or not text.startswith("-") or text in ("-", "--"):
            if not given and text != "--" and word.refs:
                verdicts[i] = code
            if text != "--" or given:
                return
            i += 1
            continue
        kind, takes_next = _option(text, spec)
        given = given or kind == "code"
        if kind == "code" and (word.refs or (takes_next and _refs_at(words, i + 1))):
            verdicts[i if word.refs else i + 1] = code
        i += 2 if takes_next else 1


def _refs_at(words: Sequence[Word], i: int) -> bool:
    return i < len(words) and words[i].refs


def _option(text: str, spec: Interpreter) -> tuple[str, bool]:
    """What option word *text* is (code, value or flag) and whether the next word is its value."""
    if text.startswith("--"):
        flag, attached = text.partition("=")[::2]
        kind = "code" if flag in spec.code else "value" if flag in spec.values else "flag"
        return kind, kind != "flag" and not attached and "=" not in text
    for pos, letter in enumerate(text[1:], start=1):
        flag = "-" + letter
        if flag in spec.code or flag in spec.values:
            kind = "code" if flag in spec.code else "value"
            return kind, pos == len(text) - 1
    return "flag", False


_SUBSCRIPT = "evaluates the subscript of the name given"
_RULES: Final[Mapping[str, Callable[..., None]]] = {
    **dict.fromkeys(_DECLARE, _declare),
    "printf": _option_test("-v", "as an argument of printf -v, which assigns to the name given"),
    "test": _option_test("-v", f"as an argument of test -v, which {_SUBSCRIPT}"),
    "[": _option_test("-v", f"as an argument of [ -v, which {_SUBSCRIPT}"),
    "find": _find,
}
