"""Sensors on files: a local path or glob (:class:`FileSensor`), a key on any fsspec
filesystem (:class:`KeySensor`)."""

from __future__ import annotations

import glob
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from rota.operators.base import ExecContext
from rota.operators.sensors.node import _BuiltIn, _checked, _TextPoker


@dataclass(frozen=True, slots=True)
class FilePoker(_TextPoker):
    """Satisfied when the rendered path (a glob pattern) matches at least one path."""

    what: ClassVar[str] = "file"

    def poke(self, ctx: ExecContext, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> bool:
        return bool(glob.glob(self.target(ctx), recursive=True))


class FileSensor(_BuiltIn):
    """Waits for a local path (a Jinja template and a glob pattern): ``data/{{ ds }}/*.csv``."""

    def __init__(self, task_id: str, path: str, **sensor_options: Any) -> None:
        super().__init__(task_id, FilePoker(_checked(task_id, "path", path)), sensor_options)


@dataclass(frozen=True, slots=True)
class KeyPoker(_TextPoker):
    """Satisfied when the rendered fsspec URL exists (or, with ``* ? [``, matches a key)."""

    what: ClassVar[str] = "key"

    def poke(self, ctx: ExecContext, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> bool:
        import fsspec.core

        from rota.artifacts.store import storage_options

        url = self.target(ctx)
        fs, path = fsspec.core.url_to_fs(url, **storage_options(url))
        fs.invalidate_cache()  # a cached listing would say the key is still missing
        if any(c in path for c in "*?["):
            return bool(fs.glob(path))
        return bool(fs.exists(path))


class KeySensor(_BuiltIn):
    """Waits for a key on any fsspec filesystem: ``s3://bucket/{{ ds }}/_SUCCESS``.

    ``s3://`` URLs use the artifact store's endpoint (``ROTA_S3_ENDPOINT_URL``).
    """

    def __init__(self, task_id: str, url: str, **sensor_options: Any) -> None:
        super().__init__(task_id, KeyPoker(_checked(task_id, "url", url)), sensor_options)


__all__ = ["FilePoker", "FileSensor", "KeyPoker", "KeySensor"]
