"""Templates over run dates and params: variables, the sandbox, strict names, shell values."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rota.errors import DefinitionError, TemplateRenderError
from rota.model.templating import (
    check_template,
    environment,
    is_template,
    render,
    render_shell,
    template_vars,
)

PROPERTY = settings(max_examples=200, deadline=None, database=None, derandomize=True)
START = datetime(2024, 3, 9, 20, 30, 5, tzinfo=UTC)
END = START + timedelta(days=1)


def variables(
    params: dict[str, Any] | None = None,
    *,
    logical: datetime | None = START,
    start: datetime | None = START,
    end: datetime | None = END,
) -> dict[str, Any]:
    return template_vars(
        run_id="r-1",
        flow="daily",
        task_id="say",
        try_number=2,
        params=params or {},
        logical_date=logical,
        data_interval_start=start,
        data_interval_end=end,
    )


def run_bash(command: str, cwd: Path) -> bytes:
    """What ``bash -c COMMAND`` prints in *cwd*."""
    done = subprocess.run(["bash", "-c", command], capture_output=True, cwd=cwd, check=True)
    return done.stdout


# --- variables ------------------------------------------------------------------------------


def test_date_keys_are_formatted_in_utc() -> None:
    plus5 = timezone(timedelta(hours=5))
    got = variables(logical=datetime(2024, 3, 10, 1, 30, 5, tzinfo=plus5))
    assert got["ds"] == "2024-03-09"
    assert got["ds_nodash"] == "20240309"
    assert got["ts"] == "2024-03-09T20:30:05+00:00"
    assert got["ts_nodash"] == "20240309T203005"
    assert got["logical_date"] == START


def test_a_naive_date_is_taken_as_utc() -> None:
    got = variables(logical=datetime(2024, 3, 9, 20, 30, 5))
    assert got["ts"] == "2024-03-09T20:30:05+00:00"


def test_ids_and_try_number_are_variables() -> None:
    got = variables()
    assert (got["run_id"], got["flow"], got["task_id"], got["try_number"]) == (
        "r-1",
        "daily",
        "say",
        2,
    )
    text = "{{ run_id }} {{ flow }} {{ task_id }} {{ try_number }}"
    assert render(text, got) == "r-1 daily say 2"


def test_date_values_render_as_iso_and_keep_datetime_methods() -> None:
    got = variables()
    assert render("{{ data_interval_start }}", got) == "2024-03-09T20:30:05+00:00"
    assert render("{{ data_interval_end }}", got) == "2024-03-10T20:30:05+00:00"
    assert render("{{ logical_date }}", got) == "2024-03-09T20:30:05+00:00"
    assert render("{{ logical_date.strftime('%Y/%m') }}", got) == "2024/03"
    assert render("{{ ds }}/{{ ts_nodash }}", got) == "2024-03-09/20240309T203005"


def test_logical_date_falls_back_to_the_interval_start() -> None:
    got = variables(logical=None, start=END)
    assert got["ds"] == "2024-03-10"
    assert str(got["logical_date"]) == "2024-03-10T20:30:05+00:00"


def test_unknown_dates_are_empty_strings() -> None:
    got = variables(logical=None, start=None, end=None)
    for key in ("ds", "ds_nodash", "ts", "ts_nodash", "logical_date"):
        assert got[key] == "", key
    assert got["data_interval_start"] == got["data_interval_end"] == ""
    assert render("[{{ ds }}]", got) == "[]"


def test_params_are_reachable_and_read_only() -> None:
    got = variables({"x": "a b", "n": 3, "items": [1, 2]})
    assert render("{{ params.x }}-{{ params['n'] + 1 }}", got) == "a b-4"
    assert render("{{ params['items'] | join(',') }}", got) == "1,2"
    with pytest.raises(TypeError):
        got["params"]["x"] = "changed"


def test_an_undefined_name_is_a_one_line_render_error() -> None:
    with pytest.raises(TemplateRenderError) as info:
        render("echo {{ params.nope }}", variables(), where="task 'say'")
    message = str(info.value)
    assert message.startswith("task 'say': template error:")
    assert "nope" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    "text",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ ''.__class__ }}",
        "{{ params.__class__ }}",
        "{{ params.__class__.__mro__[1].__subclasses__() }}",
        "{{ logical_date.__class__.__mro__ }}",
        "{{ logical_date.__reduce__() }}",
        "{{ params['items'].append(3) }}",
        "{{ (params.items).__func__ }}",
    ],
)
def test_the_sandbox_blocks_internals_and_mutation(text: str) -> None:
    with pytest.raises(TemplateRenderError) as info:
        render(text, variables({"items": [1, 2]}), where="task 'x'")
    assert str(info.value).startswith("task 'x': template error:")


def test_an_expression_error_is_a_render_error() -> None:
    with pytest.raises(TemplateRenderError, match="by zero"):
        render("{{ 1 // 0 }}", variables())


def test_a_syntax_error_at_render_time_is_a_render_error() -> None:
    with pytest.raises(TemplateRenderError, match=r"template line 1"):
        render("{{ x }", variables())


def test_render_keeps_text_without_tags_and_a_trailing_newline() -> None:
    assert render("plain $X text\n", variables()) == "plain $X text\n"
    assert render("{{ ds }}\n", variables()) == "2024-03-09\n"


def test_is_template() -> None:
    assert is_template("a {{ x }}")
    assert is_template("{% if x %}y{% endif %}")
    assert not is_template("echo ${#arr[@]} {x} {#")


# --- check_template -------------------------------------------------------------------------


def test_check_template_names_where_and_the_template_line() -> None:
    with pytest.raises(DefinitionError) as info:
        check_template("echo ok\necho {{ params.x }\n", where="task 'say'")
    message = str(info.value)
    assert message.startswith("task 'say': template error:")
    assert "template line 2" in message
    assert "\n" not in message


def test_check_template_accepts_a_good_template() -> None:
    check_template("echo {{ ds }} {% if params.x %}{{ params.x }}{% endif %}", where="t")
    check_template("echo {{ ds }} {{ params.x }} ${#arr[@]}", where="t", quote=True)


@pytest.mark.parametrize(
    ("command", "problem"),
    [
        ("echo '{{ params.x }}'", "inside single quotes"),
        ("echo $'{{ params.x }}'", "$'...'"),
        ("echo hi # {{ params.x }}", "a comment"),
        ("cat <<EOF\n{{ params.x }}\nEOF", "here-document"),
        ("cat <<'EOF'\n{{ params.x }}\nEOF", "here-document"),
        ("echo $(( {{ params.x }} + 1 ))", "$(( ))"),
        ("(( {{ params.x }} ))", "(( ))"),
        ("a[{{ params.x }}]=1", "command's name"),
        ("echo ${v:-{{ params.x }}}", "${ }"),
        ("[[ {{ params.x }} -eq 1 ]]", "[[ ]]"),
        ("echo \\{{ params.x }}", "backslash"),
        ("echo ${{ params.x }}", "not expanded"),
        ("eval {{ params.x }}", "eval"),
        ("{% for v in params.x %}{{ v }}'{% endfor %}", "bash would not parse"),
        ("echo ROTA_TPL_1 {{ params.x }}", "Rota's own"),
    ],
)
def test_shell_expressions_must_stand_where_bash_keeps_them_data(
    command: str, problem: str
) -> None:
    with pytest.raises(DefinitionError) as info:
        check_template(command, where="task 'say'", quote=True)
    assert problem in str(info.value)
    assert str(info.value).startswith("task 'say': template error: ")
    assert "\n" not in str(info.value)


def test_a_problem_names_the_template_line() -> None:
    with pytest.raises(DefinitionError, match=r"template line 3\)$"):
        check_template("echo a\necho {{ ds }}\necho '{{ ds }}'", where="t", quote=True)


@pytest.mark.parametrize(
    "command",
    [
        "echo {{ params.x }} > out.txt",
        "X={{ params.x }} env | grep X",
        'echo "$(echo {{ params.x }})"',
        "diff <(echo {{ params.x }}) <(echo b)",
        "cat <<< {{ params.x }}",
        "[ {{ params.x }} = a ]",
        "echo a#{{ params.x }}",
        "f() { echo {{ params.x }}; }; f",
        'echo "{{ params.x }}" "[{{ ds }}]"',
        "echo `echo {{ params.x }}`",
        'grep "foo$" {{ params.x }}',
        "echo {% for v in params.x %}{{ v }} {% endfor %}",
        "python train.py --day {{ ds }} --out data/{{ ds }}.csv",
    ],
)
def test_shell_expressions_in_word_position_are_accepted(command: str) -> None:
    check_template(command, where="t", quote=True)


# --- values run as data --------------------------------------------------------------------

NASTY = [
    "$(touch pwned); x",
    "`touch pwned`",
    "'; touch pwned; '",
    '"; touch pwned; "',
    "a\ntouch pwned\n",
    "\\'; touch pwned; '\\",
    "x; touch pwned #",
    "$HOME * ~ {a,b} !!",
    "{{ 7 * 7 }}",
    "-n",
    "",
]


def run_shell(template: str, got: dict[str, Any], cwd: Path) -> bytes:
    """Render *template* as a shell command and run it with its values in the environment."""
    command = render_shell(template, got)
    done = subprocess.run(
        ["bash", "-c", command.text],
        capture_output=True,
        cwd=cwd,
        check=True,
        env={"PATH": "/usr/bin:/bin", **command.values},
    )
    return done.stdout


@pytest.mark.parametrize("value", NASTY)
def test_a_value_is_one_literal_word(value: str, tmp_path: Path) -> None:
    got = run_shell("printf %s {{ params.v }}", variables({"v": value}), tmp_path)
    assert got == value.encode()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("value", NASTY)
def test_a_value_inside_double_quotes_stays_in_the_quoted_word(value: str, tmp_path: Path) -> None:
    got = run_shell('printf %s "<{{ params.v }}>"', variables({"v": value}), tmp_path)
    assert got == f"<{value}>".encode()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("value", NASTY)
def test_values_stay_data_across_constructs(value: str, tmp_path: Path) -> None:
    template = (
        "v={{ params.v }}; "
        'printf %s "$v" > a; '
        "{% for w in [params.v] %}printf %s {{ w }} > b; {% endfor %}"
        "printf %s $(printf %s {{ params.v }}) > c"
    )
    check_template(template, where="t", quote=True)
    run_shell(template, variables({"v": value}), tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "c"]
    assert (tmp_path / "a").read_bytes() == value.encode()
    assert (tmp_path / "b").read_bytes() == value.encode()


def test_non_text_values_are_data_too(tmp_path: Path) -> None:
    got = variables({"n": 3, "d": {"k": "$(touch pwned)"}})
    out = run_shell("printf '%s|' {{ params.n }} {{ params.d }} {{ ds }}", got, tmp_path)
    assert out == b"3|{'k': '$(touch pwned)'}|2024-03-09|"
    assert list(tmp_path.iterdir()) == []


def test_values_never_enter_the_command_text() -> None:
    command = render_shell("echo {{ params.v }} {{ params.v }}", variables({"v": "$(x)"}))
    assert "$(x)" not in command.text
    assert command.text == 'echo "${ROTA_TPL_0}" "${ROTA_TPL_1}"'
    assert command.values == {"ROTA_TPL_0": "$(x)", "ROTA_TPL_1": "$(x)"}
    assert command.shown() == "echo '$(x)' '$(x)'"


def test_a_block_that_moves_a_value_into_quotes_fails_the_render() -> None:
    template = "{% if params.q %}echo '{% else %}echo {% endif %}{{ params.v }}'"
    with pytest.raises(DefinitionError):
        check_template(template, where="t", quote=True)
    with pytest.raises(TemplateRenderError, match="inside single quotes"):
        render_shell(template, variables({"q": True, "v": "x"}), where="t")


def test_a_nul_in_a_value_fails_the_render() -> None:
    with pytest.raises(TemplateRenderError, match="NUL"):
        render_shell("echo {{ params.v }}", variables({"v": "a\x00b"}), where="t")


def test_without_quote_values_are_spliced_as_they_are() -> None:
    assert render("{{ params.v }}", variables({"v": "$(x) 'y'"})) == "$(x) 'y'"


# argv and the environment cannot carry NUL, and surrogates cannot be encoded.
shell_text = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"))


@PROPERTY
@given(shell_text)
def test_printf_of_a_value_prints_exactly_the_value(value: str) -> None:
    command = render_shell("printf %s {{ params.v }}", variables({"v": value}))
    env = {"PATH": "/usr/bin:/bin", **command.values}
    done = subprocess.run(["bash", "-c", command.text], capture_output=True, check=True, env=env)
    assert done.stdout == value.encode()


# --- environment ---------------------------------------------------------------------------


def test_environment_exports_dates_and_params() -> None:
    env = environment(variables({"msg": "$(x)", "n": 3, "opts": {"a": [1]}, "my-key.v2": True}))
    assert env == {
        "ROTA_DS": "2024-03-09",
        "ROTA_DS_NODASH": "20240309",
        "ROTA_TS": "2024-03-09T20:30:05+00:00",
        "ROTA_LOGICAL_DATE": "2024-03-09T20:30:05+00:00",
        "ROTA_DATA_INTERVAL_START": "2024-03-09T20:30:05+00:00",
        "ROTA_DATA_INTERVAL_END": "2024-03-10T20:30:05+00:00",
        "ROTA_PARAM_MSG": "$(x)",
        "ROTA_PARAM_N": "3",
        "ROTA_PARAM_OPTS": '{"a": [1]}',
        "ROTA_PARAM_MY_KEY_V2": "true",
    }


def test_environment_without_dates_has_empty_date_variables() -> None:
    env = environment(variables(logical=None, start=None, end=None))
    assert env["ROTA_DS"] == env["ROTA_LOGICAL_DATE"] == env["ROTA_DATA_INTERVAL_END"] == ""
