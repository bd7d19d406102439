"""Frozen, validated policy values: retries, timeouts, trigger rules.

The arithmetic is pure; the engine applies it. Errors cross processes as text, so a policy
matches exceptions by the qualified names of their classes (the error's MRO), not by identity.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from typing import Any

from rota.errors import PolicyError
from rota.model.cacheon import coerce_on
from rota.model.states import TaskState


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How many times, and how late, a failed attempt is tried again.

    Attributes:
        max_attempts: attempts in all, the first one included (1 = no retry).
        delay: wait before the second attempt.
        backoff: factor applied to the delay for each further attempt (>= 1.0).
        max_delay: cap on any single wait; None for no cap.
        jitter: +/- fraction of the wait drawn at random (0 <= jitter < 1).
        retry_on: exception types that may be retried.
        give_up_on: exception types that fail at once, even if listed in ``retry_on``.
    """

    max_attempts: int = 1
    delay: timedelta = timedelta(0)
    backoff: float = 1.0
    max_delay: timedelta | None = None
    jitter: float = 0.0
    retry_on: tuple[type[BaseException], ...] = (Exception,)
    give_up_on: tuple[type[BaseException], ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int):
            raise PolicyError(f"max_attempts must be an int, got {self.max_attempts!r}")
        if self.max_attempts < 1:
            raise PolicyError(f"max_attempts must be >= 1, got {self.max_attempts}")
        if not isinstance(self.delay, timedelta) or self.delay < timedelta(0):
            raise PolicyError(f"delay must be a timedelta >= 0, got {self.delay!r}")
        if not _is_real(self.backoff) or not self.backoff >= 1.0:
            raise PolicyError(f"backoff must be a number >= 1.0, got {self.backoff!r}")
        if self.max_delay is not None and (
            not isinstance(self.max_delay, timedelta) or self.max_delay < timedelta(0)
        ):
            raise PolicyError(f"max_delay must be a timedelta >= 0 or None, got {self.max_delay!r}")
        if not _is_real(self.jitter) or not 0.0 <= self.jitter < 1.0:
            raise PolicyError(f"jitter must be in [0, 1), got {self.jitter!r}")

    @classmethod
    def coerce(cls, value: RetryPolicy | int | None, delay: timedelta | None = None) -> RetryPolicy:
        """Turn the ``retries=`` shorthand (an int of extra attempts) into a policy.

        Raises:
            PolicyError: *value* is neither an int >= 0 nor a RetryPolicy.
        """
        if value is None:
            return cls(delay=delay or timedelta(0))
        if isinstance(value, RetryPolicy):
            return value
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise PolicyError(f"retries must be an int >= 0 or a RetryPolicy, got {value!r}")
        return cls(max_attempts=value + 1, delay=delay or timedelta(0))

    def should_retry(self, attempt: int, error_mro: Sequence[str]) -> bool:
        """Whether failed attempt *attempt* (1-based) of an error of class MRO *error_mro* retries.

        An error listed (or subclassing one listed) in ``give_up_on``, or not in ``retry_on``,
        fails at once.
        """
        if attempt >= self.max_attempts:
            return False
        names = set(error_mro)
        if any(qualified_name(t) in names for t in self.give_up_on):
            return False
        return any(qualified_name(t) in names for t in self.retry_on)

    def delay_after(self, attempt: int, rng: random.Random) -> timedelta:
        """The wait after failed attempt *attempt*, with jitter drawn from *rng*."""
        wait = self.base_delay(attempt)
        if self.jitter:
            wait = wait * rng.uniform(1.0 - self.jitter, 1.0 + self.jitter)
        return wait

    def base_delay(self, attempt: int) -> timedelta:
        """The wait after failed attempt *attempt* (1-based), before jitter."""
        wait = self.delay * (self.backoff ** (attempt - 1))
        if self.max_delay is not None:
            wait = min(wait, self.max_delay)
        return wait


@dataclass(frozen=True, slots=True)
class CacheInputs:
    """What a task's cache key is made of; a ``cache_key=`` function receives it.

    Attributes:
        task_id: The task.
        code: The digest of its code (transitively).
        inputs: The content hash of each upstream output it reads.
        constants: A digest of its constant arguments.
        version: The user's ``version=``.
        run: The facts of the run in the key (``params.x``, ``logical_date``...: see
            :mod:`rota.model.cacheon`), as text.
        rendered: Its templates as this attempt renders them (a shell command's text and
            values, rendered ``env=`` values).
        variables: The template variables of the attempt (``ds``, ``params``...), for a key
            function that renders a path.
    """

    task_id: str
    code: str
    inputs: Mapping[str, str]
    constants: str
    version: str = ""
    run: Mapping[str, str] = field(default_factory=dict)
    rendered: Mapping[str, str] = field(default_factory=dict)
    variables: Mapping[str, Any] = field(default_factory=dict)


