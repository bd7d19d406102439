"""Secrets end to end through the ``rota`` command: a token given as a parameter, a password read
from the environment through ``rota.Secret`` and a token in a task's env reach the tasks, and
appear in no file under ROTA_HOME, in no notifier body and in no CLI output. Resuming such a run
asks for what the store does not keep."""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from clihelp import Result, RotaCli, rota_env, wait_for

from rota.engine.flowdir import FlowFolder
from rota.engine.launcher import DriverLauncher
from rota.engine.scheduler import Scheduler, SchedulerOptions
from rota.model.states import RunState, TaskState
from rota.store.sql import SqlStore
from rota.testing import FakeClock, read_output
from webhook_sink import Hook

WriteFlow = Callable[[str, str], Path]

TOKEN = "tok-hunter2-XYZ"  # given with -p
DB_PW = "pw-s3cr3t-ABC"  # read by the worker through rota.Secret("DB_PASSWORD")
ENV_TOKEN = "env-tok-777-QRS"  # written in a task's env
SECRETS = (TOKEN, DB_PW, ENV_TOKEN)


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


LEAKY = f"""
import hashlib
import os
from rota import Secret, ShellTask, WebhookNotifier, flow, task

HOOK = WebhookNotifier(os.environ["HOOK_URL"])


@task
def show(api_token: str, ctx) -> str:
    print("token is", api_token)
    print("params", dict(ctx.params))
    return hashlib.sha256(api_token.encode()).hexdigest()


@task
def reject(api_token: str) -> None:
    raise ValueError(f"service rejected {{api_token}}")


@flow(on_failure=HOOK, on_run_failure=HOOK)
def leaky(api_token: str, db_password=Secret("DB_PASSWORD")):
    show(api_token)
    reject(api_token)
    ShellTask(
        "shell",
        'echo "t=$API_TOKEN p=$DB_PW e=$SERVICE_TOKEN"; env | grep ^ROTA_PARAM_; '
        'echo in the command: {{{{ params.api_token }}}}; '
        'printf %s "$API_TOKEN$DB_PW$SERVICE_TOKEN" | sha256sum | cut -c1-64',
        env={{"API_TOKEN": "{{{{ params.api_token }}}}", "DB_PW": db_password,
             "SERVICE_TOKEN": "{ENV_TOKEN}"}},
    )
    ShellTask("shell_fails", 'echo "refused: $SERVICE_TOKEN" >&2; exit 4',
              env={{"SERVICE_TOKEN": "{ENV_TOKEN}"}})
"""


def files_holding(home: Path, secrets: tuple[str, ...]) -> dict[str, list[str]]:
    """For each file under *home* (read as bytes: the SQLite file and its WAL too), the secrets
    found in it."""
    found: dict[str, list[str]] = {}
    for path in sorted(home.rglob("*")):
        if path.is_file():
            data = path.read_bytes()
            hits = [s for s in secrets if s.encode() in data]
            if hits:
                found[str(path.relative_to(home))] = hits
    return found


def no_secret_in(result: Result) -> bool:
    return not any(s in result.out or s in result.err for s in SECRETS)


