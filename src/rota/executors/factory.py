"""Choosing an executor by name."""

from __future__ import annotations

from rota.config import Settings
from rota.errors import ConfigError
from rota.executors.base import Executor


def open_executor(settings: Settings) -> Executor:
    """The executor *settings* name: ``local`` (warm process pool), ``threads`` or ``inprocess``.

    Raises:
        ConfigError: an unknown executor name.
    """
    if settings.executor == "local":
        from rota.executors.pool import LocalPoolExecutor

        return LocalPoolExecutor(settings.worker_count, str(settings.logs_dir))
    if settings.executor == "threads":
        from rota.executors.threads import ThreadExecutor

        return ThreadExecutor(settings.worker_count)
    if settings.executor == "inprocess":
        from rota.executors.threads import InProcessExecutor

        return InProcessExecutor()
    raise ConfigError(f"unknown executor {settings.executor!r}")
