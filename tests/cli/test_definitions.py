"""Bad definitions and bad input: one line naming the file (and line), exit 2, nothing stored."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from clihelp import RotaCli

GOOD = """
from rota import flow, task

@task
def hello(name: str) -> str:
    return "hello " + name

@flow
def greet(name: str = "world", times: int = 1):
    for _ in range(times):
        hello(name)
"""

BAD_FILES = {
    "syntax.py": ("from rota import flow\n\ndef broken(:\n    pass\n", "syntax error", 3),
    "importerr.py": ("import rota\nimport no_such_module_here\n", "ModuleNotFoundError", 2),
    "raises.py": ("from rota import flow\n\n\nraise RuntimeError('kaboom')\n", "kaboom", 4),
    "dupe.py": (
        "from rota import Flow, PythonTask\n\nwith Flow('d'):\n"
        "    PythonTask('x', print)\n    PythonTask('x', print)\n",
        "duplicate task id 'x'",
        5,
    ),
    "badid.py": (
        "from rota import Flow, ShellTask\n\nwith Flow('b'):\n    ShellTask('no spaces', 'true')\n",
        "invalid task id 'no spaces'",
        4,
    ),
    "dots.py": (
        "from rota import Flow, ShellTask\n\nwith Flow('dots'):\n    ShellTask('a..b', 'true')\n",
        "invalid task id 'a..b'",
        4,
    ),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_file_is_one_line_with_file_and_line_exit_2(
    name: str, rota: RotaCli, home: Path, write_flow: Callable[[str, str], Path]
) -> None:
    source, message, line = BAD_FILES[name]
    path = write_flow(name, source)
    result = rota("run", str(path))
    assert result.code == 2, result.err
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert f"{path}:{line}:" in lines[0]
    assert message in lines[0]
    assert "Traceback" not in result.err
    assert not (home / "rota.db").exists()


def test_flow_body_error_names_the_line_in_the_flow(
    rota: RotaCli, write_flow: Callable[[str, str], Path]
) -> None:
    src = (
        "from rota import flow, task\n\n@task\ndef one(x):\n    return x\n\n"
        "@flow\ndef f():\n    one()\n"
    )
    path = write_flow("missing_arg.py", src)
    result = rota("run", str(path))
    assert result.code == 2
    assert f"{path}:9:" in result.err
    assert "task 'one'" in result.err and "missing a required argument" in result.err


def test_unknown_and_bad_parameters(
    rota: RotaCli, home: Path, write_flow: Callable[[str, str], Path]
) -> None:
    path = write_flow("greet.py", GOOD)
    unknown = rota("run", str(path), "-p", "nme=x")
    assert unknown.code == 2
    assert "unknown parameter 'nme'" in unknown.err and "name, times" in unknown.err
    bad_type = rota("run", str(path), "-p", "times=many")
    assert bad_type.code == 2
    assert "expects int" in bad_type.err
    malformed = rota("run", str(path), "-p", "times")
    assert malformed.code == 2
    assert not (home / "rota.db").exists()
    ok = rota("run", str(path), "-p", "times=3", "-p", "name=rota", "--json")
    assert ok.code == 0, ok.err
    assert sorted(ok.json()["tasks"]) == ["hello", "hello__1", "hello__2"]


def test_missing_file_and_unknown_flow_name(
    rota: RotaCli, write_flow: Callable[[str, str], Path]
) -> None:
    missing = rota("run", "does/not/exist.py")
    assert missing.code == 2 and "no such file" in missing.err
    path = write_flow("greet.py", GOOD)
    wrong = rota("run", f"{path}:nope")
    assert wrong.code == 2 and "no flow named 'nope'" in wrong.err and "greet" in wrong.err
    right = rota("run", f"{path}:greet")
    assert right.code == 0, right.err


def test_folder_loads_every_good_flow_despite_bad_files(
    rota: RotaCli, write_flow: Callable[[str, str], Path]
) -> None:
    good = write_flow("greet.py", GOOD)
    write_flow("other.py", GOOD.replace("def greet", "def greet_again"))
    for name in ("syntax.py", "importerr.py"):
        write_flow(name, BAD_FILES[name][0])
    twin = write_flow(
        "twin.py", GOOD.replace("def hello", "def hello2").replace("hello(", "hello2(")
    )
    result = rota("flows", "list", str(good.parent), "--json")
    assert result.code == 2
    listing = result.json()
    assert sorted(f["flow"] for f in listing["flows"]) == ["greet_again"]
    errors = "\n".join(listing["errors"])
    assert "syntax.py:3" in errors and "importerr.py:2" in errors
    # the same flow name in two files: both are flagged, neither silently wins
    assert f"{good}:" in errors and f"{twin}:" in errors
    by_path = rota("run", f"{good.parent / 'other.py'}", "--json")
    assert by_path.code == 0, by_path.err


def test_graph_formats(rota: RotaCli, write_flow: Callable[[str, str], Path]) -> None:
    src = (
        "from rota import Flow, ShellTask\n\nwith Flow('g') as g:\n"
        "    a = ShellTask('a', 'true')\n    b = ShellTask('b', 'true')\n"
        "    c = ShellTask('c', 'true')\n    [a, b] >> c\n"
    )
    path = write_flow("g.py", src)
    mermaid = rota("graph", str(path), "--format", "mermaid")
    assert mermaid.code == 0
    assert "a --> c" in mermaid.out and "b --> c" in mermaid.out
    dot = rota("graph", str(path), "--format", "dot")
    assert '"a" -> "c";' in dot.out
    ascii_ = rota("graph", str(path))
    assert "c [shell]  <- a, b" in ascii_.out


def test_runs_list_newest_first(rota: RotaCli, write_flow: Callable[[str, str], Path]) -> None:
    path = write_flow("greet.py", GOOD)
    ids = [rota("run", str(path), "--json").json()["run_id"] for _ in range(3)]
    listing = rota("runs", "list", "--json")
    assert listing.code == 0
    runs = listing.json()
    assert [r["run_id"] for r in runs] == ids[::-1]
    assert all(r["state"] == "success" and r["flow"] == "greet" for r in runs)
    assert all(r["started"] and r["ended"] for r in runs)
    assert rota("runs", "list", "--flow", "nope", "--json").json() == []
    unknown = rota("runs", "show", "no-such-run")
    assert unknown.code == 2 and "no-such-run" in unknown.err
