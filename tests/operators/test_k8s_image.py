"""Python tasks run as pods (``@task(image=..., executor="kubernetes")``) against the fake API
server, through ``rota run``: the fake's kubelet really runs ``python -m rota.operators.inimage``
(this interpreter stands for the image's Python), so the function runs there and its value
comes back to the worker through a folder both see, or through an S3 artifact store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("kubernetes")

from k8sfake import FakeKubernetes, serve

from fixtures_s3 import s3_bucket, s3_server  # noqa: F401
from rota import Flow, task
from rota.errors import DefinitionError
from rota.operators.imagepod import ImagePodOp
from rota.operators.k8smanifest import PodVolume
from rota.store.sql import open_store
from storedvalues import stored_json

FLOW = """
import os
import sys
from rota import Flow, task
from rota.operators.k8smanifest import PodVolume
from rota.store.sql import open_store

shared = os.environ.get("SHARED_DIR")
options = {
    "python": sys.executable,
    "config_file": os.environ["FAKE_KUBECONFIG"],
    "poll_interval": 0.05,
    "env": {
        "FROM_THE_AUTHOR": "{{ params.word }}",
        **{name: os.environ[name] for name in os.environ.get("PASS_ENV", "").split()},
    },
}
if shared:
    options["shared_dir"] = shared
    options["volumes"] = [PodVolume("jobs", shared, host_path=shared)]


@task(image="localhost/ml-env:1", executor="kubernetes", container=options)
def where(n: int) -> dict:
    print("running in the pod as", os.getpid())
    return {"square": n * n, "cwd": os.getcwd(), "word": os.environ["FROM_THE_AUTHOR"],
            "run": os.environ["ROTA_RUN_ID"]}


@task
def seven() -> int:
    return 7


@task
def report(found: dict) -> str:
    return f"{found['square']} in {found['cwd']}"


with Flow("podpy", params={"word": "$(touch pwned)"}) as podpy:
    report(where(seven()))