def test_a_token_in_params_and_env_is_in_no_file_no_notifier_body_and_no_cli_output(
    rota: RotaCli, home: Path, write_flow: WriteFlow, store: SqlStore, hook: Hook
) -> None:
    path = write_flow("leaky.py", LEAKY)
    env = {"HOOK_URL": hook.url, "DB_PASSWORD": DB_PW}
    result = rota("run", str(path), "-p", f"api_token={TOKEN}", "--json", env=env)
    assert result.code == 1, result.err
    assert no_secret_in(result)
    run_id = result.json()["run_id"]
    tasks = {a.task_id: a for a in store.attempts(run_id)}
    assert {t: a.state for t, a in tasks.items()} == {
        "show": TaskState.SUCCESS,
        "reject": TaskState.FAILED,
        "shell": TaskState.SUCCESS,
        "shell_fails": TaskState.FAILED,
    }
    # the tasks had the real values (a digest proves it without writing them down)...
    assert read_output(tasks["show"]) == sha(TOKEN)
    assert read_output(tasks["shell"]) == sha(TOKEN + DB_PW + ENV_TOKEN)
    # ...and no file under ROTA_HOME holds any of them: store, WAL, logs, artifacts, callbacks
    files = [p for p in home.rglob("*") if p.is_file()]
    assert any(p.name == "rota.db" for p in files) and sum(p.suffix == ".log" for p in files) >= 4
    assert files_holding(home, SECRETS) == {}
    # every notifier body, too: two failed tasks and the failed run
    assert len(hook.raw_bodies()) == 3
    for raw in hook.raw_bodies():
        assert not any(s.encode() in raw for s in SECRETS), raw
        assert json.loads(raw)["params"] == {"api_token": "***", "db_password": "***"}
    messages = {json.loads(b)["task_id"]: json.loads(b)["error_message"] for b in hook.raw_bodies()}
    assert messages["reject"] == "service rejected ***"
    # what people see: the logs as printed, and the run as shown
    logs = rota("tasks", "logs", run_id, "show")
    assert logs.code == 0 and "token is ***" in logs.out
    assert "params {'api_token': '***', 'db_password': '***'}" in logs.out
    shell_log = rota("tasks", "logs", run_id, "shell")
    assert "t=*** p=*** e=***" in shell_log.out and "ROTA_PARAM_API_TOKEN=***" in shell_log.out
    assert "in the command: ***" in shell_log.out  # what it printed...
    assert "[rota] $ echo" in shell_log.out and "echo in the command: ***;" in shell_log.out
    assert "refused: ***" in rota("tasks", "logs", run_id, "shell_fails").out
    shown = rota("runs", "show", run_id, "--json")
    assert shown.json()["params"] == {"api_token": "***", "db_password": "***"}
    table = rota("runs", "show", run_id)
    assert "service rejected ***" in table.out
    for result in (logs, shell_log, shown, table):
        assert no_secret_in(result)


FLAKY = """
import hashlib
import os
from pathlib import Path
from rota import flow, task


@task
def check(api_token: str, password: str) -> str:
    print("checking", api_token, password)
    if not Path(os.environ["GO_FILE"]).exists():
        raise RuntimeError("not yet")
    return hashlib.sha256((api_token + password).encode()).hexdigest()


@flow
def flaky(api_token: str, password: str = "pw-from-the-code-1", epochs: int = 1):
    check(api_token, password)
"""


def test_resume_asks_for_a_secret_param_the_store_does_not_keep(
    rota: RotaCli, home: Path, write_flow: WriteFlow, store: SqlStore, tmp_path: Path
) -> None:
    path = write_flow("flaky.py", FLAKY)
    go = tmp_path / "go"
    env = {"GO_FILE": str(go)}
    first = rota("run", str(path), "-p", f"api_token={TOKEN}", "-p", "epochs=2", "--json", env=env)
    assert first.code == 1, first.err
    run_id = first.json()["run_id"]
    attempts = len(store.attempts(run_id))
    go.touch()
    # without the value: one line naming the parameter and how to give it; nothing changes
    missing = rota("resume", run_id, env=env)
    assert missing.code == 2
    assert missing.err.count("\n") == 1 and "Traceback" not in missing.err
    assert "'api_token'" in missing.err and "ROTA_PARAM_API_TOKEN" in missing.err
    assert store.get_run(run_id).state is RunState.FAILED
    assert len(store.attempts(run_id)) == attempts
    # given again with -p: the task gets it, and the password the flow's default gave the run;
    # a parameter the store keeps, given with -p, changes for the re-run tasks and is recorded
    again = ("-p", f"api_token={TOKEN}", "-p", "epochs=3")
    done = rota("resume", run_id, *again, "--json", env=env)
    assert done.code == 0, done.err
    (change,) = store.get_run(run_id).param_changes or []
    assert change["changes"] == {"epochs": {"from": 2, "to": 3}}  # the secret is no change
    (rec,) = [a for a in store.attempts(run_id) if a.state is TaskState.SUCCESS]
    assert read_output(rec) == sha(TOKEN + "pw-from-the-code-1")
    assert files_holding(home, (TOKEN, "pw-from-the-code-1")) == {}


