"""``rota.engine.leftovers``: a resume asks operators that can leave work running to delete it."""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import pytest

pytest.importorskip("kubernetes")

from rota import Flow, ShellTask
from rota.engine.leftovers import remove_leftovers
from rota.operators.kubernetes import KubernetesPodTask

_KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters:
- name: gone
  cluster:
    server: http://127.0.0.1:{port}
users:
- name: u
  user:
    token: t
contexts:
- name: gone
  context:
    cluster: gone
    user: u
current-context: gone
"""


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def test_an_unreachable_cluster_is_logged_and_the_resume_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(_KUBECONFIG.format(port=_closed_port()))
    with Flow("f") as f:
        ShellTask("plain", "true")
        KubernetesPodTask("pod", "busybox", ["true"], config_file=str(kubeconfig))
    dag = f.build()
    with caplog.at_level(logging.WARNING, logger="rota.engine.leftovers"):
        assert remove_leftovers(dag, "run-1") == []
    (record,) = [r for r in caplog.records if r.name == "rota.engine.leftovers"]
    assert "task pod: leftovers of run run-1 not removed" in record.getMessage()


def test_a_flow_without_such_operators_asks_nothing() -> None:
    with Flow("f") as f:
        ShellTask("plain", "true")
    assert remove_leftovers(f.build(), "run-1") == []
