"""UtcDateTime on SQLite: its own text conversions are exactly SQLAlchemy's DATETIME ones."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.dialects import sqlite

from rota.store.tables import UtcDateTime, sqlite_text, sqlite_time

_DIALECT = sqlite.dialect()
_BIND = sqlite.DATETIME().bind_processor(_DIALECT)
_RESULT = sqlite.DATETIME().result_processor(_DIALECT, None)
_ZONES = st.builds(
    timezone, st.timedeltas(min_value=timedelta(hours=-23), max_value=timedelta(hours=23))
)
_AWARE = st.datetimes(
    min_value=datetime(1900, 1, 2), max_value=datetime(9999, 12, 30), timezones=_ZONES
)


@given(_AWARE)
def test_a_time_is_stored_as_the_text_sqlalchemy_would_store(value: datetime) -> None:
    assert _BIND is not None and _RESULT is not None
    want = _BIND(value.astimezone(UTC).replace(tzinfo=None))
    assert sqlite_text(value) == want
    back = sqlite_time(want)
    assert back == _RESULT(want).replace(tzinfo=UTC) == value
    assert back is not None and back.tzinfo is UTC


def test_the_column_type_uses_them_on_sqlite_only() -> None:
    from sqlalchemy.dialects import postgresql

    kind = UtcDateTime()
    assert kind.bind_processor(_DIALECT) is sqlite_text
    assert kind.result_processor(_DIALECT, None) is sqlite_time
    assert kind.bind_processor(postgresql.dialect()) is not sqlite_text


def test_text_with_fewer_digits_or_no_fraction_is_read_as_sqlalchemy_reads_it() -> None:
    assert _RESULT is not None
    for text in ("2024-03-01 12:00:00", "2024-03-01 12:00:00.5", "2024-03-01 12:00:00.000001"):
        assert sqlite_time(text) == _RESULT(text).replace(tzinfo=UTC)
    assert sqlite_time(None) is None and sqlite_text(None) is None


def test_a_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="naive datetime 2024-03-01T00:00:00"):
        sqlite_text(datetime(2024, 3, 1))