def test_resume_reads_a_secret_param_from_its_environment_variable(
    rota: RotaCli, home: Path, write_flow: WriteFlow, store: SqlStore, tmp_path: Path
) -> None:
    path = write_flow("flaky.py", FLAKY)
    go = tmp_path / "go"
    env = {"GO_FILE": str(go)}
    first = rota("run", str(path), "-p", f"api_token={TOKEN}", "-p", "password=typed-pw-2", env=env)
    assert first.code == 1, first.err
    (run,) = store.list_runs("flaky")
    go.touch()
    only_token = rota("resume", run.run_id, env={**env, "ROTA_PARAM_API_TOKEN": TOKEN})
    assert only_token.code == 2 and "'password'" in only_token.err  # given too: not the default
    both = {**env, "ROTA_PARAM_API_TOKEN": TOKEN, "ROTA_PARAM_PASSWORD": "typed-pw-2"}
    done = rota("resume", run.run_id, env=both)
    assert done.code == 0, done.err
    (rec,) = [a for a in store.attempts(run.run_id) if a.state is TaskState.SUCCESS]
    assert read_output(rec) == sha(TOKEN + "typed-pw-2")
    assert files_holding(home, (TOKEN, "typed-pw-2")) == {}


SCHEDULED = """
import hashlib
from pathlib import Path
from rota import Secret, flow, task


@task
def use(api_token: str, db_password: str) -> None:
    print("using", api_token, db_password)
    digest = hashlib.sha256((api_token + db_password).encode()).hexdigest()
    (Path(__file__).parent.parent / "digest").write_text(digest)


@flow(schedule="@daily")
def nightly(api_token: str = "default-tok-in-code", db_password=Secret("DB_PASSWORD")):
    use(api_token, db_password)
"""


def test_a_queued_run_carries_secret_defaults_and_refuses_a_secret_given_in_clear(
    rota: RotaCli, home: Path, write_flow: WriteFlow, store: SqlStore, tmp_path: Path
) -> None:
    path = write_flow("nightly.py", SCHEDULED)
    flows = str(path.parent)
    refused = rota("trigger", "nightly", "-p", f"api_token={TOKEN}", "--flows", flows)
    assert refused.code == 2 and "'api_token' is secret" in refused.err
    assert store.list_runs("nightly") == []
    queued = rota("trigger", "nightly", "--flows", flows)
    assert queued.code == 0, queued.err
    # the scheduler's driver rebuilds the run: the default from the code, the Secret from its env
    done = rota("scheduler", "--flows", flows, "--once", env={"DB_PASSWORD": DB_PW})
    assert done.code == 0, done.err
    triggered = [r for r in store.list_runs("nightly") if r.run_type == "triggered"]
    assert [r.state for r in triggered] == [RunState.SUCCESS]
    assert (tmp_path / "digest").read_text() == sha("default-tok-in-code" + DB_PW)
    assert files_holding(home, ("default-tok-in-code", DB_PW)) == {}
    listed = rota("flows", "list", flows, "--json")
    (row,) = listed.json()["flows"]
    assert row["params"] == {"api_token": "***", "db_password": "***"}


