"""Jinja2 templates over a run's dates and parameters: ``"process --day {{ ds }} {{ params.x }}"``.

Templates render in Jinja's :class:`~jinja2.sandbox.ImmutableSandboxedEnvironment`, so a template
cannot reach Python internals (``{{ ''.__class__ }}``) or mutate its values, and with
:class:`~jinja2.StrictUndefined`, so a misspelt name is an error rather than an empty string. A
render error is a :class:`~rota.errors.TemplateRenderError`: the attempt fails, the run goes on.

Shell policy: values are never spliced into a shell command's text. :func:`render_shell` renders
every ``{{ ... }}`` to a reference to an environment variable (``"${ROTA_TPL_0}"``) that the task
sets to the value, so bash parses only the template author's text and expands each value once, as
one word of data: ``$( )``, backticks, quotes, ``;`` or newlines inside a value never run.
:mod:`rota.model.shellwords` parses the command with a real bash parser and refuses a reference
where bash would evaluate it again (``$(( ))``, ``[[ ]]``, subscripts, ``eval``, ``bash -c``,
``declare``/``read``/``printf -v`` targets, the name of the command to run...) or would not expand
it (single quotes, comments, here-documents): at definition time (:func:`check_template` with
``quote=True``, one line naming the template line) and again on the rendered command, since
``{% %}`` tags can change it. Inside double quotes a value stays part of the quoted word. A value
that starts with ``-`` is still an option to its command (write ``-- {{ x }}``). Jinja comments
are off in shell commands, so bash's ``${#var}`` keeps its meaning.

Values are also exported to child processes as environment variables (:func:`environment`): a
command that wants a value without a template writes ``"$ROTA_PARAM_X"``, in double quotes.

Dates are in UTC (a naive datetime is taken as UTC). ``logical_date`` falls back to
``data_interval_start``; when a date is unknown, its keys (``ds``, ``ts``, ... or the interval
bound) are empty strings.

Nothing here does I/O; jinja2 is imported on first use, keeping ``import rota`` fast.
"""

from __future__ import annotations

import bisect
import functools
import json
import re
import shlex
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final

from rota.errors import DefinitionError, TemplateRenderError
from rota.model.shellwords import REF_PREFIX, Misplaced, quote_refs, ref

if TYPE_CHECKING:
    import jinja2


class TemplateDate(datetime):
    """A UTC datetime whose ``str()`` is ISO 8601, so ``{{ logical_date }}`` renders as ISO."""

    __slots__ = ()

    def __str__(self) -> str:
        return self.isoformat()


def _template_date(value: datetime | None) -> TemplateDate | None:
    if value is None:
        return None
    utc = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return TemplateDate(
        utc.year, utc.month, utc.day, utc.hour, utc.minute, utc.second, utc.microsecond, UTC
    )


def _date_keys(date: TemplateDate | None) -> dict[str, str]:
    if date is None:
        return {"ds": "", "ds_nodash": "", "ts": "", "ts_nodash": ""}
    ds = date.date().isoformat()
    return {
        "ds": ds,
        "ds_nodash": ds.replace("-", ""),
        "ts": date.isoformat(),
        "ts_nodash": date.strftime("%Y%m%dT%H%M%S"),
    }


def template_vars(
    *,
    run_id: str,
    flow: str,
    task_id: str,
    try_number: int,
    params: Mapping[str, Any],
    logical_date: datetime | None,
    data_interval_start: datetime | None,
    data_interval_end: datetime | None,
) -> dict[str, Any]:
    """The variables a template of one attempt sees.

    Args:
        run_id: The run's id.
        flow: The flow's name.
        task_id: The task's id.
        try_number: The attempt's try number, from 1.
        params: The run's parameters; templates get a read-only view.
        logical_date: The run's logical date; None falls back to *data_interval_start*.
        data_interval_start: Start of the run's data interval, if it has one.
        data_interval_end: End of the run's data interval, if it has one.

    Returns:
        ``ds``, ``ds_nodash``, ``ts``, ``ts_nodash`` (text; empty when no date is known),
        ``logical_date``, ``data_interval_start``, ``data_interval_end`` (:class:`TemplateDate`
        in UTC, or an empty string when unknown), ``params``, ``run_id``, ``flow``, ``task_id``
        and ``try_number``.
    """
    logical = _template_date(logical_date if logical_date is not None else data_interval_start)
    start = _template_date(data_interval_start)
    end = _template_date(data_interval_end)
    return {
        **_date_keys(logical),
        "logical_date": "" if logical is None else logical,
        "data_interval_start": "" if start is None else start,
        "data_interval_end": "" if end is None else end,
        "params": MappingProxyType(dict(params)),
        "run_id": run_id,
        "flow": flow,
        "task_id": task_id,
        "try_number": try_number,
    }


