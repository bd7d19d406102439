"""The scheduler's folder of flow files: each file parsed in a child process, bad files named."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from rota.engine.flowdir import FlowFolder, FlowInfo, ScanResult
from rota.engine.runner import FlowRef
from rota.errors import ConfigError
from rota.model.datasets import Dataset
from rota.model.schedule import FlowTiming, Schedule

# --- the generated folder: 50 good files beside 10 bad ones -------------------------------------

_TASKFLOW = """\
from datetime import UTC, datetime, timedelta
from rota import flow, task

@task
def extract() -> list[int]:
    return [1, 2, 3]

@task
def total(xs: list[int]) -> int:
    return sum(xs)

@flow({options})
def {name}(scale: int = 2):
    total(extract())
"""

_OPERATOR = """\
from datetime import UTC, datetime, timedelta
from rota import Flow, ShellTask

with Flow("{name}", {options}) as f:
    get = ShellTask("get", "echo get")
    load = ShellTask("load", "echo load")
    get >> load
"""


def _good(i: int) -> tuple[str, str, FlowTiming]:
    """Source of good file *i*, its flow's name, and the timing the flow must load with."""
    name = f"flow_{i:02d}"
    kind = i % 5
    if kind == 0:
        return _TASKFLOW.format(name=name, options='schedule="@daily"'), name, _timing("@daily")
    if kind == 1:
        hours = i % 7 + 1
        options = f"schedule=timedelta(hours={hours})"
        return _OPERATOR.format(name=name, options=options), name, _timing(timedelta(hours=hours))
    if kind == 2:
        options = (
            'schedule="0 3 * * *", timezone="Europe/Berlin", catchup=True, '
            "start_date=datetime(2024, 1, 1), max_active_runs=2"
        )
        expected = _timing(
            "0 3 * * *", "Europe/Berlin", catchup=True, start=datetime(2024, 1, 1), runs=2
        )
        return _TASKFLOW.format(name=name, options=options), name, expected
    if kind == 3:
        options = (
            'schedule="*/15 * * * *", timezone="America/New_York", '
            "end_date=datetime(2030, 1, 1, tzinfo=UTC)"
        )
        expected = _timing("*/15 * * * *", "America/New_York", end=datetime(2030, 1, 1, tzinfo=UTC))
        return _OPERATOR.format(name=name, options=options), name, expected
    minutes = 30 + i
    options = (
        f"schedule=timedelta(minutes={minutes}), catchup=True, "
        "start_date=datetime(2025, 6, 1, tzinfo=UTC)"
    )
    expected = _timing(
        timedelta(minutes=minutes), catchup=True, start=datetime(2025, 6, 1, tzinfo=UTC)
    )
    return _TASKFLOW.format(name=name, options=options), name, expected


def _timing(
    schedule: str | timedelta,
    timezone: str = "UTC",
    *,
    catchup: bool = False,
    start: datetime | None = None,
    end: datetime | None = None,
    runs: int = 16,
) -> FlowTiming:
    clock = Schedule.parse(schedule, timezone=timezone, start_date=start, end_date=end)
    return FlowTiming(clock, (), catchup, runs, timezone)


_CYCLE = """\
from rota import Flow, ShellTask

with Flow("cyclic", schedule="@daily") as f:
    a = ShellTask("a", "echo a")
    b = ShellTask("b", "echo b")
    a >> b >> a
"""

_TWIN = """\
from rota import flow, task

@task
def hello() -> str:
    return "hi"

@flow(name="twin", schedule="@hourly")
def {fn}():
    hello()
"""