def test_the_scheduler_runs_a_flow_with_secret_defaults_and_stores_neither(
    home: Path, write_flow: WriteFlow, store: SqlStore, tmp_path: Path
) -> None:
    path = write_flow("nightly.py", SCHEDULED)
    launcher = DriverLauncher(
        rota_env(home, ROTA_WORKERS="1", DB_PASSWORD=DB_PW), home / "logs" / "drivers"
    )
    clock = FakeClock(datetime(2026, 3, 4, 12, 0, tzinfo=UTC))
    options = SchedulerOptions(max_active_runs=2, exclusive=False)
    sched = Scheduler(store, FlowFolder(path.parent, parse_timeout=20), launcher, clock, options)
    try:
        (made,) = sched.tick().created
        wait_for(lambda: not (launcher.reap() or launcher.active()), timeout=90)
    finally:
        sched.close()
    assert store.get_run(made.run_id).state is RunState.SUCCESS
    assert (tmp_path / "digest").read_text() == sha("default-tok-in-code" + DB_PW)
    assert files_holding(home, ("default-tok-in-code", DB_PW)) == {}


BACKFILLED = """
import hashlib
from pathlib import Path
from rota import flow, task


@task
def use(api_token: str, ctx) -> None:
    print("using", api_token)
    out = Path(__file__).parent.parent / "digests"
    out.mkdir(exist_ok=True)
    (out / ctx.run_id).write_text(hashlib.sha256(api_token.encode()).hexdigest())


@flow(schedule="@daily")
def daily(api_token: str = "x"):
    use(api_token)
"""


def test_a_backfill_hands_a_secret_param_to_its_drivers_and_stores_none(
    rota: RotaCli, home: Path, write_flow: WriteFlow, store: SqlStore, tmp_path: Path
) -> None:
    path = write_flow("daily.py", BACKFILLED)
    result = rota(
        "backfill", str(path), "--start", "2026-01-01", "--end", "2026-01-02",
        "-p", f"api_token={TOKEN}",
    )  # fmt: skip
    assert result.code == 0, result.err
    runs = store.list_runs("daily")
    assert len(runs) == 2 and {r.state for r in runs} == {RunState.SUCCESS}
    digests = {p.read_text() for p in (tmp_path / "digests").iterdir()}
    assert digests == {sha(TOKEN)}
    assert files_holding(home, (TOKEN,)) == {}
    assert no_secret_in(result)


ECHO = """
from rota import Secret, flow, task


@task
def greet(api_token: str, key: str) -> str:
    return f"hello {api_token} {key}"


@flow
def echo(api_token: str, key=Secret("ECHO_KEY")):
    greet(api_token, key)
"""


def test_rota_run_prints_a_final_output_with_its_secrets_masked(
    rota: RotaCli, write_flow: WriteFlow
) -> None:
    path = write_flow("echo.py", ECHO)
    result = rota("run", str(path), "-p", f"api_token={TOKEN}", env={"ECHO_KEY": DB_PW})
    assert result.code == 0, result.err
    assert "greet → 'hello *** ***'" in result.out
    assert no_secret_in(result)


HANGS = """
import time
from rota import flow, task


@task
def hang(api_token: str) -> None:
    print("about to hang holding", api_token, flush=True)
    time.sleep(120)


@flow
def hangs(api_token: str):
    hang(api_token)
"""


def test_a_runner_killed_mid_attempt_leaves_its_output_masked(
    home: Path, write_flow: WriteFlow, store: SqlStore, rota: RotaCli
) -> None:
    path = write_flow("hangs.py", HANGS)
    proc = subprocess.Popen(
        [sys.executable, "-m", "rota", "run", str(path), "-p", f"api_token={TOKEN}"],
        env=rota_env(home, ROTA_WORKERS="1"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    logs = home / "logs"
    try:
        # the task has printed the token: its log, written as it prints, holds the mask, and
        # the store names it
        wait_for(lambda: any("holding ***" in p.read_text() for p in logs.rglob("1.log")), 60)
        wait_for(lambda: [a.log_path for a in store.attempts(store.list_runs()[0].run_id)]
                 != [None], 30)  # fmt: skip
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # its worker sees the runner gone and ends; what the task printed stays, masked
    (run,) = store.list_runs()
    shown = rota("tasks", "logs", run.run_id, "hang")
    assert shown.code == 0 and shown.out == "about to hang holding ***\n", shown
    assert files_holding(home, (TOKEN,)) == {}