def environment(variables: Mapping[str, Any]) -> dict[str, str]:
    """Environment variables for a child process, from the result of :func:`template_vars`.

    Args:
        variables: What :func:`template_vars` returned.

    Returns:
        ``ROTA_DS``, ``ROTA_DS_NODASH``, ``ROTA_TS``, ``ROTA_LOGICAL_DATE``,
        ``ROTA_DATA_INTERVAL_START``, ``ROTA_DATA_INTERVAL_END`` and one ``ROTA_PARAM_<NAME>`` per
        parameter (name upper-cased, anything but ``A-Z0-9`` made ``_``; text as is, other values
        as JSON).
    """
    env = {
        f"ROTA_{key.upper()}": str(variables.get(key, ""))
        for key in (
            "ds",
            "ds_nodash",
            "ts",
            "logical_date",
            "data_interval_start",
            "data_interval_end",
        )
    }
    params: Mapping[str, Any] = variables.get("params", {})
    for name in sorted(params):
        env[f"ROTA_PARAM_{re.sub('[^A-Z0-9]', '_', name.upper())}"] = _env_text(params[name])
    return env


def _env_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


def is_template(text: str) -> bool:
    """Whether *text* has a ``{{`` or ``{%`` tag; other text is used as it is, never rendered."""
    return "{{" in text or "{%" in text


def check_template(text: str, *, where: str, quote: bool = False) -> None:
    """Check *text*'s template syntax (and, with *quote*, where its expressions stand in the shell).

    Args:
        text: The template.
        where: What the template belongs to, for the message (``"task 'load'"``).
        quote: Whether *text* is a shell command, to be rendered with :func:`render_shell`.

    Raises:
        DefinitionError: One line naming *where*, the problem and the template line.
    """
    import jinja2

    try:
        _compile(text, quote)
    except jinja2.TemplateSyntaxError as err:
        raise DefinitionError(f"{where}: template error: {_syntax_message(err)}") from None
    if quote:
        problem = _shell_problem(text)
        if problem is not None:
            raise DefinitionError(f"{where}: template error: {problem}")


VARIABLES: Final = (
    "ds", "ds_nodash", "ts", "ts_nodash", "logical_date", "data_interval_start",
    "data_interval_end", "params", "run_id", "flow", "task_id", "try_number",
)  # fmt: skip
"""The names every template may use: the keys of :func:`template_vars`."""

_MAPPING_METHODS: Final = frozenset({"get", "keys", "values", "items"})


def check_template_names(
    text: str, params: Collection[str], *, where: str, shell: bool = False, flow: str = ""
) -> None:
    """Check that *text* uses only template variables and, under ``params``, *params*.

    A misspelt name would otherwise be found only when the task runs (strict undefined).

    Args:
        text: A template that :func:`check_template` accepted.
        params: The flow's parameter names.
        where: What the template belongs to, for the message.
        shell: Whether *text* is a shell command (Jinja comments are off there).
        flow: The flow's name, for the message.

    Raises:
        DefinitionError: One line naming *where*, the unknown name and the known ones.
    """
    from jinja2 import meta

    tree = _environment(shell).parse(text)
    free = meta.find_undeclared_variables(tree)
    unknown = sorted(free - set(VARIABLES))
    if unknown:
        known = ", ".join(VARIABLES)
        raise DefinitionError(
            f"{where}: template error: {{{{ {unknown[0]} }}}} is not a template variable"
            f" (known: {known}; parameters are params.NAME)"
        )
    if "params" not in free:  # unused, or a name the template sets itself
        return
    for name in _param_names(tree):
        if name not in params and name not in _MAPPING_METHODS:
            listed = ", ".join(sorted(params)) or "none"
            of = f" of flow {flow!r}" if flow else ""
            raise DefinitionError(
                f"{where}: template error: {{{{ params.{name} }}}} names no parameter{of}"
                f" (parameters: {listed})"
            )