KeyFn = Callable[[CacheInputs], str | Mapping[str, str]]
"""A ``cache_key=`` function: the key itself (a string), or named parts added to the usual key."""


@dataclass(frozen=True, slots=True)
class CachePolicy:
    """Reuse a stored output when the task's code, inputs, constants and run facts are unchanged.

    Attributes:
        key_fn: returns the key from :class:`CacheInputs` instead of the default hash, or a
            mapping of named parts added to the default key (``rota.cache.file_content``).
        expires: an entry older than this is not reused.
        version: a user-set part of the key (bump it to invalidate by hand).
        on: the run facts in the key (:mod:`rota.model.cacheon`); None: every parameter and run
            date for a task that can read them, none for one that cannot.
    """

    key_fn: KeyFn | None = None
    expires: timedelta | None = None
    version: str = ""
    on: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.key_fn is not None and not callable(self.key_fn):
            raise PolicyError(f"cache_key must be callable, got {self.key_fn!r}")
        if self.expires is not None and (
            not isinstance(self.expires, timedelta) or self.expires <= timedelta(0)
        ):
            raise PolicyError(f"cache_expires must be a positive timedelta, got {self.expires!r}")

    @classmethod
    def coerce(
        cls,
        cache: bool,
        key_fn: KeyFn | None,
        expires: timedelta | None,
        version: str,
        on: Iterable[str] | str | None = None,
    ) -> CachePolicy | None:
        """The policy the ``cache=``, ``cache_key=``, ``cache_expires=``, ``version=`` and
        ``cache_on=`` options describe; None when caching is off.

        Raises:
            PolicyError: an invalid option.
        """
        names = coerce_on(on)
        if not (cache or key_fn is not None or expires is not None or names is not None):
            return None
        return cls(key_fn, expires, str(version), names)