BAD: dict[str, tuple[str, str]] = {
    # file name: (source, a regex the file's error must match)
    "bad_syntax.py": ("def broken(:\n    pass\n", r"bad_syntax\.py:1: syntax error"),
    "bad_import.py": (
        "import rota_no_such_module_xyz\n",
        r"bad_import\.py:1: import failed: ModuleNotFoundError: .*rota_no_such_module_xyz",
    ),
    "bad_raise.py": (
        "from rota import flow\n\nraise RuntimeError('boom at import')\n",
        r"bad_raise\.py:3: import failed: RuntimeError: boom at import",
    ),
    "bad_hang.py": (
        "while True:\n    pass\n",
        r"bad_hang\.py: parse timed out after 15s \(killed\)",
    ),
    "bad_cycle.py": (_CYCLE, r"bad_cycle\.py: cycle in flow 'cyclic': (a -> b -> a|b -> a -> b)"),
    "bad_twin_a.py": (_TWIN.format(fn="one"), r"bad_twin_a\.py: flow 'twin' is also defined in "),
    "bad_twin_b.py": (_TWIN.format(fn="two"), r"bad_twin_b\.py: flow 'twin' is also defined in "),
    "bad_cron.py": (
        "from rota import flow\n\n@flow(schedule='61 * * * *')\ndef nightly():\n    pass\n",
        r"bad_cron\.py:\d+: bad cron expression '61 \* \* \* \*'",
    ),
    "bad_option.py": (
        "from rota import flow\n\n@flow(schedule='@daily', retries_default=3)\n"
        "def nightly2():\n    pass\n",
        r"bad_option\.py:\d+: flow 'nightly2': unknown option 'retries_default'",
    ),
    "bad_exit.py": ("import sys\n\nsys.exit(3)\n", r"bad_exit\.py:3: import failed: SystemExit: 3"),
}


def _write(folder: Path, name: str, source: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(source))
    return path