def _param_names(tree: Any) -> Iterator[str]:
    """The names a template reads as ``params.NAME`` or ``params["NAME"]``."""
    from jinja2 import nodes

    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        target = node.node
        if not (isinstance(target, nodes.Name) and target.name == "params"):
            continue
        if isinstance(node, nodes.Getattr):
            yield node.attr
        elif isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
            yield node.arg.value


def render(text: str, variables: Mapping[str, Any], *, where: str = "template") -> str:
    """Render *text* with *variables* in the sandbox, values spliced in as they are.

    Args:
        text: The template.
        variables: The names it may use, usually from :func:`template_vars`.
        where: What the template belongs to, for the message.

    Returns:
        The rendered text.

    Raises:
        TemplateRenderError: A syntax error, an undefined name, an operation the sandbox blocks
            or an error raised by an expression; one line naming *where*.
    """
    return _render(text, dict(variables), quote=False, where=where)


@dataclass(frozen=True, slots=True)
class ShellCommand:
    """A rendered shell command: its text references its values, which travel in *values*.

    Attributes:
        text: What bash runs; every value is a quoted reference such as ``"${ROTA_TPL_0}"``.
        values: The environment variables the references name, with the values.
    """

    text: str
    values: Mapping[str, str]

    def shown(self) -> str:
        """The command as a person reads it: each reference replaced by its value, quoted."""

        def quoted(match: re.Match[str]) -> str:
            return shlex.quote(self.values.get(match.group(1), ""))

        def in_double_quotes(match: re.Match[str]) -> str:
            return re.sub(r'([\\"$`])', r"\\\1", self.values.get(match.group(1), ""))

        text = re.sub(r'"\$\{(' + REF_PREFIX + r'[0-9]+)\}"', quoted, self.text)
        return re.sub(r"\$\{(" + REF_PREFIX + r"[0-9]+)\}", in_double_quotes, text)


def render_shell(
    text: str, variables: Mapping[str, Any], *, where: str = "template"
) -> ShellCommand:
    """Render shell command *text*: each ``{{ ... }}`` becomes a reference to a variable.

    Args:
        text: The command template, checked with ``check_template(..., quote=True)``.
        variables: The names it may use, usually from :func:`template_vars`.
        where: What the template belongs to, for the message.

    Returns:
        The command, whose references bash expands once each, as data.

    Raises:
        TemplateRenderError: As :func:`render`, or a reference that the rendered command (after
            its ``{% %}`` tags) puts where bash would evaluate it, or a value holding a NUL.
    """
    values: list[str] = []
    rendered = _render(text, {**variables, _COLLECTOR: values}, quote=True, where=where)
    try:
        command = quote_refs(rendered)
    except Misplaced as err:
        raise TemplateRenderError(f"{where}: template error: {{{{ ... }}}} {err.problem}") from None
    if any("\x00" in v for v in values):
        raise TemplateRenderError(f"{where}: template error: a value holds a NUL character")
    return ShellCommand(command, {f"{REF_PREFIX}{i}": v for i, v in enumerate(values)})


