"""Shell templates never run a value: an adversarial corpus and generated commands, on real bash.

Each template is checked as ``ShellTask`` checks it at load time; what is accepted is rendered with
hostile values and run by bash. A marker file that a value would create must never appear; a
template is either refused (one line) or runs with the value as data. The corpus says which of
the two each case must be, so the check is shown to be neither too lax nor too strict.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rota.errors import DefinitionError, TemplateRenderError
from rota.model.templating import check_template, render_shell, template_vars

DAY = datetime(2024, 3, 9, tzinfo=UTC)
V = "{{ params.v }}"

# (template, expected): "refused" at load, "data" (runs; stdout holds the value), or "safe"
# (runs or is refused at run time; never executes the value).
CORPUS: list[tuple[str, str]] = [
    # the reproductions and their causes
    ('grep -c "ERROR$" /dev/null | awk \'{ print "[" ' + V + ' "]", $0 }\'', "refused"),
    ('echo "$\'" \'"' + V + "'", "refused"),
    ('grep "foo$" /dev/null; echo ' + V, "data"),
    ('echo "foo$" ' + V, "data"),
    # $'...' and $"..." inside and around double quotes
    ('echo "$\'" ' + V, "data"),
    ('echo "$\\"" ' + V, "data"),
    ("echo $'" + V + "'", "refused"),
    ('echo $"' + V + '"', "refused"),
    ("echo $'a\\'b' " + V, "data"),
    ('echo "a $\'b" ' + V, "data"),
    # case patterns inside $( )
    ("echo $(case x in x) echo " + V + ";; esac)", "refused"),
    ("echo $(case x in (x) echo hi;; esac) " + V, "refused"),
    ("case " + V + " in *) echo hi;; esac", "refused"),
    # comments right after $( and elsewhere
    ("echo $(# comment )\necho " + V + ")", "data"),
    ("echo $(#\necho " + V + "\n)", "data"),
    ("echo hi # " + V, "refused"),
    ("echo a#" + V, "data"),
    # backticks holding quotes
    ('echo `echo "' + V + '"`', "data"),
    ("echo `echo '" + V + "'`", "refused"),
    ('echo `echo "\'"` ' + V, "data"),
    ("echo `echo " + V + "`", "data"),
    # nested $( ) with parentheses that look unbalanced, inside quotes
    ('echo $(echo "a)b") ' + V, "data"),
    ("echo $(echo ')') " + V, "data"),
    ('echo "$(echo "(" ' + V + ')"', "data"),
    ("echo $(echo $(echo " + V + "))", "data"),
    ("echo \"$(echo ')' \"" + V + '")"', "data"),
    # here-documents and here-strings
    ("cat <<EOF\n" + V + "\nEOF", "refused"),
    ("cat <<'EOF'\n" + V + "\nEOF", "refused"),
    ("cat <<EOF\n$(echo hi)\nEOF\necho " + V, "data"),
    ("cat <<< " + V, "data"),
    # ${...} defaults and other expansions
    ("echo ${x:-" + V + "}", "refused"),
    ('echo "${x:-' + V + '}"', "refused"),
    ("echo ${x:" + V + "}", "refused"),
    ("echo ${!" + V + "}", "refused"),
    ("echo ${#" + V + "}", "refused"),
    ("x=1; echo ${x} " + V, "data"),
    # arithmetic
    ("echo $(( " + V + " + 1 ))", "refused"),
    ("(( y = " + V + " ))", "refused"),
    ("echo $[ " + V + " ]", "refused"),
    ("[[ " + V + " -eq 1 ]]", "refused"),
    ("[[ -n x ]] && echo " + V, "refused"),
    ("echo $(( 1 + 2 )) " + V, "refused"),
    ("let x=" + V, "refused"),
    ("declare -i n; n=" + V, "refused"),
    ("[ " + V + " -eq 1 ]", "safe"),
    ("printf '%d' " + V, "safe"),
    ("exit " + V, "safe"),
    # array subscripts
    ("a[" + V + "]=1", "refused"),
    ("a=(); echo ${a[" + V + "]}", "refused"),
    ("x=1 a[" + V + "]=2 true", "refused"),
    ("a=(" + V + ")", "refused"),
    # declare, printf -v, read and other name targets
    ("declare " + V, "refused"),
    ("declare -n r=" + V, "refused"),
    ("declare -a arr=" + V, "refused"),
    ("declare x=" + V + '; echo "$x"', "data"),
    ("export X=" + V + '; echo "$X"', "data"),
    ("local " + V, "refused"),
    ("printf -v " + V + " %s 1", "refused"),
    ("printf -v x %s " + V, "refused"),
    ("printf '%s\\n' " + V, "data"),
    ("read " + V + " <<< 1", "refused"),
    ("read -r x <<< " + V + '; echo "$x"', "data"),
    ("test -v " + V, "refused"),
    ("[ -v " + V + " ]", "refused"),
    ("unset " + V, "refused"),
    ("getopts ab " + V, "refused"),
    ("mapfile " + V + " < /dev/null", "refused"),
    # code evaluators, shells, interpreters
    ("eval " + V, "refused"),
    ('eval "echo ok"; echo ' + V, "data"),
    ("bash -c " + V, "refused"),
    ("bash -c 'echo $1' _ " + V, "refused"),
    ("sh -ec " + V, "refused"),
    ("bash " + V, "refused"),
    ("source " + V, "refused"),
    (". " + V, "refused"),
    ("trap " + V + " EXIT", "refused"),
    ("python3 -c " + V, "refused"),
    ("python3 -c 'import sys; print(sys.argv[1])' " + V, "data"),
    ("python3 " + V, "refused"),
    ("awk " + V + " /dev/null", "refused"),
    ("awk -F , " + V + " /dev/null", "refused"),
    ("awk 'BEGIN { print ARGV[1] }' " + V, "data"),
    ("sed " + V + " /dev/null", "refused"),
    ("sed -e " + V + " /dev/null", "refused"),
    ("echo x | sed -e 's/x/y/'; echo " + V, "data"),
    ("perl -ne " + V + " /dev/null", "refused"),
    ("ssh host " + V, "refused"),
    ("watch " + V, "refused"),
    # the command's own name, wrappers and functions
    (V + " arg", "refused"),
    ("$(echo " + V + ") arg", "refused"),
    ("env " + V, "refused"),
    ("env X=1 " + V, "refused"),
    ("timeout 5 " + V, "refused"),
    ("nice -n 10 " + V, "refused"),
    ("xargs -I{} " + V + " < /dev/null", "refused"),
    ("timeout 5 echo " + V, "data"),
    ("timeout 5 bash -c " + V, "refused"),
    ("nohup echo " + V + " 2>/dev/null", "data"),
    ("command echo " + V, "data"),
    ("exec echo " + V, "data"),
    ("sudo -s " + V, "refused"),
    ("find /dev/null -exec " + V + " \\;", "refused"),
    ("find /dev/null -exec bash -c " + V + " \\;", "refused"),
    ("find /dev/null -name " + V + " -o -print -quit; echo " + V, "data"),
    ('f() { eval "$1"; }; f ' + V, "refused"),
    ("f() { echo " + V + "; }; f", "data"),
    ("CMD=echo; $CMD " + V, "refused"),
    ("* " + V, "refused"),
    ("e?al " + V, "refused"),
    ("{eval,x} " + V, "refused"),
    ("echo * " + V, "data"),
    # variables that later run as code
    ("PS4=" + V + "; set -x; true", "refused"),
    ("PATH=" + V + " ls", "refused"),
    ("BASH_ENV=" + V + " bash -c true", "refused"),
    ("X=" + V + " bash -c 'echo \"$X\"'", "data"),
    # quoting the value yourself, escapes, concatenation, blocks
    ('echo "' + V + '"', "data"),
    ('echo "[' + V + ']"', "data"),
    ("echo '" + V + "'", "refused"),
    ("echo \\" + V, "refused"),
    ("echo $" + V, "refused"),
    ("echo pre" + V + "post", "data"),
    ("echo " + V + V, "data"),
    ("echo {% for w in [params.v] %}" + V.replace("params.v", "w") + " {% endfor %}", "data"),
    ("{% if params.v %}echo " + V + "{% endif %}", "data"),
    ("{% if params.v %}'{% endif %}echo " + V, "refused"),
    ("echo " + V + " > out.txt; cat out.txt", "data"),
    ("diff <(echo " + V + ") /dev/null; true", "safe"),
    ("for w in " + V + '; do echo "$w"; done', "data"),
    ("for " + V + " in a; do :; done", "refused"),
    ("echo ROTA_TPL_0 " + V, "refused"),
    # bashlex loops without end on this one: it must be stopped, and refused
    ("$'${x:-$''q' " + V + "'}'", "refused"),
]

VALUES = [
    "$(touch {m})",
    "`touch {m}`",
    "a[$(touch {m})]",
    "x; touch {m}",
    "'\"$(touch {m})\"'",
    "touch {m}",
]


def _variables(value: str) -> dict[str, Any]:
    return template_vars(
        run_id="r-1",
        flow="f",
        task_id="t",
        try_number=1,
        params={"v": value},
        logical_date=DAY,
        data_interval_start=DAY,
        data_interval_end=DAY,
    )


def _run(template: str, value: str, work: Path) -> str:
    """Check, render and run *template* with *value*: "refused" or "ran:<stdout>".

    The work folder holds files named like evaluating commands, so that a pattern the template
    leaves unquoted in the command's place would turn into one.
    """
    for name in ("eval", "bash"):
        (work / name).touch()
    try:
        check_template(template, where="task 't'", quote=True)
    except DefinitionError as err:
        assert "\n" not in str(err)
        assert str(err).startswith("task 't': template error: ")
        return "refused"
    try:
        command = render_shell(template, _variables(value), where="task 't'")
    except TemplateRenderError as err:
        assert "\n" not in str(err)
        return "refused at run time"
    env = {"PATH": os.environ["PATH"], "HOME": str(work), **command.values}
    # a generated command may write without end (cat * > out): bound its files, keep its output
    # in a file beside the work folder, and read only the start of it
    out = work.parent / f"{work.name}.stdout"
    with out.open("w+b") as sink:
        subprocess.run(
            ["bash", "-c", command.text],
            cwd=work,
            env=env,
            stdout=sink,
            stderr=subprocess.DEVNULL,
            timeout=30,
            stdin=subprocess.DEVNULL,
            check=False,
            preexec_fn=_bounded_files,
        )
        sink.seek(0)
        return "ran:" + sink.read(1 << 16).decode(errors="replace")


def _bounded_files() -> None:
    limit = 8 << 20
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


@pytest.mark.parametrize(("template", "expected"), CORPUS)
def test_no_template_of_the_corpus_runs_a_value(
    template: str, expected: str, tmp_path: Path
) -> None:
    marker = tmp_path / "marker"
    for raw in VALUES:
        value = raw.format(m=marker)
        outcome = _run(template, value, tmp_path)
        assert not marker.exists(), f"{template!r} ran {value!r}"
        if expected == "refused":
            assert outcome == "refused", outcome
        elif expected == "data":
            assert outcome.startswith("ran:"), outcome
            assert value in outcome, outcome
        else:
            assert outcome != "refused", outcome


def test_the_corpus_is_large_enough() -> None:
    assert len(CORPUS) >= 40
    assert {e for _, e in CORPUS} == {"refused", "data", "safe"}


# --- generated commands ------------------------------------------------------------------------

_ATOM = st.sampled_from(
    ["a", "-n", "x=1", "'q'", '"d"', "$HOME", "1", "--", "*", "~", "{}", "``", "eval", "-c", ";"]
)
_CMD = st.sampled_from(
    ["echo", "printf '%s\\n'", "eval", "declare", "read", "test", "[", "let", "bash -c",
     "env", "timeout 1", "awk", "python3 -c", "export", "cat", "true", "exec", "unset"]
)  # fmt: skip
_WRAP = st.sampled_from(
    ["{}", '"{}"', "'{}'", "$({})", "`{}`", "${{x:-{}}}", "$(( {} ))", "(( {} ))", "a[{}]=1",
     "[[ {} ]]", "{}=1", "x={}", "# {}", "\\{}", "$'{}'", '$"{}"', "<<< {}", "> {}",
     "$(echo ')' {})", "$(case a in a) {};; esac)", "cat <<E\n{}\nE", "for i in {}; do :; done",
     "f() {{ {}; }}; f", "{} | cat", "{{ {}; }}", "( {} )", "! {}", "{} && true", "{}; true"]
)  # fmt: skip


@st.composite
def _shell_commands(draw: st.DrawFn) -> str:
    """A command from a small shell grammar with a placeholder somewhere inside."""
    inner = f"{draw(_CMD)} {draw(_ATOM)} {V} {draw(_ATOM)}"
    if draw(st.booleans()):
        inner = f"{draw(_ATOM)} {V}"
    for _ in range(draw(st.integers(0, 3))):
        inner = draw(_WRAP).format(inner)
    return inner if inner.split(" ", 1)[0] not in ("'", '"') else "echo " + inner


@settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(command=_shell_commands(), raw=st.sampled_from(VALUES))
def test_generated_commands_never_run_a_value(command: str, raw: str, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    marker.unlink(missing_ok=True)
    _run(command, raw.format(m=marker), tmp_path)
    assert not marker.exists(), f"{command!r} ran the value"


# --- the reproduction through the CLI -----------------------------------------------------


def _rota(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ROTA_HOME": str(tmp_path / "home"), "ROTA_WORKERS": "1"}
    env.pop("ROTA_DATABASE_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "rota", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )


def test_the_reported_awk_template_is_refused_at_load_and_nothing_runs(tmp_path: Path) -> None:
    flow = tmp_path / "inject.py"
    flow.write_text(
        textwrap.dedent(
            """
            from rota import Flow, ShellTask
            with Flow("inject", params={"tag": "prod"}) as f:
                ShellTask("count", "grep -c \\"ERROR$\\" /dev/null | awk '{ print \\"[\\" {{ params.tag }} \\"]\\", $0 }'")
            """  # noqa: E501
        )
    )
    done = _rota(tmp_path, "run", str(flow), "-p", "tag=$(id>PWNED)", "--executor", "inprocess")
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "inject.py" in done.stderr
    assert "inside single quotes" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "PWNED").exists()
    assert not list((tmp_path / "home").rglob("*.log"))


def test_a_value_in_an_accepted_template_runs_as_data_through_the_cli(tmp_path: Path) -> None:
    flow = tmp_path / "count.py"
    flow.write_text(
        textwrap.dedent(
            """
            from rota import Flow, ShellTask
            with Flow("count", params={"tag": "prod"}) as f:
                ShellTask("count", 'grep "foo$" /dev/null; echo "[{{ params.tag }}]" {{ ds }} > out.txt')
            """  # noqa: E501
        )
    )
    done = _rota(tmp_path, "run", str(flow), "-p", "tag=$(id>PWNED)", "--executor", "inprocess")
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "PWNED").exists()
    text = (tmp_path / "out.txt").read_text()
    assert text.startswith("[$(id>PWNED)] ")
