"""The ``rota_home`` fixture, imported as a user may enable it (or ``pytest_plugins =
["rota.pytest_plugin"]`` in a root ``conftest.py``)."""

from rota.pytest_plugin import rota_home

__all__ = ["rota_home"]
