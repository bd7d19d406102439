"""Retry policies, timeouts and trigger rules: validation, arithmetic, and the decision table."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from rota.errors import DefinitionError, PolicyError
from rota.model.policies import (
    RetryPolicy,
    TriggerRule,
    UpstreamTally,
    coerce_timeout,
    decide,
)
from rota.model.states import TaskState

# --- RetryPolicy: validation -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"max_attempts": 0}, "max_attempts"),
        ({"max_attempts": -3}, "max_attempts"),
        ({"max_attempts": 2.0}, "max_attempts"),
        ({"max_attempts": "3"}, "max_attempts"),
        ({"max_attempts": True}, "max_attempts"),
        ({"max_attempts": None}, "max_attempts"),
        ({"delay": timedelta(seconds=-1)}, "delay"),
        ({"delay": 5}, "delay"),
        ({"backoff": 0.5}, "backoff"),
        ({"backoff": 0}, "backoff"),
        ({"backoff": -2.0}, "backoff"),
        ({"max_delay": timedelta(seconds=-1)}, "max_delay"),
        ({"jitter": -0.1}, "jitter"),
        ({"jitter": 1.0}, "jitter"),
        ({"jitter": 1.5}, "jitter"),
        ({"jitter": float("nan")}, "jitter"),
    ],
    ids=lambda v: repr(v) if isinstance(v, dict) else v,
)
def test_retry_policy_rejects(kwargs: dict[str, object], needle: str) -> None:
    with pytest.raises(PolicyError, match=needle):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"backoff": float("nan")},
        {"backoff": "2"},
        {"max_delay": 30},
    ],
    ids=["backoff-nan", "backoff-str", "max_delay-int"],
)
def test_retry_policy_rejects_wrong_types_with_policy_error(kwargs: dict[str, object]) -> None:
    with pytest.raises(PolicyError):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_retry_policy_boundaries_are_accepted() -> None:
    p = RetryPolicy(
        max_attempts=1,
        delay=timedelta(0),
        backoff=1.0,
        max_delay=timedelta(0),
        jitter=0.0,
    )
    assert p.max_attempts == 1
    assert RetryPolicy(jitter=0.999).jitter == 0.999
    assert RetryPolicy(backoff=1).backoff == 1


def test_policy_error_is_a_definition_error() -> None:
    with pytest.raises(DefinitionError):
        RetryPolicy(max_attempts=0)


def test_retry_policy_is_frozen_and_comparable() -> None:
    p = RetryPolicy(max_attempts=3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.max_attempts = 5  # type: ignore[misc]
    assert p == RetryPolicy(max_attempts=3)
    assert p != RetryPolicy(max_attempts=4)


def test_retry_policy_defaults() -> None:
    p = RetryPolicy()
    assert p.max_attempts == 1
    assert p.delay == timedelta(0)
    assert p.backoff == 1.0
    assert p.max_delay is None
    assert p.retry_on == (Exception,)
    assert p.give_up_on == ()


# --- RetryPolicy.coerce ------------------------------------------------------------------------


def test_coerce_int_counts_extra_attempts() -> None:
    assert RetryPolicy.coerce(3).max_attempts == 4
    assert RetryPolicy.coerce(0).max_attempts == 1


def test_coerce_none_is_a_single_attempt() -> None:
    assert RetryPolicy.coerce(None) == RetryPolicy()


def test_coerce_passes_delay() -> None:
    p = RetryPolicy.coerce(2, timedelta(seconds=10))
    assert (p.max_attempts, p.delay) == (3, timedelta(seconds=10))
    assert RetryPolicy.coerce(None, timedelta(seconds=4)).delay == timedelta(seconds=4)


def test_coerce_keeps_a_policy() -> None:
    policy = RetryPolicy(max_attempts=7, backoff=2.0)
    assert RetryPolicy.coerce(policy) is policy


@pytest.mark.parametrize("value", [-1, 1.5, "3", True, False, [3]])
def test_coerce_rejects(value: object) -> None:
    with pytest.raises(PolicyError, match="retries"):
        RetryPolicy.coerce(value)  # type: ignore[arg-type]


# --- RetryPolicy.base_delay --------------------------------------------------------------------


def test_base_delay_constant_without_backoff() -> None:
    p = RetryPolicy(max_attempts=5, delay=timedelta(seconds=7))
    assert [p.base_delay(n) for n in (1, 2, 3, 4)] == [timedelta(seconds=7)] * 4


def test_base_delay_grows_geometrically() -> None:
    p = RetryPolicy(max_attempts=6, delay=timedelta(seconds=2), backoff=3.0)
    assert [p.base_delay(n).total_seconds() for n in (1, 2, 3, 4)] == [2, 6, 18, 54]


def test_base_delay_is_capped() -> None:
    p = RetryPolicy(
        max_attempts=10,
        delay=timedelta(seconds=1),
        backoff=2.0,
        max_delay=timedelta(seconds=5),
    )
    assert [p.base_delay(n).total_seconds() for n in range(1, 7)] == [1, 2, 4, 5, 5, 5]


def test_base_delay_zero_delay_stays_zero() -> None:
    p = RetryPolicy(max_attempts=4, backoff=10.0)
    assert p.base_delay(3) == timedelta(0)


# --- coerce_timeout ----------------------------------------------------------------------------


def test_coerce_timeout_values() -> None:
    assert coerce_timeout(None) is None
    assert coerce_timeout(60) == timedelta(minutes=1)
    assert coerce_timeout(1.5) == timedelta(seconds=1.5)
    assert coerce_timeout(timedelta(hours=2)) == timedelta(hours=2)


@pytest.mark.parametrize(
    "value", [0, -1, 0.0, -0.5, timedelta(0), timedelta(seconds=-3), True, False]
)
def test_coerce_timeout_rejects(value: object) -> None:
    with pytest.raises(PolicyError, match="timeout"):
        coerce_timeout(value)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [float("nan"), "soon"], ids=["nan", "text"])
def test_coerce_timeout_rejects_non_numbers_with_policy_error(value: object) -> None:
    with pytest.raises(PolicyError):
        coerce_timeout(value)  # type: ignore[arg-type]


# --- TriggerRule.coerce ------------------------------------------------------------------------


RULE_NAMES = (
    "all_success",
    "all_failed",
    "all_done",
    "all_skipped",
    "all_done_min_one_success",
    "one_failed",
    "one_success",
    "one_done",
    "none_failed",
    "none_failed_min_one_success",
    "none_skipped",
    "always",
)
"""Airflow's trigger rules (``airflow.utils.trigger_rule.TriggerRule``), setup/teardown aside."""


