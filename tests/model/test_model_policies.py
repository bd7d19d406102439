"""Retry policies, timeouts and trigger rules: validation, arithmetic, and the decision table."""

from __future__ import annotations

import dataclasses
import itertools
from collections import Counter
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


def test_trigger_rule_coerce() -> None:
    assert TriggerRule.coerce("all_done") is TriggerRule.ALL_DONE
    assert TriggerRule.coerce(TriggerRule.ONE_FAILED) is TriggerRule.ONE_FAILED
    assert {r.value for r in TriggerRule} == set(RULE_NAMES) == set(SEMANTICS)


def test_trigger_rule_coerce_unknown_lists_the_known_names() -> None:
    with pytest.raises(PolicyError) as info:
        TriggerRule.coerce("all_sucess")
    message = str(info.value)
    assert "'all_sucess'" in message
    for name in RULE_NAMES:
        assert name in message


# --- decide: the full table --------------------------------------------------------------------

RULE_NAMES = (
    "all_success",
    "all_failed",
    "all_done",
    "one_failed",
    "one_success",
    "none_failed",
    "none_skipped",
    "always",
)
OUTCOMES = ("success", "failed", "skipped", "upstream_failed")
RUN, SKIP, UPFAIL = "queued", "skipped", "upstream_failed"


def _all_success(outcomes: tuple[str, ...], failing: bool) -> str:
    if all(o == "success" for o in outcomes):
        return RUN
    return UPFAIL if failing else SKIP


def _one_success(outcomes: tuple[str, ...], failing: bool) -> str:
    if "success" in outcomes:
        return RUN
    return UPFAIL if failing else SKIP


# Airflow's meaning of each rule, written from the issue text, not from rota's code.
# Each takes the upstream outcomes and whether any of them is failed/upstream_failed.
SEMANTICS = {
    "all_success": _all_success,
    "all_failed": lambda outs, _: (
        RUN if all(o in ("failed", "upstream_failed") for o in outs) else SKIP
    ),
    "all_done": lambda outs, failing: RUN,
    "one_failed": lambda outs, failing: RUN if failing else SKIP,
    "one_success": _one_success,
    "none_failed": lambda outs, failing: UPFAIL if failing else RUN,
    "none_skipped": lambda outs, failing: SKIP if "skipped" in outs else RUN,
    "always": lambda outs, failing: RUN,
}


def expected(rule: str, outcomes: tuple[str, ...]) -> str:
    """What a task with *rule* becomes when its upstreams ended in *outcomes*."""
    if not outcomes:
        return RUN
    failing = any(o in ("failed", "upstream_failed") for o in outcomes)
    return SEMANTICS[rule](outcomes, failing)


def tally(outcomes: tuple[str, ...]) -> UpstreamTally:
    c = Counter(outcomes)
    return UpstreamTally(
        success=c["success"],
        failed=c["failed"],
        skipped=c["skipped"],
        upstream_failed=c["upstream_failed"],
    )


TWO_UPSTREAMS = [
    (rule, combo) for rule in RULE_NAMES for combo in itertools.product(OUTCOMES, repeat=2)
]


@pytest.mark.parametrize(
    ("rule", "outcomes"), TWO_UPSTREAMS, ids=[f"{r}-{a}+{b}" for r, (a, b) in TWO_UPSTREAMS]
)
def test_decide_two_upstreams(rule: str, outcomes: tuple[str, str]) -> None:
    got = decide(TriggerRule(rule), tally(outcomes))
    assert isinstance(got, TaskState)
    assert got.value == expected(rule, outcomes)


@pytest.mark.parametrize("n", [1, 3])
def test_decide_other_upstream_counts(n: int) -> None:
    for rule in RULE_NAMES:
        for combo in itertools.product(OUTCOMES, repeat=n):
            got = decide(TriggerRule(rule), tally(combo)).value
            assert got == expected(rule, combo), (rule, combo)


@pytest.mark.parametrize("rule", RULE_NAMES)
def test_decide_without_upstreams_runs(rule: str) -> None:
    assert decide(TriggerRule(rule), UpstreamTally()) is TaskState.QUEUED


# A few rows spelled out literally, so the table above does not rest on the oracle alone.
@pytest.mark.parametrize(
    ("rule", "outcomes", "state"),
    [
        ("all_success", ("success", "skipped"), TaskState.SKIPPED),
        ("all_success", ("skipped", "upstream_failed"), TaskState.UPSTREAM_FAILED),
        ("all_failed", ("failed", "upstream_failed"), TaskState.QUEUED),
        ("all_failed", ("failed", "success"), TaskState.SKIPPED),
        ("one_failed", ("success", "skipped"), TaskState.SKIPPED),
        ("one_success", ("skipped", "skipped"), TaskState.SKIPPED),
        ("one_success", ("failed", "skipped"), TaskState.UPSTREAM_FAILED),
        ("one_success", ("failed", "success"), TaskState.QUEUED),
        ("none_failed", ("skipped", "skipped"), TaskState.QUEUED),
        ("none_failed", ("success", "upstream_failed"), TaskState.UPSTREAM_FAILED),
        ("none_skipped", ("failed", "failed"), TaskState.QUEUED),
        ("none_skipped", ("failed", "skipped"), TaskState.SKIPPED),
        ("all_done", ("failed", "upstream_failed"), TaskState.QUEUED),
    ],
)
def test_decide_literal_rows(rule: str, outcomes: tuple[str, ...], state: TaskState) -> None:
    assert decide(TriggerRule(rule), tally(outcomes)) is state


def test_upstream_tally_total() -> None:
    assert UpstreamTally().total == 0
    assert UpstreamTally(success=1, failed=2, skipped=3, upstream_failed=4).total == 10
