"""The task and run state machines, checked pair by pair against a table written from DESIGN."""

from __future__ import annotations

import itertools

import pytest

from rota.errors import InvalidTransition, RotaError
from rota.model.states import (
    FAILURES,
    RUN_INITIAL,
    RUN_TERMINAL,
    SUCCEEDED,
    TASK_INITIAL,
    TERMINAL,
    RunState,
    TaskState,
    check_run_transition,
    check_task_transition,
    task_successors,
)

# Written independently of rota.model.states, from DESIGN.md and the issue text.
EXPECTED_TASK: dict[str, set[str]] = {
    "scheduled": {"queued", "skipped", "upstream_failed"},
    "queued": {"running", "failed", "interrupted", "cached"},
    "running": {"success", "failed", "up_for_retry", "sensing", "skipped", "interrupted"},
    "sensing": {"queued", "failed", "skipped", "interrupted"},
    "up_for_retry": {"queued"},
    "interrupted": {"queued", "failed"},
    "success": set(),
    "cached": set(),
    "failed": set(),
    "skipped": set(),
    "upstream_failed": set(),
}

EXPECTED_RUN: dict[str, set[str]] = {
    "queued": {"running", "failed"},
    "running": {"success", "failed", "interrupted"},
    "failed": {"running", "queued"},  # resumed, or tasks cleared
    "interrupted": {"running", "failed", "queued"},
    "success": {"queued"},  # tasks cleared: queued for a resume
}

TASK_PAIRS = list(itertools.product(TaskState, TaskState))
RUN_PAIRS = list(itertools.product(RunState, RunState))


def test_the_expected_tables_name_every_state() -> None:
    assert set(EXPECTED_TASK) == {s.value for s in TaskState}
    assert set(EXPECTED_RUN) == {s.value for s in RunState}


@pytest.mark.parametrize(("old", "new"), TASK_PAIRS, ids=lambda s: s.value)
def test_task_transition_pair(old: TaskState, new: TaskState) -> None:
    if new.value in EXPECTED_TASK[old.value]:
        check_task_transition(old, new)
    else:
        with pytest.raises(InvalidTransition) as info:
            check_task_transition(old, new)
        err = info.value
        assert (err.kind, err.old, err.new) == ("task", old.value, new.value)
        assert f"{old.value} -> {new.value}" in str(err)


@pytest.mark.parametrize(("old", "new"), RUN_PAIRS, ids=lambda s: s.value)
def test_run_transition_pair(old: RunState, new: RunState) -> None:
    if new.value in EXPECTED_RUN[old.value]:
        check_run_transition(old, new)
    else:
        with pytest.raises(InvalidTransition) as info:
            check_run_transition(old, new)
        err = info.value
        assert (err.kind, err.old, err.new) == ("run", old.value, new.value)


def test_allowed_task_transition_count() -> None:
    allowed = 0
    for old, new in TASK_PAIRS:
        try:
            check_task_transition(old, new)
        except InvalidTransition:
            continue
        allowed += 1
    assert allowed == sum(len(v) for v in EXPECTED_TASK.values()) == 20


def test_task_successors_match_the_table() -> None:
    for state in TaskState:
        assert {s.value for s in task_successors(state)} == EXPECTED_TASK[state.value]


def test_terminal_task_states_have_no_way_out() -> None:
    assert {s.value for s in TERMINAL} == {
        "success", "cached", "failed", "skipped", "upstream_failed",
    }  # fmt: skip
    for state in TERMINAL:
        assert task_successors(state) == frozenset()
        for new in TaskState:
            with pytest.raises(InvalidTransition):
                check_task_transition(state, new)


def test_no_transition_back_to_scheduled() -> None:
    for old in TaskState:
        with pytest.raises(InvalidTransition):
            check_task_transition(old, TaskState.SCHEDULED)


def test_self_transitions_are_refused() -> None:
    for state in TaskState:
        with pytest.raises(InvalidTransition):
            check_task_transition(state, state)
    for run_state in RunState:
        with pytest.raises(InvalidTransition):
            check_run_transition(run_state, run_state)


def test_state_sets_and_initial_states() -> None:
    assert TASK_INITIAL is TaskState.SCHEDULED
    assert RUN_INITIAL is RunState.QUEUED
    assert {s.value for s in SUCCEEDED} == {"success", "cached"}
    assert {s.value for s in FAILURES} == {"failed", "upstream_failed"}
    assert FAILURES <= TERMINAL
    assert {s.value for s in RUN_TERMINAL} == {"success", "failed"}


def test_invalid_transition_message_carries_what() -> None:
    with pytest.raises(InvalidTransition) as info:
        check_task_transition(TaskState.SUCCESS, TaskState.RUNNING, what="run1/train")
    assert info.value.what == "run1/train"
    assert str(info.value) == "illegal task transition (run1/train): success -> running"
    assert isinstance(info.value, RotaError)


def test_states_are_strings() -> None:
    # Stored and shown as plain strings; the enum must round-trip from its value.
    for state in TaskState:
        assert TaskState(state.value) is state
        assert state == state.value
    for run_state in RunState:
        assert RunState(run_state.value) is run_state
