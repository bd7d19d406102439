"""Choosing an executor by name."""

from __future__ import annotations

from rota.config import Settings
from rota.errors import ConfigError
from rota.executors.base import Executor


def open_executor(settings: Settings) -> Executor:
    """The executor *settings* name: ``local`` (warm process pool), ``threads``, ``inprocess`` or
    ``dask`` (a Dask cluster).

    Raises:
        ConfigError: an unknown executor name; for ``dask``: Dask not installed, no scheduler at
            the address, or a scheduler elsewhere with the artifacts in this machine's home.
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
    if settings.executor == "dask":
        from rota.executors.dask import DaskExecutor

        check_shared_artifacts(settings)
        return DaskExecutor(settings.dask_address, workers=settings.worker_count)
    raise ConfigError(f"unknown executor {settings.executor!r}")


def check_shared_artifacts(settings: Settings) -> None:
    """Refuse a remote Dask scheduler with the default artifact folder in this machine's home.

    Its workers write outputs, checkpoints and claims there: unless it is a folder they all
    share (say so with ``--artifacts`` / ``ROTA_ARTIFACTS``) or an object store, no downstream
    task on another machine could read them.

    Raises:
        ConfigError: a scheduler address is set and the artifacts were not named.
    """
    if settings.dask_address and not settings.artifacts_given:
        raise ConfigError(
            f"the Dask scheduler {settings.dask_address} runs tasks on workers that cannot read "
            f"this machine's folder {settings.artifacts}: name a folder they all share, or an "
            "s3:// URL, with --artifacts (or ROTA_ARTIFACTS)"
        )
