"""Log and output reads stay in their roots: a traversal corpus, and links planted in the logs."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from webhelp import Server

from rota.store.sql import open_store

SECRET = b"TOP-SECRET-MARKER-7f3a"


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "secret.txt").write_bytes(SECRET)
    (folder / "1.log").write_bytes(SECRET)
    return folder


def corpus(run: str, outside: Path) -> list[str]:
    secret = str(outside / "secret.txt")
    enc = secret.replace("/", "%2f")
    log = f"/api/runs/{run}/tasks"
    return [
        f"/api/runs/../../../../{secret}/tasks/first/log",
        "/api/runs/%2e%2e%2f%2e%2e%2f%2e%2e/tasks/first/log",
        "/api/runs/%252e%252e%252f%252e%252e%252fetc/tasks/first/log",
        f"/api/runs/..%2f..%2f..{enc}/tasks/first/log",
        f"{log}/..%2f..%2f..%2f..{enc}/log",
        f"{log}/%2e%2e%2f%2e%2e%2f%2e%2e%2fsecret.txt/log",
        f"{log}/%252e%252e%252fsecret.txt/log",
        f"{log}/{enc}/log",
        f"{log}/first%00/log",
        f"{log}/first%2500/log",
        f"{log}/..%5c..%5csecret.txt/log",
        f"{log}/first/log?try=..%2f..%2f1",
        f"{log}/first/log?index=..%2f1",
        f"{log}/first/log?offset=-100",
        f"{log}/../../../{secret}",
        f"{log}/first/output?try=%2e%2e",
        f"/runs/{run}/tasks/%2e%2e%2f%2e%2e%2fsecret.txt/log",
        f"/runs/{run}/tasks/{enc}/log",
        "/static/../../../../etc/passwd",
        "/static/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/static/..%2f..%2f..%2f..%2fetc%2fpasswd",
        "/static/..%252f..%252fetc%252fpasswd",
        f"/static/{secret}",
        f"/static//{secret}",
        f"/static/{enc}",
        "/static/rota.css%00.js",
    ]


def check_refused(ui: Server, targets: list[str]) -> None:
    for target in targets:
        reply = ui.request("GET", target)
        assert reply.status in (400, 404), (target, reply.status, reply.body[:200])
        assert SECRET not in reply.body, target
        assert b"root:" not in reply.body, target


def test_traversal_corpus_on_log_output_and_static_routes(
    ui: Server, small_run: str, outside: Path
) -> None:
    check_refused(ui, corpus(small_run, outside))
    fine = ui.request("GET", f"/api/runs/{small_run}/tasks/first/log")
    assert fine.status == 200 and b"first says hello" in fine.body  # the real log is served


def test_links_planted_in_the_logs_folder_are_never_followed(
    ui: Server, small_run: str, outside: Path, home: Path
) -> None:
    logs = home / "logs" / small_run
    log = logs / "first" / "1.log"
    assert log.is_file()
    log.unlink()
    log.symlink_to(outside / "secret.txt")  # the log file itself is a link
    shutil.rmtree(logs / "second", ignore_errors=True)
    os.symlink(outside, logs / "second")  # a task's folder is a link
    os.symlink(outside / "secret.txt", logs / "third")
    targets = [
        f"/api/runs/{small_run}/tasks/first/log",
        f"/api/runs/{small_run}/tasks/first/log?try=1&offset=0&length=100",
        f"/api/runs/{small_run}/tasks/first/log?follow=true",
        f"/api/runs/{small_run}/tasks/second/log",
        f"/api/runs/{small_run}/tasks/second/log?follow=1",
    ]
    check_refused(ui, targets)
    (outside / "first").mkdir()
    (outside / "first" / "1.log").write_bytes(SECRET)
    os.rename(logs, logs.with_name(small_run + "-real"))
    os.symlink(outside, logs)  # the run's folder in the logs folder is a link
    check_refused(ui, [f"/api/runs/{small_run}/tasks/first/log"])


def test_stored_paths_outside_their_roots_are_not_read(
    ui: Server, small_run: str, outside: Path, home: Path
) -> None:
    secret = str(outside / "secret.txt")
    store = open_store(f"sqlite:///{home / 'rota.db'}")
    with store, store.engine.begin() as conn:  # a tampered store: paths that leave their roots
        conn.exec_driver_sql(
            "UPDATE task_attempts SET log_path = ?, output_path = ? WHERE task_id = 'first'",
            (secret, secret),
        )
        conn.exec_driver_sql(
            "UPDATE task_attempts SET log_path = ?, output_path = ? WHERE task_id = 'second'",
            (f"{home}/logs/../../outside/secret.txt", f"{home}/artifacts/../../outside/1.log"),
        )
    targets = [
        f"/api/runs/{small_run}/tasks/first/log",
        f"/api/runs/{small_run}/tasks/first/output",
        f"/api/runs/{small_run}/tasks/second/log",
        f"/api/runs/{small_run}/tasks/second/output",
    ]
    check_refused(ui, targets)
    for page in (f"/runs/{small_run}/tasks/first", f"/runs/{small_run}/tasks/second"):
        reply = ui.request("GET", page)
        assert reply.status == 200 and SECRET not in reply.body
