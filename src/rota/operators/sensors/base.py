"""Sensors: tasks that wait for something (a file, a key, another flow's run, a dataset).

A sensor's operator pokes until the poke is satisfied (returns a truthy value), then succeeds with
that value as its output (None when it returned exactly True). While it is not, the sensor waits
``poke_interval`` seconds (doubled after each poke with ``exponential_backoff``, at most
``max_wait``) and pokes again: in the same worker in ``poke`` mode, or, in ``reschedule`` mode, by
raising :class:`~rota.errors.Reschedule` so that the engine frees the worker and dispatches the same
attempt again later. ``timeout`` counts from the first poke of the attempt (``ctx.first_poke_at``,
kept by the engine across dispatches); past it the sensor fails with
:class:`~rota.errors.SensorTimeout` (never retried), or skips itself with ``soft_fail``. Only an
exception raised by a poke is a failure; "not yet" never is.

The operator never holds the task node (which holds the whole flow): it holds a small picklable
*poker*. A :class:`Sensor` subclass from a flow file is carried as its class and the attributes it
set itself, and poked through a bare instance rebuilt from them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Final, NoReturn, Protocol

from rota.errors import PolicyError, Reschedule, SensorTimeout, Skip
from rota.operators.base import ExecContext, digest

MODES: Final = ("poke", "reschedule")
DEFAULT_TIMEOUT: Final = timedelta(days=7)


# --- how a sensor waits --------------------------------------------------------------------


def _seconds(task_id: str, name: str, value: object) -> float:
    """*value* (seconds or a timedelta) as positive seconds.

    Raises:
        PolicyError: not a number or timedelta, or not positive and finite.
    """
    if isinstance(value, timedelta):
        secs = value.total_seconds()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        secs = float(value)
    else:
        raise PolicyError(f"task {task_id!r}: {name} must be seconds or a timedelta, got {value!r}")
    if not math.isfinite(secs) or secs <= 0:
        raise PolicyError(f"task {task_id!r}: {name} must be positive, got {value!r}")
    return secs


@dataclass(frozen=True, slots=True)
class SensorPolicy:
    """How a sensor waits between pokes and for how long in all (seconds)."""

    poke_interval: float = 60.0
    timeout: float = DEFAULT_TIMEOUT.total_seconds()
    mode: str = "poke"
    exponential_backoff: bool = False
    max_wait: float | None = None
    soft_fail: bool = False

    @classmethod
    def of(
        cls,
        task_id: str,
        *,
        poke_interval: float | timedelta,
        timeout: float | timedelta,
        mode: str,
        exponential_backoff: bool,
        max_wait: float | timedelta | None,
        soft_fail: bool,
    ) -> SensorPolicy:
        """The policy of sensor *task_id*, validated (the options and their defaults are Sensor's).

        Raises:
            PolicyError: a non-positive duration, an unknown mode, or a flag that is not a bool.
        """
        if mode not in MODES:
            raise PolicyError(
                f"task {task_id!r}: mode must be 'poke' or 'reschedule', got {mode!r}"
            )
        for name, flag in (("exponential_backoff", exponential_backoff), ("soft_fail", soft_fail)):
            if not isinstance(flag, bool):
                raise PolicyError(f"task {task_id!r}: {name} must be True or False, got {flag!r}")
        return cls(
            _seconds(task_id, "poke_interval", poke_interval),
            _seconds(task_id, "timeout", timeout),
            mode,
            exponential_backoff,
            None if max_wait is None else _seconds(task_id, "max_wait", max_wait),
            soft_fail,
        )

    def wait(self, pokes: int) -> float:
        """Seconds to wait after an unsatisfied poke that had *pokes* pokes before it."""
        base = self.poke_interval
        if self.exponential_backoff:
            base *= 2.0 ** min(pokes, 64)
        return base if self.max_wait is None else min(base, self.max_wait)


# --- the operator ----------------------------------------------------------------------------


class Poker(Protocol):
    """What a sensor checks; picklable, so it can go to a worker process."""

    def poke(self, ctx: ExecContext, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
        """Truthy when satisfied (the value is the output unless it is True); exceptions fail."""

    def target(self, ctx: ExecContext) -> str:
        """What the sensor waits for, for the log (templates rendered)."""

    def describe(self) -> str:
        """A short description, templates unrendered."""

    def code_hash(self) -> str:
        """A digest of what is checked and how."""


@dataclass(frozen=True, slots=True, eq=False)
class SensorOp:
    """Pokes *poker* under *policy*; see the module docstring for the contract with the engine."""

    poker: Poker
    policy: SensorPolicy
    kind: str = "sensor"
    is_sensor: ClassVar[bool] = True

    def describe(self) -> str:
        return f"{self.poker.describe()} ({self.policy.mode})"

    @property
    def reads_store(self) -> bool:
        """Whether the engine pokes this sensor itself: its poker reads the metadata store."""
        return bool(getattr(self.poker, "reads_store", False))

    def code_hash(self) -> str:
        return digest("sensor", self.poker.code_hash())

    def sensor_timeout(self) -> float | None:
        """Seconds from the first poke after which the sensor times out."""
        return self.policy.timeout

    def execute(self, ctx: ExecContext, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
        """Poke until satisfied; return the output.

        Raises:
            Reschedule: in reschedule mode, not satisfied yet (poke again at ``at``).
            SensorTimeout: not satisfied within the timeout (Skip instead with ``soft_fail``).
            Exception: whatever a poke raised.
        """
        first = time.time() if ctx.first_poke_at is None else ctx.first_poke_at
        pokes = ctx.pokes
        while True:
            value = self.poker.poke(ctx, args, kwargs)
            pokes += 1
            if value:
                _say(pokes, f"satisfied: {self.poker.target(ctx)}")
                return None if value is True else value
            _say(pokes, f"waiting for {self.poker.target(ctx)}")
            at = self._next_poke_at(ctx, first, pokes - 1)
            if self.policy.mode == "reschedule":
                raise Reschedule(at)
            time.sleep(max(0.0, at - time.time()))

    def _next_poke_at(self, ctx: ExecContext, first: float, before: int) -> float:
        """Epoch time of the next poke, never past the deadline.

        Raises:
            SensorTimeout: the deadline has passed (Skip with ``soft_fail``).
        """
        now = time.time()
        deadline = first + self.policy.timeout
        if now >= deadline:
            self._time_out(ctx, first)
        return min(now + self.policy.wait(before), deadline)

    def _time_out(self, ctx: ExecContext, first: float) -> NoReturn:
        took = f"{self.policy.timeout:g}s"
        if self.policy.soft_fail:
            raise Skip(f"sensor timed out after {took}")
        since = datetime.fromtimestamp(first, UTC).isoformat(timespec="seconds")
        raise SensorTimeout(
            f"sensor {ctx.task_id!r} not satisfied within {took} of its first poke at {since}"
        )


def _say(poke: int, text: str) -> None:
    print(f"[rota] poke {poke}: {text}", flush=True)


__all__ = ["DEFAULT_TIMEOUT", "MODES", "Poker", "SensorOp", "SensorPolicy"]
