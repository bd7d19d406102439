"""Fixtures of the crash tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from faultharness import kill_leftovers


@pytest.fixture(autouse=True)
def _no_runner_outlives_its_test() -> Iterator[None]:
    """A test that fails half-way may leave a runner going: end it (its workers follow)."""
    yield
    kill_leftovers()