def _is_real(value: object) -> bool:
    """A finite int or float, not a bool."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def qualified_name(cls: type) -> str:
    """``module.QualName`` of a class, as error MROs list them."""
    return f"{cls.__module__}.{cls.__qualname__}"


def coerce_timeout(value: timedelta | float | int | None) -> timedelta | None:
    """Turn a ``timeout=`` value (timedelta or seconds) into a positive timedelta, or None.

    Raises:
        PolicyError: the value is not positive.
    """
    if value is None:
        return None
    if not isinstance(value, timedelta) and not _is_real(value):
        raise PolicyError(f"timeout must be a timedelta or seconds, got {value!r}")
    out = value if isinstance(value, timedelta) else timedelta(seconds=float(value))
    if out <= timedelta(0):
        raise PolicyError(f"timeout must be positive, got {value!r}")
    return out


class TriggerRule(StrEnum):
    """When a task runs, given how its direct upstreams ended; Airflow's rules, with its meaning.

    Each rule is decided from counts of the upstreams' outcomes by :func:`decide`, as soon as the
    outcome is known (Airflow's ``trigger_rule_dep.py``: ``one_failed`` runs at the first failure,
    ``all_success`` is upstream_failed at the first failure, ``always`` runs at once).
    """

    ALL_SUCCESS = "all_success"
    ALL_DONE = "all_done"
    ALL_FAILED = "all_failed"
    ONE_FAILED = "one_failed"
    ONE_SUCCESS = "one_success"
    ONE_DONE = "one_done"
    NONE_FAILED = "none_failed"
    NONE_FAILED_MIN_ONE_SUCCESS = "none_failed_min_one_success"
    NONE_SKIPPED = "none_skipped"
    ALL_SKIPPED = "all_skipped"
    ALL_DONE_MIN_ONE_SUCCESS = "all_done_min_one_success"
    ALWAYS = "always"

    @classmethod
    def coerce(cls, value: TriggerRule | str) -> TriggerRule:
        """Parse a rule name.

        Raises:
            PolicyError: the name is not a known rule.
        """
        try:
            return cls(value)
        except ValueError:
            known = ", ".join(r.value for r in cls)
            raise PolicyError(f"unknown trigger rule {value!r} (known: {known})") from None


@dataclass(frozen=True, slots=True)
class UpstreamTally:
    """How many direct upstreams a task has, and how many of them ended in each way so far.

    ``success`` counts succeeded and cached upstreams; the others are still running or waiting.
    """

    upstreams: int
    success: int = 0
    failed: int = 0
    skipped: int = 0
    upstream_failed: int = 0

    @property
    def done(self) -> int:
        """Upstreams that have ended, whatever their state."""
        return self.success + self.failed + self.skipped + self.upstream_failed

    @property
    def failures(self) -> int:
        """Upstreams that failed or are upstream_failed (Airflow's ``failed_states``)."""
        return self.failed + self.upstream_failed

    @property
    def all_done(self) -> bool:
        return self.done >= self.upstreams

    def describe(self) -> str:
        """The counts in words: ``2 of 3 upstreams ended: 1 success, 1 failed``."""
        parts = [
            f"{n} {name}"
            for n, name in (
                (self.success, "success"),
                (self.failed, "failed"),
                (self.upstream_failed, "upstream_failed"),
                (self.skipped, "skipped"),
            )
            if n
        ]
        ended = f"{self.done} of {self.upstreams} upstreams ended"
        return f"{ended}: {', '.join(parts)}" if parts else ended


_RUN, _SKIP, _UFAIL = TaskState.QUEUED, TaskState.SKIPPED, TaskState.UPSTREAM_FAILED


def _all_success(t: UpstreamTally) -> TaskState | None:
    if t.failures:
        return _UFAIL
    if t.skipped:
        return _SKIP
    return _RUN if t.success == t.upstreams else None


def _all_failed(t: UpstreamTally) -> TaskState | None:
    if t.success or t.skipped:
        return _SKIP
    return _RUN if t.failures == t.upstreams else None


def _all_done(t: UpstreamTally) -> TaskState | None:
    return _RUN if t.all_done else None


def _one_success(t: UpstreamTally) -> TaskState | None:
    if t.success:
        return _RUN
    if not t.all_done:
        return None
    return _SKIP if t.skipped == t.done else _UFAIL


def _one_failed(t: UpstreamTally) -> TaskState | None:
    if t.failures:
        return _RUN
    return _SKIP if t.all_done else None


def _one_done(t: UpstreamTally) -> TaskState | None:
    # Airflow counts success and failed here, not upstream_failed.
    if t.success or t.failed:
        return _RUN
    return _SKIP if t.all_done else None


def _none_failed(t: UpstreamTally) -> TaskState | None:
    if t.failures:
        return _UFAIL
    return _RUN if t.all_done else None


def _none_failed_min_one_success(t: UpstreamTally) -> TaskState | None:
    if t.failures:
        return _UFAIL
    if t.skipped == t.upstreams:
        return _SKIP
    return _RUN if t.all_done else None


def _none_skipped(t: UpstreamTally) -> TaskState | None:
    if t.skipped:
        return _SKIP
    return _RUN if t.all_done else None


def _all_skipped(t: UpstreamTally) -> TaskState | None:
    if t.success or t.failures:
        return _SKIP
    return _RUN if t.skipped == t.upstreams else None


def _all_done_min_one_success(t: UpstreamTally) -> TaskState | None:
    # Airflow: a skipped upstream is not "done" for this rule, so one skip skips the task at once.
    if t.skipped:
        return _SKIP
    if not t.all_done:
        return None
    return _RUN if t.success else _UFAIL


def _always(t: UpstreamTally) -> TaskState | None:
    return _RUN


_RULES: Mapping[TriggerRule, Callable[[UpstreamTally], TaskState | None]] = {
    TriggerRule.ALL_SUCCESS: _all_success,
    TriggerRule.ALL_DONE: _all_done,
    TriggerRule.ALL_FAILED: _all_failed,
    TriggerRule.ONE_FAILED: _one_failed,
    TriggerRule.ONE_SUCCESS: _one_success,
    TriggerRule.ONE_DONE: _one_done,
    TriggerRule.NONE_FAILED: _none_failed,
    TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS: _none_failed_min_one_success,
    TriggerRule.NONE_SKIPPED: _none_skipped,
    TriggerRule.ALL_SKIPPED: _all_skipped,
    TriggerRule.ALL_DONE_MIN_ONE_SUCCESS: _all_done_min_one_success,
    TriggerRule.ALWAYS: _always,
}


def decide(rule: TriggerRule, tally: UpstreamTally) -> TaskState | None:
    """What a task with *rule* becomes, if its upstreams' outcomes so far already determine it.

    Follows Airflow's ``trigger_rule_dep.py``: the rule's pass condition runs the task, and with
    ``flag_upstream_failed`` the same counts mark it ``skipped`` or ``upstream_failed`` without
    waiting for the other upstreams. A task without upstreams runs at once, whatever its rule.
    O(1): it reads counts only.

    Returns:
        ``QUEUED`` (run it), ``SKIPPED`` or ``UPSTREAM_FAILED``; None while undetermined.
    """
    if tally.upstreams == 0:
        return _RUN
    return _RULES[rule](tally)