def _gone(text: str) -> bool:
    """Whether no process with *text* in its command line lives, waiting up to 10 s for a
    killed one to be torn down (SIGKILL is delivered asynchronously)."""
    deadline = time.monotonic() + 10
    while _running_with(text):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _running_with(text: str) -> list[int]:
    """Pids of live processes whose command line contains *text* (Linux /proc)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline:
            pids.append(int(entry.name))
    return pids


def test_loads_50_good_files_and_names_each_of_10_bad_ones(tmp_path: Path) -> None:
    expected: dict[str, FlowTiming] = {}
    for i in range(50):
        source, name, timing = _good(i)
        _write(tmp_path, f"good_{i:02d}.py", source)
        expected[name] = timing
    for file, (source, _) in BAD.items():
        _write(tmp_path, file, source)

    folder = FlowFolder(tmp_path, parse_timeout=15, max_parallel=4)  # only bad_hang.py needs it
    result = folder.scan()

    assert sorted(result.flows) == sorted(expected), "exactly the 50 good flows, no twin"
    for name, timing in expected.items():
        info = result.flows[name]
        assert info.timing() == timing, name
        assert info.tasks is not None and len(info.tasks) == 2
        assert {kind for _, kind, _ in info.tasks} <= {"python", "shell"}
    root = tmp_path.resolve()
    assert sorted(result.errors) == sorted(str(root / f) for f in BAD)
    for file, (_, pattern) in BAD.items():
        error = result.errors[str(root / file)]
        assert re.search(pattern, error), error
        assert "\n" not in error
    assert str(root / "bad_twin_b.py") in result.errors[str(root / "bad_twin_a.py")]
    assert str(root / "bad_twin_a.py") in result.errors[str(root / "bad_twin_b.py")]
    assert _gone(str(root / "bad_hang.py")), "the hanging parse was killed"
    assert result.changed
    assert folder.parse_count == 60


# --- rescans -------------------------------------------------------------------------------------

_DAILY = "from rota import flow, task\n\n@task\ndef t() -> int:\n    return 1\n\n"


def _daily(name: str, schedule: str = "@daily") -> str:
    return _DAILY + f"@flow(schedule={schedule!r})\ndef {name}():\n    t()\n"


@pytest.fixture
def small(tmp_path: Path) -> Path:
    for name in ("alpha", "beta", "gamma"):
        _write(tmp_path, f"{name}.py", _daily(name))
    return tmp_path


def test_a_scan_without_changes_parses_nothing(small: Path) -> None:
    folder = FlowFolder(small, parse_timeout=10)
    first = folder.scan()
    assert sorted(first.flows) == ["alpha", "beta", "gamma"] and first.errors == {}
    assert folder.parse_count == 3

    second = folder.scan()
    assert (second.changed, second.parsed, folder.parse_count) == (False, (), 3)
    assert second.flows == first.flows

    hour_ago = (datetime.now(UTC) - timedelta(hours=1)).timestamp()
    os.utime(small / "beta.py", (hour_ago, hour_ago))  # touched, not changed
    third = folder.scan()
    assert (third.changed, third.parsed, folder.parse_count) == (False, (), 3)
    fourth = folder.scan()  # now trusted by (mtime, size): not even read
    assert (fourth.changed, fourth.parsed, folder.parse_count) == (False, (), 3)


def test_editing_a_file_reparses_only_it(small: Path) -> None:
    folder = FlowFolder(small, parse_timeout=10)
    before = folder.scan()
    _write(small, "beta.py", _daily("beta", "@hourly"))

    after = folder.scan()
    assert after.parsed == (str(small.resolve() / "beta.py"),)
    assert folder.parse_count == 4
    assert after.changed
    assert after.flows["beta"].cron == "0 * * * *"
    assert after.flows["beta"].code_hash != before.flows["beta"].code_hash
    assert after.flows["alpha"] == before.flows["alpha"]


def test_a_change_within_one_timestamp_is_seen(small: Path) -> None:
    folder = FlowFolder(small, parse_timeout=10)
    folder.scan()
    path = small / "beta.py"
    old = path.stat()
    _write(small, "beta.py", _daily("betb"))  # same size; the clock may not have ticked
    os.utime(path, ns=(old.st_atime_ns, old.st_mtime_ns))
    assert (path.stat().st_mtime_ns, path.stat().st_size) == (old.st_mtime_ns, old.st_size)

    result = folder.scan()  # a fresh (mtime, size) is not trusted: the content is checked
    assert result.parsed == (str(path.resolve()),)
    assert sorted(result.flows) == ["alpha", "betb", "gamma"]


def test_deleting_a_file_forgets_its_flows(small: Path) -> None:
    folder = FlowFolder(small, parse_timeout=10)
    folder.scan()
    (small / "gamma.py").unlink()
    result = folder.scan()
    assert sorted(result.flows) == ["alpha", "beta"]
    assert (result.changed, result.parsed) == (True, ())


def test_fixing_a_duplicate_restores_the_other(small: Path) -> None:
    folder = FlowFolder(small, parse_timeout=10)
    _write(small, "copy.py", _daily("alpha"))
    clash = folder.scan()
    assert "alpha" not in clash.flows
    assert sorted(clash.errors) == [str(small.resolve() / f) for f in ("alpha.py", "copy.py")]

    _write(small, "copy.py", _daily("delta"))
    fixed = folder.scan()
    assert fixed.parsed == (str(small.resolve() / "copy.py"),)
    assert sorted(fixed.flows) == ["alpha", "beta", "delta", "gamma"] and fixed.errors == {}

    _write(small, "copy.py", _daily("beta"))
    assert "beta" not in folder.scan().flows
    (small / "copy.py").unlink()
    restored = folder.scan()
    assert sorted(restored.flows) == ["alpha", "beta", "gamma"] and restored.errors == {}


# --- what a file can do to its parse -------------------------------------------------------------


def test_a_file_printing_to_stdout_still_parses(tmp_path: Path) -> None:
    noisy = """\
        import os, subprocess
        print("hello {")
        os.write(1, b'{"flows": [], "errors": ["forged"]}\\n')
        subprocess.run(["echo", "from a child"], check=True)
    """
    path = _write(tmp_path, "noisy.py", textwrap.dedent(noisy) + _daily("noisy"))
    result = FlowFolder(tmp_path, parse_timeout=10).scan()
    assert sorted(result.flows) == ["noisy"] and result.errors == {}

    worker = [sys.executable, "-m", "rota.engine.parse_worker", str(path)]
    done = subprocess.run(worker, capture_output=True, text=True, timeout=60, check=True)
    (line,) = done.stdout.splitlines()  # the report alone: the file's output went to stderr
    assert [f["name"] for f in json.loads(line)["flows"]] == ["noisy"]
    assert "hello {" in done.stderr and "from a child" in done.stderr and "forged" in done.stderr


def test_a_crash_reports_the_last_stderr_line_and_leaves_no_process(tmp_path: Path) -> None:
    marker = f"{os.getpid() % 1000 + 1000}.25"
    _write(tmp_path, "crash.py", "import os\nos.write(2, b'fatal: dying now\\n')\nos._exit(7)\n")
    spawn = f"import subprocess\nsubprocess.Popen(['sleep', '{marker}'])\n"
    _write(tmp_path, "spawns.py", spawn + _daily("spawns"))
    result = FlowFolder(tmp_path, parse_timeout=10).scan()
    error = result.errors[str(tmp_path.resolve() / "crash.py")]
    assert "(exit code 7): fatal: dying now" in error
    assert sorted(result.flows) == ["spawns"]
    assert _gone(f"sleep {marker}"), "the process group was killed"


def test_parameters_without_defaults(tmp_path: Path) -> None:
    head = "from rota import flow, task\n\n@task\ndef t(x: object) -> None:\n    pass\n\n"
    _write(tmp_path, "manual.py", head + "@flow\ndef manual(p, q=1, r=(1, 2)):\n    t(p)\n")
    _write(tmp_path, "sched.py", head + "@flow(schedule='@daily')\ndef sched(p):\n    t(p)\n")
    tup = "@flow(schedule=['s3://b/k'])\ndef tup(r=(1, 2)):\n    t(r)\n"
    _write(tmp_path, "tup.py", head + tup)
    result = FlowFolder(tmp_path, parse_timeout=10).scan()

    manual = result.flows["manual"]
    assert (manual.tasks, manual.params, manual.scheduled) == (None, {"q": 1}, False)
    root = tmp_path.resolve()
    assert result.errors == {
        str(root / "sched.py"): f"{root / 'sched.py'}:7: scheduled flow 'sched' needs a "
        "default for parameter 'p'",
        str(root / "tup.py"): f"{root / 'tup.py'}:7: scheduled flow 'tup' needs a JSON "
        "default for parameter 'r'",
    }


def test_skipped_names_and_files_without_flows(tmp_path: Path) -> None:
    _write(tmp_path, "helpers.py", "VALUE = 1\n")
    _write(tmp_path, "sub/deep.py", _daily("deep"))
    for hidden in (".hidden/x.py", "__pycache__/y.py", "__private.py", ".z.py"):
        _write(tmp_path, hidden, "def broken(:\n")
    folder = FlowFolder(tmp_path, parse_timeout=10)
    result = folder.scan()
    assert (sorted(result.flows), result.errors, folder.parse_count) == (["deep"], {}, 2)
    assert result.flows["deep"].path == str(tmp_path.resolve() / "sub" / "deep.py")


def test_a_missing_folder_has_no_flows(tmp_path: Path) -> None:
    result = FlowFolder(tmp_path / "nope").scan()
    assert result == ScanResult({}, {}, changed=True)


# --- values --------------------------------------------------------------------------------------


def test_flow_info_round_trips_through_json() -> None:
    info = FlowInfo(
        name="nightly",
        path="/flows/n.py",
        module="rota_flow_n_1234",
        code_hash="abc",
        cron="0 3 * * *",
        timezone="Europe/Berlin",
        start_date="2024-01-01T00:00:00+00:00",
        end_date="2025-01-01T00:00:00+00:00",
        catchup=True,
        max_active_runs=3,
        datasets=("s3://b/k",),
        params={"n": [1, 2]},
        tasks=(("a", "python", "h1"), ("b", "shell", "h2")),
    )
    again = FlowInfo.from_json(json.loads(json.dumps(info.to_json())))
    assert again == info
    assert again.ref() == FlowRef("nightly", "/flows/n.py", "rota_flow_n_1234", "abc")
    start, end = datetime(2024, 1, 1, tzinfo=UTC), datetime(2025, 1, 1, tzinfo=UTC)
    clock = Schedule.parse("0 3 * * *", timezone="Europe/Berlin", start_date=start, end_date=end)
    assert again.timing() == FlowTiming(clock, (Dataset("s3://b/k"),), True, 3, "Europe/Berlin")
    every = FlowInfo("x", "", "", "", every_seconds=90.5, tasks=None)
    assert FlowInfo.from_json(every.to_json()) == every
    assert every.timing().schedule == Schedule.parse(timedelta(seconds=90.5))
    with pytest.raises(ValueError, match="colour"):
        FlowInfo.from_json({**info.to_json(), "colour": "red"})


def test_folder_settings_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="parse_timeout"):
        FlowFolder(tmp_path, parse_timeout=0)
    with pytest.raises(ConfigError, match="max_parallel"):
        FlowFolder(tmp_path, max_parallel=0)
