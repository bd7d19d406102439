"""An attempt's LogSink: lines written as they end, held lines written at the end, a pipe that a
real child process writes into, and an end that never waits for a process the task left behind.
"""

from __future__ import annotations

import stat
import subprocess
import time
from pathlib import Path

import pytest

from rota.executors.base import AttemptOutcome, AttemptSpec
from rota.executors.logsink import HOLD_LIMIT, LogSink, WorkerPump
from rota.executors.pool import LocalPoolExecutor
from rota.model.secrets import Masker
from rota.operators.python import PythonOp


def wait_for_text(path: Path, text: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists() or text not in path.read_text():  # made at the first byte
        assert time.monotonic() < deadline, f"{text!r} never reached {path}"
        time.sleep(0.02)


def test_a_line_is_written_when_it_ends_and_a_held_one_when_the_log_closes(
    tmp_path: Path,
) -> None:
    log = tmp_path / "logs" / "run" / "t" / "1.log"
    sink = LogSink(log, Masker())
    assert log.parent.parent.is_dir() and not log.parent.exists()  # the run's folder only
    sink.write(b"abc")
    assert not log.exists()  # held: the line has not ended, and the file is made at its first byte
    sink.write(b"def\nghi")
    assert log.read_bytes() == b"abcdef\n"
    sink.write(b" 50%\r")
    assert log.read_bytes() == b"abcdef\nghi 50%\r"
    sink.write(b"tail")
    assert sink.close()
    assert log.read_bytes() == b"abcdef\nghi 50%\rtail"
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    assert stat.S_IMODE(log.parent.stat().st_mode) == 0o700


def test_a_line_longer_than_the_hold_limit_is_written_without_its_end(tmp_path: Path) -> None:
    log = tmp_path / "1.log"
    sink = LogSink(log, Masker())
    sink.write(b"x" * HOLD_LIMIT)
    assert log.stat().st_size == HOLD_LIMIT
    sink.close()


def test_an_empty_log_is_removed_unless_a_sensor_adds_to_it(tmp_path: Path) -> None:
    log = tmp_path / "1.log"
    assert LogSink(log, Masker()).finish(appended=False) is None
    assert not log.exists()
    sink = LogSink(log, Masker())
    sink.write(b"poke 1\n")
    assert sink.finish(appended=False) == str(log)
    again = LogSink(log, Masker(), append=True)  # a later poke that prints nothing
    assert again.finish(appended=True) == str(log)
    assert log.read_bytes() == b"poke 1\n"


def test_a_child_writes_through_the_pipe_and_the_end_does_not_wait_for_it(
    tmp_path: Path,
) -> None:
    log = tmp_path / "1.log"
    go = tmp_path / "go"
    sink = LogSink(log, Masker(["s3cret-value"]))
    child = subprocess.Popen(
        ["sh", "-c", f"echo early s3cret-value; while [ ! -e '{go}' ]; do sleep 0.02; done; "
                     "echo late"],
        stdout=sink.pipe(),
    )  # fmt: skip
    wait_for_text(log, "early")
    assert sink.close()  # the child still holds the pipe: not waited for
    go.touch()
    child.wait(timeout=30)
    assert log.read_text() == "early ***\n"  # what it wrote after the end went nowhere


def test_one_pump_thread_serves_every_attempt_of_a_worker_each_into_its_own_log(
    tmp_path: Path,
) -> None:
    import os
    import threading

    pump = WorkerPump()
    big = b"x" * 100 + b"\n"
    for n in range(30):
        sink = LogSink(tmp_path / "logs" / "r" / f"t{n}" / "1.log", Masker(["s3cret"]))
        fd = pump.attach(sink)
        if n == 0:  # 1 MiB, far past a pipe's capacity: only a reader running meanwhile
            for _ in range((1 << 20) // len(big) + 1):  # lets these writes through
                os.write(fd, big)
        os.write(fd, f"attempt {n} s3cret\n".encode())
        assert pump.detach()
        sink.close()
    pumps = [t for t in threading.enumerate() if t.name == "rota-log-pump"]
    assert len(pumps) == 1
    first = (tmp_path / "logs" / "r" / "t0" / "1.log").read_bytes()
    assert first.count(big) == (1 << 20) // len(big) + 1
    assert first.endswith(b"attempt 0 ***\n")
    for n in range(1, 30):
        log = tmp_path / "logs" / "r" / f"t{n}" / "1.log"
        assert log.read_text() == f"attempt {n} ***\n"


def leave_a_child(go: str, pid_file: str) -> None:
    print("first", flush=True)
    child = subprocess.Popen(  # inherits fds 1 and 2: the attempt's pipe
        ["sh", "-c", f"while [ ! -e '{go}' ]; do sleep 0.02; done; echo late; echo late >&2"]
    )
    Path(pid_file).write_text(str(child.pid))


def say(word: str) -> None:
    print(word)


def test_a_process_a_task_left_running_never_writes_into_the_next_attempts_log(
    tmp_path: Path,
) -> None:
    go, pid_file = tmp_path / "go", tmp_path / "child.pid"
    logs = tmp_path / "logs"
    ex = LocalPoolExecutor(1, str(logs))
    try:
        ex.submit(_spec(tmp_path, 1, PythonOp(leave_a_child), str(go), str(pid_file)))
        first = _outcome(ex, 1)  # ended although its child still holds the pipe
        ex.submit(_spec(tmp_path, 2, PythonOp(say), "second"))
        go.touch()  # the child writes now, while (or after) the second attempt runs
        second = _outcome(ex, 2)
        child = int(pid_file.read_text())
        deadline = time.monotonic() + 30
        while Path(f"/proc/{child}").exists() and "Z" not in _proc_state(child):
            assert time.monotonic() < deadline, "the left child never ended"
            time.sleep(0.02)
    finally:
        ex.close()
    assert first.ok and second.ok, (first.error, second.error)
    assert Path(str(first.log_path)).read_text() == "first\n"
    assert Path(str(second.log_path)).read_text() == "second\n"


def _proc_state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def _spec(tmp: Path, attempt_id: int, op: PythonOp, *args: str) -> AttemptSpec:
    return AttemptSpec(
        attempt_id=attempt_id, run_id="run1", flow="f", task_id=f"t{attempt_id}", map_index=-1,
        try_number=1, op=op, args=args, kwargs={}, inputs=(), artifacts=str(tmp / "artifacts"),
        log_path=str(tmp / "logs" / "run1" / f"t{attempt_id}" / "1.log"),
    )  # fmt: skip


def _outcome(ex: LocalPoolExecutor, attempt_id: int) -> AttemptOutcome:
    deadline = time.monotonic() + 60
    while True:
        assert time.monotonic() < deadline, f"attempt {attempt_id} never ended"
        for event in ex.poll(0.1):
            if isinstance(event, AttemptOutcome) and event.attempt_id == attempt_id:
                return event


def test_a_silent_attempt_makes_no_file_and_no_task_folder(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "run" / "t" / "1.log"
    sink = LogSink(log, Masker())
    assert sink.finish(appended=False) is None
    assert not log.parent.exists() and (tmp_path / "logs" / "run").is_dir()


def test_an_unmakeable_run_folder_fails_when_the_attempt_begins(tmp_path: Path) -> None:
    (tmp_path / "logs").write_text("a file where the logs folder should be")
    with pytest.raises(OSError):
        LogSink(tmp_path / "logs" / "run2" / "t" / "1.log", Masker())


def test_an_unmakeable_task_folder_is_the_error_at_the_end(tmp_path: Path) -> None:
    run = tmp_path / "logs" / "run3"
    run.mkdir(parents=True)
    (run / "t").write_text("a file where the task's folder should be")
    sink = LogSink(run / "t" / "1.log", Masker())
    sink.write(b"printed\n")
    sink.write(b"more\n")
    with pytest.raises(OSError):
        sink.finish(appended=False)


def test_a_link_planted_at_the_name_is_replaced_at_the_first_byte(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "run4" / "t" / "1.log"
    log.parent.mkdir(parents=True)
    target = tmp_path / "victim"
    target.write_text("keep")
    log.symlink_to(target)
    sink = LogSink(log, Masker())
    sink.write(b"line\n")
    assert sink.finish(appended=False) == str(log)
    assert not log.is_symlink() and log.read_text() == "line\n" and target.read_text() == "keep"
