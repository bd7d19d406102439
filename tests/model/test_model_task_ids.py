"""Task ids become file names: too long ones, reserved ones and case twins are refused."""

from __future__ import annotations

import pytest

from rota.errors import DefinitionError
from rota.model.dag import (
    CALLBACKS_LOG,
    RESERVED_TASK_IDS,
    TASK_ID_MAX,
    Dag,
    TaskSpec,
    check_name,
    check_task_id,
)
from rota.operators.shell import ShellOp


def spec(tid: str) -> TaskSpec:
    return TaskSpec(tid, ShellOp("true"))


def test_an_id_one_longer_than_the_cap_is_refused_naming_the_limit() -> None:
    assert check_task_id("t" * TASK_ID_MAX) == "t" * TASK_ID_MAX
    with pytest.raises(DefinitionError) as info:
        check_task_id("t" * (TASK_ID_MAX + 1))
    message = str(info.value)
    assert f"is {TASK_ID_MAX + 1} characters long; at most {TASK_ID_MAX}" in message
    assert "255 bytes" in message
    assert len(message) < 300, "a long id is shown cut short"


def test_a_huge_id_gives_a_short_message() -> None:
    with pytest.raises(DefinitionError) as info:
        check_task_id("x" * 100_000)
    assert len(str(info.value)) < 300


def test_flow_names_have_the_same_cap() -> None:
    with pytest.raises(DefinitionError, match="flow name 'fff"):
        check_name("f" * (TASK_ID_MAX + 1), what="flow name")


def test_callbacks_log_is_reserved_in_any_case() -> None:
    assert CALLBACKS_LOG in RESERVED_TASK_IDS
    for tid in ("callbacks.log", "Callbacks.log", "CALLBACKS.LOG"):
        with pytest.raises(DefinitionError, match="is reserved"):
            check_task_id(tid)
        with pytest.raises(DefinitionError, match="is reserved"):
            Dag.build("f", [spec(tid)], {})
    assert check_task_id("callbacks") == "callbacks"
    assert check_task_id("callbacks.log2") == "callbacks.log2"


def test_ids_that_differ_only_in_case_are_refused() -> None:
    with pytest.raises(DefinitionError) as info:
        Dag.build("f", [spec("Train"), spec("other"), spec("train")], {})
    assert "'Train' and 'train'" in str(info.value)
    assert "differ only in case" in str(info.value)
