"""Secrets in running attempts, under every executor: a worker reads rota.Secret values from its
environment, tasks get the values in clear, and the attempt's log, its error and the store hold
only ``***``."""

from __future__ import annotations

import hashlib
import stat
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from rota import Flow, PythonTask, Secret, ShellTask
from rota.engine.report import RunSummary
from rota.engine.runner import FlowRef, Runner
from rota.executors.base import ErrorInfo, Executor
from rota.executors.logsink import LogSink
from rota.executors.pool import LocalPoolExecutor
from rota.executors.secrets import redact_error
from rota.executors.threads import InProcessExecutor, ThreadExecutor
from rota.model.dag import Dag
from rota.model.schedule import SystemClock
from rota.model.secrets import Masker
from rota.model.states import TaskState
from rota.store.sql import SqlStore, open_store
from rota.testing import output_of

TOKEN = "tok-hunter2-XYZ"
DB_PW = "pw-s3cr3t-ABC"
LITERAL = "literal-env-secret-42"
SECRETS = (TOKEN, DB_PW, LITERAL)


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqlStore]:
    with open_store(f"sqlite:///{tmp_path}/rota.db") as s:
        yield s


def make_executor(kind: str, tmp_path: Path) -> Executor:
    if kind == "inprocess":
        return InProcessExecutor()
    if kind == "threads":
        return ThreadExecutor(2)
    return LocalPoolExecutor(2, str(tmp_path / "logs"))


def run(store: SqlStore, dag: Dag, tmp_path: Path, kind: str) -> RunSummary:
    ex = make_executor(kind, tmp_path)
    try:
        return Runner(store, ex, home=tmp_path, clock=SystemClock()).run(dag, FlowRef(dag.name))
    finally:
        ex.close()


def show(api_token: str, db_password: str, ctx: Any) -> str:
    print(f"token is {api_token}; password is {db_password}")
    print(f"params seen: {dict(ctx.params)}")
    return sha(api_token + db_password) + sha(ctx.params["api_token"] + ctx.params["db_password"])


def reject(api_token: str) -> None:
    raise ValueError(f"rejected {api_token}")


def secret_flow() -> Dag:
    with Flow("secretive", params={"api_token": "", "db_password": Secret("DB_PASSWORD")}) as f:
        PythonTask("show", show, kwargs={"api_token": TOKEN, "db_password": Secret("DB_PASSWORD")})
        PythonTask("reject", reject, args=(TOKEN,))
        ShellTask(
            "shell",
            'echo "t=$MY_TOKEN p=$DB_PW l=$MY_SECRET" >&2; '
            'printf %s "$MY_TOKEN$DB_PW$MY_SECRET" | sha256sum | cut -c1-64',
            env={"MY_TOKEN": "{{ params.api_token }}", "DB_PW": Secret("DB_PASSWORD"),
                 "MY_SECRET": LITERAL},
        )  # fmt: skip
    return f.build({"api_token": TOKEN})


def all_text(tmp_path: Path) -> bytes:
    """Every byte of every file under *tmp_path* (logs, the SQLite file and its WAL, artifacts)."""
    return b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())


