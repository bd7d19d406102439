"""Per-task resources: names and positive amounts, sizes with units; and the Dask settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from rota import Flow, PythonTask, task
from rota.config import Settings
from rota.errors import ConfigError, DefinitionError
from rota.executors.factory import check_shared_artifacts
from rota.model.resources import coerce_resources


def test_amounts_are_numbers_or_sizes_with_units() -> None:
    got = coerce_resources("t", {"GPU": 1, "memory": "4GB", "scratch": "1.5 GiB", "x": 0.5})
    assert got == {"GPU": 1.0, "memory": 4e9, "scratch": 1.5 * 2**30, "x": 0.5}
    assert coerce_resources("t", None) == {}


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ({"GPU": 0}, "must be positive"),
        ({"GPU": -1}, "must be positive"),
        ({"GPU": float("nan")}, "must be positive"),
        ({"GPU": True}, "must be a number"),
        ({"memory": "4 parsecs"}, "unknown unit"),
        ({"memory": "lots"}, "a size like '4GB'"),
        ({"bad name": 1}, "resource name"),
        (["GPU"], "must be a dict"),
    ],
)
def test_bad_resources_are_definition_errors_naming_the_task(value: object, match: str) -> None:
    with pytest.raises(DefinitionError, match=match) as err:
        coerce_resources("train", value)  # type: ignore[arg-type]
    assert "'train'" in str(err.value)


@task(resources={"GPU": 1, "memory": "4GB"})
def gpu_job() -> None:
    return None


def test_resources_reach_the_task_spec() -> None:
    with Flow("f") as f:
        gpu_job()
        PythonTask("plain", print)
    dag = f.build()
    assert dict(dag.tasks["gpu_job"].resources) == {"GPU": 1.0, "memory": 4e9}
    assert dict(dag.tasks["plain"].resources) == {}


def test_dask_settings_from_the_environment(tmp_path: Path) -> None:
    env = {"ROTA_HOME": str(tmp_path), "ROTA_EXECUTOR": "dask"}
    local = Settings.from_env(env)
    assert local.executor == "dask" and local.dask_address == "" and not local.artifacts_given
    check_shared_artifacts(local)  # a LocalCluster shares this machine's folders
    remote = Settings.from_env({**env, "ROTA_DASK_ADDRESS": "tcp://sched.example:8786"})
    assert remote.dask_address == "tcp://sched.example:8786"
    with pytest.raises(ConfigError, match="--artifacts"):
        check_shared_artifacts(remote)
    shared = remote.with_options(artifacts=str(tmp_path / "nfs"))
    assert shared.artifacts_given
    check_shared_artifacts(shared)
    on_s3 = Settings.from_env({**env, "ROTA_DASK_ADDRESS": "tcp://h:1", "ROTA_ARTIFACTS": "s3://b"})
    check_shared_artifacts(on_s3)
    for bad in ("sched.example", "tcp://h:port", "tcp://h:1; rm -rf /", "http://h:1"):
        with pytest.raises(ConfigError, match="tcp://HOST:PORT"):
            Settings.from_env({**env, "ROTA_DASK_ADDRESS": bad})
