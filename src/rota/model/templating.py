"""Jinja2 templates over a run's dates and parameters: ``"process --day {{ ds }} {{ params.x }}"``.

Templates render in Jinja's :class:`~jinja2.sandbox.ImmutableSandboxedEnvironment`, so a template
cannot reach Python internals (``{{ ''.__class__ }}``) or mutate its values, and with
:class:`~jinja2.StrictUndefined`, so a misspelt name is an error rather than an empty string. A
render error is a :class:`~rota.errors.TemplateRenderError`: the attempt fails, the run goes on.

Shell quoting policy. A shell command is rendered with ``quote=True``: the result of every
``{{ ... }}`` goes through :func:`shlex.quote`, so a value is always exactly one literal shell word
and ``$(...)``, backticks, ``;`` or newlines inside it never run. For that to hold, an expression
must stand where a quoted word is a word: ``check_template(..., quote=True)`` (using
:mod:`rota.model.shellwords`) rejects one written inside shell quotes (``"{{ x }}"``: drop the
quotes, the value is quoted for you), backticks, a comment, a here-document, an arithmetic
expression, an array subscript, ``${...}`` or ``[[ ]]``, or right after ``\\`` or ``$``.
Commands that run their arguments as code (``eval``, ``bash -c``, ``ssh``, ``let``,
``declare -i``) re-open injection, as they would for any variable; a value that starts with ``-``
is still an option to its command (write ``-- {{ x }}``). Jinja comments are off in shell
commands, so bash's ``${#var}`` keeps its meaning.

Values are also exported to child processes as environment variables (:func:`environment`): a
command that wants a value without a template writes ``"$ROTA_PARAM_X"``, in double quotes.

Dates are in UTC (a naive datetime is taken as UTC). ``logical_date`` falls back to
``data_interval_start``; when a date is unknown, its keys (``ds``, ``ts``, ... or the interval
bound) are empty strings.

Nothing here does I/O; jinja2 is imported on first use, keeping ``import rota`` fast.
"""

from __future__ import annotations

import functools
import json
import re
import shlex
from collections.abc import Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from rota.errors import DefinitionError, TemplateRenderError
from rota.model.shellwords import misplaced_expression

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
        quote: Whether *text* is a shell command to be rendered with ``render(quote=True)``.

    Raises:
        DefinitionError: One line naming *where*, the problem and the template line.
    """
    import jinja2

    try:
        _compile(text, quote)
    except jinja2.TemplateSyntaxError as err:
        raise DefinitionError(f"{where}: template error: {_syntax_message(err)}") from None


def render(
    text: str, variables: Mapping[str, Any], *, quote: bool = False, where: str = "template"
) -> str:
    """Render *text* with *variables* in the sandbox.

    Args:
        text: The template.
        variables: The names it may use, usually from :func:`template_vars`.
        quote: Quote the result of every ``{{ ... }}`` as one shell word (:func:`shlex.quote`).
        where: What the template belongs to, for the message.

    Returns:
        The rendered text.

    Raises:
        TemplateRenderError: A syntax error, an undefined name, an operation the sandbox blocks
            or an error raised by an expression; one line naming *where*.
    """
    import jinja2

    try:
        return _compile(text, quote).render(dict(variables))
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


def _shell_word(value: Any) -> str:
    return shlex.quote(str(value))


@functools.lru_cache(maxsize=2)
def _environment(quote: bool) -> jinja2.Environment:
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    if not quote:
        return ImmutableSandboxedEnvironment(
            undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True
        )
    # "{#" starts bash's ${#var}; shell commands have their own comments, so Jinja's are off.
    return ImmutableSandboxedEnvironment(
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        finalize=_shell_word,
        comment_start_string="\x00{#",
        comment_end_string="#}\x00",
    )


@functools.lru_cache(maxsize=1024)
def _compile(text: str, quote: bool) -> jinja2.Template:
    """The compiled template; raises jinja2.TemplateSyntaxError (placement errors included)."""
    import jinja2

    env = _environment(quote)
    template = env.from_string(text)
    found = misplaced_expression(env.lex(text)) if quote else None
    if found is not None:
        raise jinja2.TemplateSyntaxError(found.problem, found.lineno)
    return template