def _render(text: str, variables: dict[str, Any], *, quote: bool, where: str) -> str:
    import jinja2

    try:
        return _compile(text, quote).render(variables)
    except jinja2.TemplateSyntaxError as err:
        problem = _syntax_message(err)
    except jinja2.exceptions.SecurityError as err:
        problem = f"blocked by the sandbox: {_one_line(str(err))}"
    except (jinja2.TemplateError, ArithmeticError, LookupError, TypeError, ValueError) as err:
        problem = _one_line(str(err)) or type(err).__name__
    raise TemplateRenderError(f"{where}: template error: {problem}")


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _syntax_message(err: jinja2.TemplateSyntaxError) -> str:
    return f"{_one_line(err.message or 'invalid syntax')} (template line {err.lineno})"


_COLLECTOR = "rota shell values"  # not a Jinja name, so a template cannot reach it


def _shell_ref(context: Any, value: Any) -> str:
    """Jinja's finalize for shell commands: keep the value aside, output a reference to it."""
    values: list[str] = context.get(_COLLECTOR)
    values.append(str(value))
    return ref(len(values) - 1)


@functools.lru_cache(maxsize=2)
def _environment(quote: bool) -> jinja2.Environment:
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    if not quote:
        return ImmutableSandboxedEnvironment(
            undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True
        )
    # "{#" starts bash's ${#var}; shell commands have their own comments, so Jinja's are off.
    # pass_context keeps Jinja from calling finalize on constants once, at compile time.
    return ImmutableSandboxedEnvironment(
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        finalize=jinja2.pass_context(_shell_ref),
        comment_start_string="\x00{#",
        comment_end_string="#}\x00",
    )


@functools.lru_cache(maxsize=1024)
def _compile(text: str, quote: bool) -> jinja2.Template:
    """The compiled template; raises jinja2.TemplateSyntaxError."""
    return _environment(quote).from_string(text)


@functools.lru_cache(maxsize=1024)
def _shell_problem(text: str) -> str | None:
    """Why a shell template's expressions cannot stand where they are, with the template line.

    The check reads the template with every ``{{ }}`` made a reference and every ``{% %}`` tag
    left out: the shape that most renders have. :func:`render_shell` checks each render again.
    """
    probe = _Probe.of(_environment(True).lex(text))
    if probe.reserved:
        return f"the name {REF_PREFIX}... is Rota's own: rename the variable"
    try:
        quote_refs(probe.text)
    except Misplaced as err:
        return f"{{{{ ... }}}} {err.problem} (template line {probe.line_at(err.offset)})"
    return None


@dataclass(frozen=True, slots=True)
class _Probe:
    """A shell template's text with a reference for each ``{{ }}`` and no ``{% %}`` tags.

    Attributes:
        text: That text.
        starts: The offset in *text* where each piece (literal text or reference) starts.
        lines: The template line of each piece.
        reserved: Whether the literal text uses the references' own names.
    """

    text: str
    starts: tuple[int, ...]
    lines: tuple[int, ...]
    reserved: bool

    @classmethod
    def of(cls, tokens: Iterable[tuple[int, str, str]]) -> _Probe:
        """Read a template's Jinja tokens, as ``Environment.lex`` yields them."""
        items = list(tokens)
        pieces: list[tuple[str, int]] = []
        literal: list[str] = []
        inside = False
        for i, (lineno, kind, value) in enumerate(items):
            if kind == "variable_begin":
                pieces.append((ref(sum(k == "variable_begin" for _, k, _ in items[:i])), lineno))
            if kind in ("variable_begin", "block_begin", "variable_end", "block_end"):
                inside = kind.endswith("_begin")
            elif kind == "data" and not inside:
                strip = i + 1 < len(items) and items[i + 1][2].endswith("-")  # "{{-" / "{%-"
                literal.append(value.rstrip() if strip else value)
                pieces.append((literal[-1], lineno))
        starts = [0]
        for piece, _ in pieces:
            starts.append(starts[-1] + len(piece))
        text = "".join(piece for piece, _ in pieces)
        lines = tuple(lineno for _, lineno in pieces) or (1,)
        return cls(text, tuple(starts[:-1]) or (0,), lines, REF_PREFIX in "".join(literal))

    def line_at(self, offset: int) -> int:
        """The template line of the piece at *offset* of :attr:`text`."""
        return self.lines[max(0, bisect.bisect_right(self.starts, offset) - 1)]