@pytest.mark.parametrize("kind", ["inprocess", "threads", "local"])
def test_tasks_get_secrets_in_clear_and_leave_only_masks(
    store: SqlStore, tmp_path: Path, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DB_PASSWORD", DB_PW)
    summary = run(store, secret_flow(), tmp_path, kind)
    states = {tid: t.state for tid, t in summary.tasks.items()}
    assert states == {"show": TaskState.SUCCESS, "reject": TaskState.FAILED,
                      "shell": TaskState.SUCCESS}  # fmt: skip
    # the tasks had the real values...
    assert output_of(summary, "show") == sha(TOKEN + DB_PW) * 2  # arguments and ctx.params
    assert output_of(summary, "shell") == sha(TOKEN + DB_PW + LITERAL)
    # ...and printed them, but their logs say ***
    show_log = Path(str(summary.tasks["show"].latest.log_path)).read_text()
    assert "token is ***; password is ***" in show_log
    assert "params seen: {'api_token': '***', 'db_password': '***'}" in show_log
    shell_log = Path(str(summary.tasks["shell"].latest.log_path)).read_text()
    assert "t=*** p=*** l=***" in shell_log
    error = summary.tasks["reject"].latest
    assert error.error_message == "rejected ***"
    assert error.error_traceback and "ValueError: rejected ***" in error.error_traceback
    blob = all_text(tmp_path)
    for secret in SECRETS:
        assert secret.encode() not in blob, secret


def test_the_store_params_column_holds_references_and_markers(
    store: SqlStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DB_PASSWORD", DB_PW)
    summary = run(store, secret_flow(), tmp_path, "inprocess")
    with store.engine.connect() as conn:
        raw = conn.execute(
            text("SELECT params FROM runs WHERE run_id = :r"), {"r": summary.run_id}
        ).scalar_one()
    assert TOKEN not in raw and DB_PW not in raw
    assert "DB_PASSWORD" in raw  # the Secret's reference, read again on resume
    assert summary.to_json()["params"] == {"api_token": "***", "db_password": "***"}


def needs_secret(value: str) -> int:
    return len(value)


@pytest.mark.parametrize("kind", ["inprocess", "local"])
def test_a_missing_secret_variable_fails_the_attempt_naming_it(
    store: SqlStore, tmp_path: Path, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ROTA_TEST_UNSET_SECRET", raising=False)
    with Flow("missing") as f:
        PythonTask("needs", needs_secret, args=(Secret("ROTA_TEST_UNSET_SECRET"),))
        ShellTask("shell_needs", "true", env={"X": Secret("ROTA_TEST_UNSET_SECRET")})
        PythonTask("other", needs_secret, args=("fine",))
    summary = run(store, f.build(), tmp_path, kind)
    assert summary.tasks["other"].state is TaskState.SUCCESS
    for tid in ("needs", "shell_needs"):
        rec = summary.tasks[tid].latest
        assert rec.state is TaskState.FAILED
        assert rec.error_type == "SecretNotSet"
        assert rec.error_message is not None and "\n" not in rec.error_message
        assert "ROTA_TEST_UNSET_SECRET" in rec.error_message


# --- masking files and errors -------------------------------------------------------------------


def test_a_log_written_in_pieces_holds_only_masks_and_keeps_bytes_that_are_not_text(
    tmp_path: Path,
) -> None:
    log = tmp_path / "logs" / "1.log"
    sink = LogSink(log, Masker([TOKEN]))
    # a secret cut across writes, bytes that are not UTF-8, a line ended by \r, an unended one
    for piece in (
        b"start \xff\xfe " + TOKEN[:5].encode(),
        TOKEN[5:].encode() + b" end\n",
        b"progress " + TOKEN.encode() + b"\r",
        b"last " + TOKEN.encode(),
    ):
        sink.write(piece)
    assert sink.close()
    assert log.read_bytes() == b"start \xff\xfe *** end\nprogress ***\rlast ***"
    assert stat.S_IMODE(log.stat().st_mode) == 0o600


def test_redact_error_masks_the_message_and_the_traceback() -> None:
    error = ErrorInfo("ValueError", f"bad {TOKEN}", traceback=f"...\nValueError: bad {TOKEN}\n")
    masked = redact_error(error, Masker([TOKEN]))
    assert masked.message == "bad ***" and TOKEN not in masked.traceback


def print_then_hang(api_token: str) -> None:
    print(f"about to hang holding {api_token}", flush=True)
    time.sleep(60)


def test_an_attempt_killed_for_its_timeout_leaves_its_output_masked(
    store: SqlStore, tmp_path: Path
) -> None:
    with Flow("hangs", params={"api_token": TOKEN}) as f:
        PythonTask("hang", print_then_hang, args=(TOKEN,), timeout=timedelta(seconds=1))
    summary = run(store, f.build(), tmp_path, "local")
    rec = summary.tasks["hang"].latest
    assert rec.state is TaskState.FAILED and rec.error_type == "TaskTimeout"
    assert Path(str(rec.log_path)).read_text() == "about to hang holding ***\n"
    assert TOKEN.encode() not in all_text(tmp_path)