def test_trigger_rule_coerce() -> None:
    assert TriggerRule.coerce("all_done") is TriggerRule.ALL_DONE
    assert TriggerRule.coerce(TriggerRule.ONE_FAILED) is TriggerRule.ONE_FAILED
    assert TriggerRule.coerce("none_failed_min_one_success").value == "none_failed_min_one_success"
    assert {r.value for r in TriggerRule} == set(RULE_NAMES)


def test_trigger_rule_coerce_unknown_lists_the_known_names() -> None:
    with pytest.raises(PolicyError) as info:
        TriggerRule.coerce("all_sucess")
    message = str(info.value)
    assert "'all_sucess'" in message
    for name in RULE_NAMES:
        assert name in message


# --- decide: a few rows by hand (the full table is in test_trigger_rules.py) --------------------


def tally(n: int, **ended: int) -> UpstreamTally:
    return UpstreamTally(n, **ended)


@pytest.mark.parametrize("rule", RULE_NAMES)
def test_decide_without_upstreams_runs(rule: str) -> None:
    assert decide(TriggerRule(rule), UpstreamTally(0)) is TaskState.QUEUED


@pytest.mark.parametrize(
    ("rule", "counts", "state"),
    [
        ("all_success", tally(3, failed=1), TaskState.UPSTREAM_FAILED),
        ("all_success", tally(3, skipped=1), TaskState.SKIPPED),
        ("all_success", tally(2, success=1), None),
        ("one_failed", tally(3, failed=1), TaskState.QUEUED),
        ("one_failed", tally(3, success=2), None),
        ("one_success", tally(3, success=1), TaskState.QUEUED),
        ("one_success", tally(2, failed=1, skipped=1), TaskState.UPSTREAM_FAILED),
        ("one_success", tally(2, skipped=2), TaskState.SKIPPED),
        ("one_done", tally(2, upstream_failed=1), None),
        ("one_done", tally(2, upstream_failed=1, skipped=1), TaskState.SKIPPED),
        ("none_failed_min_one_success", tally(2, skipped=2), TaskState.SKIPPED),
        ("none_failed_min_one_success", tally(2, skipped=1, success=1), TaskState.QUEUED),
        ("all_skipped", tally(2, success=1), TaskState.SKIPPED),
        ("all_done_min_one_success", tally(3, skipped=1), TaskState.SKIPPED),
        ("all_done_min_one_success", tally(2, failed=2), TaskState.UPSTREAM_FAILED),
        ("always", tally(5), TaskState.QUEUED),
    ],
)
def test_decide_literal_rows(rule: str, counts: UpstreamTally, state: TaskState | None) -> None:
    assert decide(TriggerRule(rule), counts) is state


def test_upstream_tally_counts_and_words() -> None:
    t = UpstreamTally(5, success=1, failed=1, skipped=1, upstream_failed=1)
    assert (t.done, t.failures, t.all_done) == (4, 2, False)
    assert (
        t.describe() == "4 of 5 upstreams ended: 1 success, 1 failed, 1 upstream_failed, 1 skipped"
    )
    assert UpstreamTally(2).describe() == "0 of 2 upstreams ended"
