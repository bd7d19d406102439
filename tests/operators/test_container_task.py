"""ContainerTask's definition checks, its argv (values stay inside their argument) and the
choice of runtime; none of these needs a container runtime."""

from __future__ import annotations

from pathlib import Path

import pytest

from rota import ContainerTask, Flow
from rota.errors import DefinitionError
from rota.operators.base import ExecContext
from rota.operators.container import ContainerOp, Mount
from rota.operators.containerrt import NoContainerRuntime, find_runtime
from rota.operators.containertask import split_command


def _op(**options: object) -> ContainerOp:
    with Flow("f", params={"x": "$(touch pwned) two words"}):
        node = ContainerTask("t", "localhost/img:1", **options)  # type: ignore[arg-type]
    assert isinstance(node.op, ContainerOp)
    return node.op


def _ctx() -> ExecContext:
    return ExecContext("run1", "f", "t", 1, {"x": "$(touch pwned) two words"})


def test_a_value_stays_one_argument_and_is_never_split_or_run() -> None:
    op = _op(command='echo "a b" {{ params.x }} x{{ params.x }}y')
    argv, env = op.rendered(_ctx())
    assert argv == ["echo", "a b", "$(touch pwned) two words", "x$(touch pwned) two wordsy"]
    assert env["ROTA_PARAM_X"] == "$(touch pwned) two words"


def test_with_shell_a_value_is_a_variable_the_command_references() -> None:
    op = _op(command="echo {{ params.x }}", shell=True)
    argv, env = op.rendered(_ctx())
    assert argv[:2] == ["/bin/sh", "-c"]
    assert "pwned" not in argv[2]
    (ref,) = [k for k in env if k.startswith("ROTA_TPL_")]
    assert f"${{{ref}}}" in argv[2] and env[ref] == "$(touch pwned) two words"


def test_split_command_keeps_tags_whole_and_reports_open_quotes() -> None:
    assert split_command("run {{ a ~ 'b c' }} --n 2") == ("run", "{{ a ~ 'b c' }}", "--n", "2")
    with pytest.raises(DefinitionError, match="No closing quotation"):
        split_command('echo "open')


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"command": ["echo"], "shell": True}, "one non-empty string"),
        ({"command": ["echo", 3]}, "must be a string"),
        ({"mounts": {"/data": "relative"}}, "cannot mount"),
        ({"mounts": {"/data": "/rota/run"}}, "cannot mount"),
        ({"mounts": {"/a:b": "/data"}}, "cannot mount"),
        ({"resources": {"gpus": 1}}, "unknown container resource 'gpus'"),
        ({"resources": {"memory": "1g; rm"}}, "is not a size"),
        ({"env": {"ROTA_OUTPUT": "x"}}, "env name 'ROTA_OUTPUT' is not allowed"),
        ({"env": {"A-B": "x"}}, "env name 'A-B' is not allowed"),
        ({"network": "--privileged"}, "is not a network name"),
        ({"output": "pickle"}, "output must be 'text' or 'json'"),
        ({"command": ["echo", "{{ params.x "]}, "task 't'"),
    ],
)
def test_bad_options_are_one_line_definition_errors(
    options: dict[str, object], message: str
) -> None:
    with pytest.raises(DefinitionError, match=message) as err:
        _op(**options)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("image", ["", "-v", "a b"])
def test_an_image_that_is_not_a_name_is_refused(image: str) -> None:
    with Flow("f"), pytest.raises(DefinitionError, match="image must be an image name"):
        ContainerTask("t", image, ["true"])


def test_the_options_become_the_runtime_s_flags() -> None:
    op = _op(
        command=["true"], mounts={"/data": "/in:ro"}, workdir="/in", network="none",
        resources={"cpus": 1.5, "memory": "512m", "pids": 64}, env={"HOME": "/h", "K": "v"},
    )  # fmt: skip
    out = op.mounts[0]
    flags = op._flags(_ctx(), "rota-x", {"HOME": "/h", "K": "v"}, out)
    assert flags[:6] == ["--rm", "--init", "--name", "rota-x", "--stop-timeout", "2"]
    assert "rota.attempt=run1/t/1" in flags and "rota.run=run1" in flags
    assert flags[flags.index("--volume") : flags.index("--volume") + 2] == [
        "--volume",
        "/data:/in:ro",
    ]
    # a name the runtime's own client reads goes in its argv; others only by name
    assert "HOME=/h" in flags and "K" in flags and "K=v" not in flags
    tail = flags[flags.index("--workdir") :]
    assert tail == [
        "--workdir", "/in", "--network", "none",
        "--cpus", "1.5", "--memory", "512m", "--pids-limit", "64",
    ]  # fmt: skip


def test_the_runtime_is_the_one_asked_for_else_the_environment_s_else_found(
    tmp_path: Path,
) -> None:
    for name in ("podman", "docker", "mine"):
        exe = tmp_path / name
        exe.write_text("#!/bin/sh\n")
        exe.chmod(0o700)
    env = {"PATH": str(tmp_path)}
    assert find_runtime(None, env) == str(tmp_path / "podman")
    assert find_runtime(None, {**env, "ROTA_CONTAINER_RUNTIME": "docker"}) == str(
        tmp_path / "docker"
    )
    assert find_runtime("mine", {**env, "ROTA_CONTAINER_RUNTIME": "docker"}) == str(
        tmp_path / "mine"
    )
    with pytest.raises(NoContainerRuntime, match="install podman or docker"):
        find_runtime(None, {"PATH": str(tmp_path / "empty")})
    with pytest.raises(NoContainerRuntime, match="'nerdctl' not found"):
        find_runtime("nerdctl", env)


def test_an_image_task_s_options_are_checked_where_the_task_is_defined() -> None:
    from rota import Secret, task
    from rota.operators.imagetask import ImageOp

    def double(x: int) -> int:
        return 2 * x

    with Flow("f"):
        node = task(image="localhost/py:1", container={"network": "none"})(double)(1)
    assert isinstance(node.op, ImageOp)
    assert node.op.container.command == ("python3", "-m", "rota.operators.inimage", "/rota/job")
    assert node.op.container.network == "none"
    bad: list[tuple[dict[str, object], str]] = [
        ({"image": "localhost/py:1", "container": {"gpu": 1}}, "unknown container option 'gpu'"),
        ({"container": {"network": "none"}}, "container options need image="),
        ({"image": "localhost/py:1", "container": {"env": {"K": Secret("K")}}}, "rota.Secret"),
        ({"image": "-it"}, "image must be an image name"),
    ]
    for options, message in bad:
        with Flow("g"), pytest.raises(DefinitionError, match=message):
            task(**options)(double)(1)


def test_an_env_template_renders_to_data_in_the_environment() -> None:
    op = _op(command=["true"], env={"WHO": "{{ params.x }}"})
    _argv, env = op.rendered(_ctx())
    assert env["WHO"] == "$(touch pwned) two words"
    flags = op._flags(_ctx(), "rota-x", env, op.mounts[0] if op.mounts else _mount())
    assert "WHO" in flags and not any("pwned" in f for f in flags)


def _mount() -> Mount:
    return Mount("/host/out", "/rota/out")
