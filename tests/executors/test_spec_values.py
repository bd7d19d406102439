"""What a process worker receives per attempt: the spec's fields as a tuple, the operator apart."""

from __future__ import annotations

import pickle
from dataclasses import fields
from datetime import UTC, datetime

import pytest

from rota.executors.base import (
    AttemptSpec,
    InputRef,
    StoredRef,
    spec_from_values,
    spec_values,
)
from rota.operators.python import PythonOp


def _double(x: int) -> int:
    return 2 * x


def _every_field_set() -> AttemptSpec:
    at = datetime(2026, 3, 1, tzinfo=UTC)
    ref = StoredRef("inline:r/up", "json", "ab" * 64, 2, b"[1]")
    return AttemptSpec(
        attempt_id=7, run_id="r", flow="f", task_id="t", map_index=3, try_number=2,
        op=PythonOp(_double), args=(1,), kwargs={"k": "v"},
        inputs=(InputRef("up", ref, index=0), InputRef("many", None, parts=(ref, None))),
        artifacts="/a", log_path="/l/1.log", params={"p": 1}, modules=(("m", "/m.py"),),
        timeout=2.5, checkpoint_path="/c/t", serializer="json", logical_date=at,
        data_interval_start=at, data_interval_end=at, first_poke_at=1.5, pokes=4,
        resources={"GPU": 1.0}, downstream=("d",), inline_limit=65536,
    )  # fmt: skip


def test_every_field_crosses_in_order_and_the_operator_stays_behind() -> None:
    spec = _every_field_set()
    defaults = AttemptSpec(
        attempt_id=0, run_id="", flow="", task_id="", map_index=-1, try_number=1, op=spec.op,
        args=(), kwargs={}, inputs=(), artifacts="", log_path="",
    )  # fmt: skip
    # the test sets every field to something other than its default: none can be dropped unseen
    assert all(getattr(spec, f.name) != getattr(defaults, f.name) for f in fields(spec)
               if f.name != "op")  # fmt: skip
    values = pickle.loads(pickle.dumps(spec_values(spec)))
    assert None in values and spec.op not in values
    assert spec_from_values(values, spec.op) == spec


def test_values_of_another_shape_are_refused() -> None:
    values = spec_values(_every_field_set())
    with pytest.raises(TypeError, match="fields"):
        spec_from_values(values[:-1], PythonOp(_double))


def test_what_crosses_a_worker_s_pipe_pickles_back_equal_field_by_field() -> None:
    from rota.executors.base import AttemptOutcome, AttemptStarted, ErrorInfo
    from rota.model.branching import Choice

    error = ErrorInfo("ValueError", "bad", "Traceback ...", 3, ("builtins.ValueError",))
    outcome = AttemptOutcome(
        attempt_id=1, ok=False, started_at=1.0, finished_at=2.0, worker="h:1",
        output_path="inline:r/t", output_size=3, output_length=1, output_hash="cd" * 64,
        output_serializer="json", output_inline=b"[1]", log_path="/l/1.log", error=error,
        skipped=True, reschedule_at=9.5, choice=Choice(("a",), True, False),
    )  # fmt: skip
    spec = _every_field_set()
    for value in (outcome, error, AttemptStarted(1, 2.0, "h:1"), spec, spec.inputs[0]):
        back = pickle.loads(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))
        assert back == value and type(back) is type(value)
        assert [getattr(back, f.name) for f in fields(back)] == [
            getattr(value, f.name) for f in fields(value)
        ]
