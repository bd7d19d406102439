"""Settings: built once, at the edge, from the environment; nothing reads it at import."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Final

from rota.errors import ConfigError

EXECUTORS: Final = ("local", "threads", "inprocess", "dask")
_DASK_ADDRESS: Final = re.compile(
    r"^(?:(?:tcp|tls|ws|wss|ucx)://)?[A-Za-z0-9_.\-\[\]:]+:[0-9]{1,5}$"
)
DEFAULT_DB_CONNECT_TIMEOUT: Final = 10.0
"""Seconds opening a PostgreSQL store may take by default (``ROTA_DB_CONNECT_TIMEOUT``)."""
DEFAULT_HEARTBEAT_TIMEOUT: Final = 60.0
"""Seconds without a heartbeat after which a run's owner counts as gone
(``ROTA_HEARTBEAT_TIMEOUT``)."""
_MAX_TIMEOUT: Final = 10**9  # seconds; beyond this a "timeout" is a typo (and overflows libpq)


@dataclass(frozen=True, slots=True)
class Settings:
    """Where Rota keeps its state and how it runs tasks.

    Attributes:
        home: ``ROTA_HOME`` (default ``~/.rota``): the SQLite file, artifacts and logs live here.
        database_url: ``ROTA_DATABASE_URL``; default ``sqlite:///$ROTA_HOME/rota.db``.
        executor: ``ROTA_EXECUTOR`` (``local``, ``threads`` or ``inprocess``); default ``local``.
        workers: ``ROTA_WORKERS``; default the number of CPUs.
        fault_points: ``ROTA_FAULT_POINTS``, for crash tests only (see ``rota.engine.faults``).
        artifacts: ``ROTA_ARTIFACTS``: where task outputs go, a folder or any fsspec URL
            (``s3://bucket/prefix`` with the ``rota[s3]`` extra); default ``$ROTA_HOME/artifacts``.
        db_connect_timeout: ``ROTA_DB_CONNECT_TIMEOUT``, seconds: how long opening a PostgreSQL
            store may take before it fails with one line (0: wait forever); default 10.
        db_statement_timeout: ``ROTA_DB_STATEMENT_TIMEOUT``, seconds: PostgreSQL cancels any
            statement of ours that runs (or waits for a lock) longer (0, the default: no limit).
        dask_address: ``ROTA_DASK_ADDRESS`` (``tcp://host:8786``): the Dask scheduler the
            ``dask`` executor sends tasks to; empty: a LocalCluster on this machine.
        artifacts_given: whether ``ROTA_ARTIFACTS`` (or ``--artifacts``) named the artifact store,
            rather than the default folder in the home (which a cluster's workers cannot share).
        heartbeat_timeout: ``ROTA_HEARTBEAT_TIMEOUT``, seconds (default 60): a run whose driver
            did not renew its lease this long is taken over by a scheduler; drivers stop their
            attempts after three quarters of it without renewing. Use one value for every
            scheduler and driver of a store.
        hostname: ``ROTA_HOSTNAME``: this machine's name in the ids of its schedulers and runners
            (default: its host name).
        ui_url: ``ROTA_UI_URL``: the address people open the web UI at (``rota ui``), e.g.
            ``http://127.0.0.1:8080``; notifiers link to a run's page there (empty: no link).
    """

    home: Path
    database_url: str
    executor: str = "local"
    workers: int = 0
    fault_points: str = ""
    artifacts: str = ""
    db_connect_timeout: float = DEFAULT_DB_CONNECT_TIMEOUT
    db_statement_timeout: float = 0.0
    dask_address: str = ""
    artifacts_given: bool = False
    heartbeat_timeout: float = DEFAULT_HEARTBEAT_TIMEOUT
    hostname: str = ""
    ui_url: str = ""

    def __post_init__(self) -> None:
        if self.executor not in EXECUTORS:
            raise ConfigError(f"unknown executor {self.executor!r} (known: {', '.join(EXECUTORS)})")
        if self.workers < 0:
            raise ConfigError(f"workers must be >= 1 (0: one per CPU), got {self.workers}")
        for name, value in (
            ("ROTA_DB_CONNECT_TIMEOUT", self.db_connect_timeout),
            ("ROTA_DB_STATEMENT_TIMEOUT", self.db_statement_timeout),
        ):
            if not 0 <= value < _MAX_TIMEOUT:
                raise ConfigError(f"{name} must be seconds >= 0 (0: no limit), got {value:g}")
        if self.dask_address and not _DASK_ADDRESS.match(self.dask_address):
            raise ConfigError(
                f"the Dask scheduler address must look like tcp://HOST:PORT, "
                f"got {self.dask_address!r}"
            )
        if not 1 <= self.heartbeat_timeout < _MAX_TIMEOUT:
            raise ConfigError(
                f"ROTA_HEARTBEAT_TIMEOUT must be seconds >= 1, got {self.heartbeat_timeout:g}"
            )
        if ":" in self.hostname or not self.hostname.isprintable():
            raise ConfigError(
                f"ROTA_HOSTNAME must be a host name without ':', got {self.hostname!r}"
            )
        if self.ui_url and not self.ui_url.startswith(("http://", "https://")):
            raise ConfigError(
                f"ROTA_UI_URL must start with http:// or https://, got {self.ui_url!r}"
            )

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Read ``ROTA_*`` variables from *environ*.

        Raises:
            ConfigError: a variable has an invalid value.
        """
        home = Path(environ.get("ROTA_HOME") or Path(environ.get("HOME", "~")) / ".rota")
        home = home.expanduser().absolute()
        url = environ.get("ROTA_DATABASE_URL") or f"sqlite:///{home / 'rota.db'}"
        return cls(
            home=home,
            database_url=url,
            executor=environ.get("ROTA_EXECUTOR", "local") or "local",
            workers=int(_number(environ, "ROTA_WORKERS", 0, integer=True)),
            fault_points=environ.get("ROTA_FAULT_POINTS", ""),
            artifacts=environ.get("ROTA_ARTIFACTS", "") or str(home / "artifacts"),
            artifacts_given=bool(environ.get("ROTA_ARTIFACTS", "")),
            dask_address=environ.get("ROTA_DASK_ADDRESS", "").strip(),
            db_connect_timeout=_number(
                environ, "ROTA_DB_CONNECT_TIMEOUT", DEFAULT_DB_CONNECT_TIMEOUT
            ),
            db_statement_timeout=_number(environ, "ROTA_DB_STATEMENT_TIMEOUT", 0.0),
            heartbeat_timeout=_number(environ, "ROTA_HEARTBEAT_TIMEOUT", DEFAULT_HEARTBEAT_TIMEOUT),
            hostname=environ.get("ROTA_HOSTNAME", "").strip(),
            ui_url=environ.get("ROTA_UI_URL", "").strip().rstrip("/"),
        )

    def with_options(
        self,
        *,
        executor: str | None = None,
        workers: int | None = None,
        dask_address: str | None = None,
        artifacts: str | None = None,
    ) -> Settings:
        """A copy with command-line overrides applied.

        Raises:
            ConfigError: an override has an invalid value.
        """
        return replace(
            self,
            executor=executor if executor is not None else self.executor,
            workers=workers if workers is not None else self.workers,
            dask_address=dask_address if dask_address is not None else self.dask_address,
            artifacts=artifacts or self.artifacts,
            artifacts_given=bool(artifacts) or self.artifacts_given,
        )

    @property
    def worker_count(self) -> int:
        """Workers to start: the setting, or the number of CPUs when it is 0."""
        return self.workers or os.cpu_count() or 1

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"


def _number(
    environ: Mapping[str, str], name: str, default: float, *, integer: bool = False
) -> float:
    """The number in *environ[name]*, or *default* when it is unset or empty.

    Raises:
        ConfigError: the value is not a (whole, with *integer*) number.
    """
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        kind = "an integer" if integer else "a number of seconds"
        raise ConfigError(f"{name} must be {kind}, got {raw!r}") from None
    return value
