"""Settings: built once, at the edge, from the environment; nothing reads it at import."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Final

from rota.errors import ConfigError

EXECUTORS: Final = ("local", "threads", "inprocess")


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
    """

    home: Path
    database_url: str
    executor: str = "local"
    workers: int = 0
    fault_points: str = ""
    artifacts: str = ""

    def __post_init__(self) -> None:
        if self.executor not in EXECUTORS:
            raise ConfigError(f"unknown executor {self.executor!r} (known: {', '.join(EXECUTORS)})")
        if self.workers < 0:
            raise ConfigError(f"workers must be >= 1, got {self.workers}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Read ``ROTA_*`` variables from *environ*.

        Raises:
            ConfigError: a variable has an invalid value.
        """
        home = Path(environ.get("ROTA_HOME") or Path(environ.get("HOME", "~")) / ".rota")
        home = home.expanduser().absolute()
        url = environ.get("ROTA_DATABASE_URL") or f"sqlite:///{home / 'rota.db'}"
        raw_workers = environ.get("ROTA_WORKERS", "0") or "0"
        try:
            workers = int(raw_workers)
        except ValueError:
            raise ConfigError(f"ROTA_WORKERS must be an integer, got {raw_workers!r}") from None
        return cls(
            home=home,
            database_url=url,
            executor=environ.get("ROTA_EXECUTOR", "local") or "local",
            workers=workers,
            fault_points=environ.get("ROTA_FAULT_POINTS", ""),
            artifacts=environ.get("ROTA_ARTIFACTS", "") or str(home / "artifacts"),
        )

    def with_options(self, *, executor: str | None = None, workers: int | None = None) -> Settings:
        """A copy with command-line overrides applied."""
        return replace(
            self,
            executor=executor if executor is not None else self.executor,
            workers=workers if workers is not None else self.workers,
        )

    @property
    def worker_count(self) -> int:
        """Workers to start: the setting, or the number of CPUs when it is 0."""
        return self.workers or os.cpu_count() or 1

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"
