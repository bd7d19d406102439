"""What a shell task prints reaches its own attempt's log under every executor, and nothing else.

Thread executors route ``sys.stdout`` per thread; a shell task copies its command's stdout from a
helper thread, which must write where the attempt's thread writes, not to the engine's terminal.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from clihelp import RotaCli

WriteFlow = Callable[[str, str], Path]

FLOW = """
from rota import Flow, ShellTask

with Flow("speak") as speak:
    for i in range(3):
        ShellTask(f"say{i}", f"echo out-{i}-marker; echo err-{i}-marker >&2")
"""


@pytest.mark.parametrize("executor", ["threads", "inprocess", "local"])
def test_each_shell_task_s_output_is_in_its_own_log_only(
    rota: RotaCli, write_flow: WriteFlow, executor: str
) -> None:
    path = write_flow("speak.py", FLOW)
    result = rota("run", str(path), "--executor", executor, "--json")
    assert result.code == 0, result.err
    assert "-marker" not in result.out.replace(result.out.strip().splitlines()[-1], "")
    assert "-marker" not in result.err
    run_id = result.json()["run_id"]
    for i in range(3):
        log = rota("tasks", "logs", run_id, f"say{i}")
        assert log.code == 0, log.err
        assert f"out-{i}-marker" in log.out and f"err-{i}-marker" in log.out, log.out
        others = {f"out-{j}-marker" for j in range(3) if j != i}
        assert not any(o in log.out for o in others), log.out
