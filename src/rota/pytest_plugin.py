"""pytest fixtures for testing flows; enable them in a ``conftest.py``::

    pytest_plugins = ["rota.pytest_plugin"]

``rota_home`` gives each test a :class:`~rota.testing.RotaSandbox`: a Rota home in the test's
temporary folder. While the test runs, ``ROTA_HOME``, ``ROTA_DATABASE_URL`` and
``ROTA_ARTIFACTS`` point into it, so a plain ``pipeline.run()`` (and a ``rota`` command the test
starts) uses it too, never the store of the machine's user.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from rota.testing import RotaSandbox


@pytest.fixture
def rota_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> RotaSandbox:
    """A Rota home of the test's own: ``rota_home.run(pipeline, factor=3.0)``."""
    sandbox = RotaSandbox(tmp_path / "rota-home")
    settings = sandbox.settings
    monkeypatch.setenv("ROTA_HOME", str(settings.home))
    monkeypatch.setenv("ROTA_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("ROTA_ARTIFACTS", settings.artifacts)
    return sandbox