"""


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[FakeKubernetes, Path]]:
    work = tmp_path / "kubelet"
    work.mkdir()
    with serve(work) as pair:
        yield pair


def _rota(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rota", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def _env(tmp_path: Path, kubeconfig: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, "ROTA_HOME": str(tmp_path / "home"), "FAKE_KUBECONFIG": str(kubeconfig)}
    env.pop("ROTA_DATABASE_URL", None)
    env.pop("ROTA_ARTIFACTS", None)
    return {**env, **extra}


def _last_json(out: str) -> Any:
    return json.loads(out.strip().splitlines()[-1])


def _stored(home: Path, run_id: str, task_id: str) -> Any:
    return stored_json(home, run_id, task_id)


def test_a_function_runs_in_a_pod_through_a_shared_folder(
    cluster: tuple[FakeKubernetes, Path], tmp_path: Path
) -> None:
    fake, kubeconfig = cluster
    shared = tmp_path / "shared"
    shared.mkdir()
    path = tmp_path / "podpy.py"
    path.write_text(FLOW)
    env = _env(tmp_path, kubeconfig, SHARED_DIR=str(shared))
    done = _rota(env, "run", str(path), "--json")
    assert done.returncode == 0, done.stderr
    run_id = _last_json(done.stdout)["run_id"]
    found = _stored(tmp_path / "home", run_id, "where")
    # it ran in the kubelet's process (its folder), with its input, the template as data
    assert found == {
        "square": 49, "cwd": str(fake.workdir), "word": "$(touch pwned)", "run": run_id,
    }  # fmt: skip
    assert _stored(tmp_path / "home", run_id, "report") == f"49 in {fake.workdir}"
    assert not (fake.workdir / "pwned").exists()
    (pod,) = fake.deleted
    assert fake.pods == {}
    command = pod.body["spec"]["containers"][0]["command"]
    assert command[:3] == [sys.executable, "-m", "rota.operators.inimage"]
    assert Path(command[3]).parent == shared
    assert list(shared.iterdir()) == []  # the job's folder is removed afterwards
    log = _rota(env, "tasks", "logs", run_id, "where")
    assert "running in the pod as" in log.stdout + log.stderr


def test_a_local_artifact_folder_without_a_shared_dir_fails_clearly_and_makes_no_pod(
    cluster: tuple[FakeKubernetes, Path], tmp_path: Path
) -> None:
    fake, kubeconfig = cluster
    path = tmp_path / "podpy.py"
    path.write_text(FLOW)
    done = _rota(_env(tmp_path, kubeconfig), "run", str(path), "--json")
    assert done.returncode == 1, done.stderr
    summary = _last_json(done.stdout)
    assert summary["tasks"]["where"]["state"] == "failed"
    with open_store(f"sqlite:///{tmp_path / 'home'}/rota.db") as store:
        (attempt,) = [a for a in store.attempts(summary["run_id"]) if a.task_id == "where"]
    assert attempt.error_type == "NoSharedPlace"
    assert attempt.error_message is not None
    assert "a pod cannot read this machine's artifact folder" in attempt.error_message
    assert [m for m, _ in fake.requests if m == "POST"] == []


def test_an_s3_artifact_store_carries_the_job_and_its_result(
    cluster: tuple[FakeKubernetes, Path],
    tmp_path: Path,
    s3_bucket: str,  # noqa: F811
) -> None:
    """No shared folder: the job and its result go through the bucket the outputs go to (the
    pod gets the endpoint and credentials from its own environment: here the kubelet's)."""
    fake, kubeconfig = cluster
    path = tmp_path / "podpy.py"
    path.write_text(FLOW)
    passed = "AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_DEFAULT_REGION ROTA_S3_ENDPOINT_URL"
    # outputs in the bucket too (none kept in their rows), so the run's prefix holds them
    env = _env(
        tmp_path,
        kubeconfig,
        ROTA_ARTIFACTS=f"{s3_bucket}/art",
        PASS_ENV=passed,
        ROTA_INLINE_OUTPUT_MAX="0",
    )
    done = _rota(env, "run", str(path), "--json")
    assert done.returncode == 0, done.stderr
    run_id = _last_json(done.stdout)["run_id"]
    shown = _rota(env, "outputs", "show", run_id, "report")
    assert f"49 in {fake.workdir}" in shown.stdout, shown.stderr
    import s3fs

    fs = s3fs.S3FileSystem(endpoint_url=os.environ["ROTA_S3_ENDPOINT_URL"])
    assert fs.exists(f"{s3_bucket}/art/{run_id}")
    assert not fs.exists(f"{s3_bucket}/art/{run_id}/.rota-jobs")  # removed afterwards
    assert fake.pods == {} and len(fake.deleted) == 1


def _define(**options: Any) -> Any:
    with Flow("f"):

        @task(image="img", executor="kubernetes", container=options)
        def f() -> int:
            return 1

        return f()


def test_the_pod_options_are_checked_at_definition(tmp_path: Path) -> None:
    shared = str(tmp_path / "jobs")
    ok = _define(shared_dir=shared, volumes=[PodVolume("jobs", str(tmp_path), claim="c")])
    assert isinstance(ok.op, ImagePodOp) and ok.op.shared_dir == shared
    with pytest.raises(DefinitionError, match="is not inside a writable volume"):
        _define(shared_dir=shared)
    read_only = PodVolume("jobs", str(tmp_path), claim="c", read_only=True)
    with pytest.raises(DefinitionError, match="is not inside a writable volume"):
        _define(shared_dir=shared, volumes=[read_only])
    with pytest.raises(DefinitionError, match="shared_dir must be an absolute path"):
        _define(shared_dir="jobs")
    with pytest.raises(DefinitionError, match="unknown pod option 'mounts'"):
        _define(mounts={"/a": "/b"})
    with pytest.raises(DefinitionError, match="namespace"):
        _define(namespace="Not_A_Label")


def test_an_unknown_executor_or_one_without_an_image_is_refused() -> None:
    with Flow("f"), pytest.raises(DefinitionError, match="executor must be one of"):

        @task(image="img", executor="lambda")
        def f() -> int:
            return 1

        f()
    with Flow("g"), pytest.raises(DefinitionError, match="executor= need image="):

        @task(executor="kubernetes")
        def g() -> int:
            return 1

        g()
