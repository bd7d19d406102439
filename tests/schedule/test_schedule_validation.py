"""Bad schedules fail on construction with one-line PolicyErrors."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from rota.errors import DefinitionError, PolicyError
from rota.model.schedule import Interval, Schedule


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ("61 * * * *", "bad cron"),
        ("0 25 * * *", "bad cron"),
        ("nonsense", "5 fields"),
        ("0 3 * *", "5 fields"),
        ("0 0 3 * * *", "5 fields"),  # croniter's seconds field is not ours
        ("0 0 31 2 *", "bad cron"),  # never fires
        ("@once", "5 fields"),
        ("@reboot", "5 fields"),
        ("", "5 fields"),
        (timedelta(0), "positive timedelta"),
        (timedelta(hours=-1), "positive timedelta"),
        (6, "cron expression, a preset or a timedelta"),
        (["dataset"], "cron expression, a preset or a timedelta"),
    ],
)
def test_bad_schedule_values(value: Any, needle: str) -> None:
    with pytest.raises(PolicyError, match=needle) as info:
        Schedule.parse(value)
    assert "\n" not in str(info.value)
    assert isinstance(info.value, DefinitionError)


@pytest.mark.parametrize("zone", ["Mars/Olympus_Mons", "", "../../etc/passwd", "Europe/"])
def test_unknown_time_zone(zone: str) -> None:
    with pytest.raises(PolicyError, match="timezone"):
        Schedule.parse("@daily", timezone=zone)


@pytest.mark.parametrize("gap", [timedelta(0), timedelta(days=-1)])
def test_start_after_or_at_end(gap: timedelta) -> None:
    start = datetime(2026, 1, 2, tzinfo=UTC)
    with pytest.raises(PolicyError, match=r"end_date .* must be after start_date"):
        Schedule.parse("@daily", start_date=start, end_date=start + gap)


def test_bounds_must_be_datetimes() -> None:
    with pytest.raises(PolicyError, match="start_date"):
        Schedule.parse("@daily", start_date="2026-01-01")  # type: ignore[arg-type]


def test_exactly_one_of_cron_and_every() -> None:
    with pytest.raises(PolicyError, match="exactly one"):
        Schedule()
    with pytest.raises(PolicyError, match="exactly one"):
        Schedule(cron="0 3 * * *", every=timedelta(hours=1))


@pytest.mark.parametrize("method", ["next_after", "latest_complete"])
def test_naive_instants_are_refused(method: str) -> None:
    with pytest.raises(PolicyError, match="timezone-aware"):
        getattr(Schedule.parse("@daily"), method)(datetime(2026, 1, 1))
    with pytest.raises(PolicyError, match="timezone-aware"):
        Schedule.parse("@daily").due(datetime(2026, 1, 1), None, catchup=False)


def test_interval_is_validated() -> None:
    t = datetime(2026, 1, 1, tzinfo=UTC)
    with pytest.raises(PolicyError, match="precede"):
        Interval(t, t)
    with pytest.raises(PolicyError, match="timezone-aware"):
        Interval(datetime(2026, 1, 1), t)
    assert Interval(t, t + timedelta(hours=1)).logical_date == t


def test_schedules_are_frozen_values() -> None:
    daily = Schedule.parse("@daily", timezone="Europe/Berlin")
    assert daily == Schedule.parse("0 0 * * *", timezone="Europe/Berlin")
    assert daily != Schedule.parse("0 0 * * *", timezone="UTC")
    assert len({daily, Schedule.parse(" @DAILY ", timezone="Europe/Berlin")}) == 1
    assert daily.cron == "0 0 * * *"
    with pytest.raises(dataclasses.FrozenInstanceError):
        daily.timezone = "UTC"  # type: ignore[misc]
