"""Settings: one typed object, built once at the edge, every value remembering where it came from.

Each setting is one field of :class:`Settings`: its default, and ``metadata=setting(...)`` with the
reader of its values (:mod:`rota.configvalues`) and one line of help. Its variable is ``ROTA_``
and its name in capitals; its key in a configuration file is its name. Adding a setting is
adding one field; ``rota config show``, the file keys, the variables and the errors follow.

Values are taken, each later layer winning over the earlier ones:

1. the defaults;
2. ``$ROTA_HOME/rota.toml`` (the user's configuration, beside the store);
3. ``[tool.rota]`` in the nearest ``pyproject.toml`` at or above the working folder (the
   project's configuration, closer to the work, so it wins, as a repository's git config wins
   over your global one);
4. ``ROTA_*`` variables;
5. command-line flags (:meth:`Settings.with_options`).

A key no setting has, in either file, is an error naming the key and the file; so is a bad
value, wherever it comes from. ``home`` cannot be set in ``rota.toml``, which is found through it.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from rota import configvalues as cv
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


@dataclass(frozen=True, slots=True)
class Source:
    """Where a setting's value came from.

    Attributes:
        kind: ``default``, ``file``, ``env`` or ``flag``.
        where: the file (and table), the variable or the flag; empty for a default.
    """

    kind: str
    where: str = ""

    def __str__(self) -> str:
        return self.kind if not self.where else f"{self.kind} {self.where}"


DEFAULT: Final = Source("default")


@dataclass(frozen=True, slots=True)
class Spec:
    """How one setting is read: its reader, its help, and whether its value is shown masked."""

    read: cv.Reader[Any]
    help: str
    secret: bool = False


def setting(read: cv.Reader[Any], help: str, *, secret: bool = False) -> dict[str, Spec]:
    """The ``metadata=`` that makes a field of :class:`Settings` a setting::

    workers: int = field(default=0, metadata=setting(cv.integer(minimum=0), "worker count"))
    """
    return {"setting": Spec(read, help, secret=secret)}


_PER_CPU: Final = " (0: one per CPU)"
_TIMEOUT: Final = cv.seconds(note=" (0: no limit)")


def _dask_address(raw: Any, base: Path) -> str:
    address = cv.text(raw, base).strip()
    if address and not _DASK_ADDRESS.match(address):
        raise cv.BadValue(f"must look like tcp://HOST:PORT, got {address!r}")
    return address


def _home(raw: Any, base: Path) -> Path:
    found = cv.folder(raw, base)
    if found is None:
        raise cv.BadValue("must be a folder, got ''")
    return found


@dataclass(frozen=True, slots=True)
class Settings:
    """Where Rota keeps its state and how it runs tasks; see the module docstring.

    ``sources`` says, per setting, where its value came from; ``files`` are the configuration
    files that were read. Read a setting's help with :func:`specs` (``rota config show``).
    """

    home: Path = field(
        default=Path("~/.rota"), metadata=setting(_home, "the store, artifacts, logs, checkpoints")
    )
    database_url: str = field(
        default="",  # sqlite:///$ROTA_HOME/rota.db
        metadata=setting(cv.text, "the store: SQLite in the home, or postgresql+psycopg://...",
                         secret=True),
    )  # fmt: skip
    executor: str = field(
        default="local", metadata=setting(cv.choice(EXECUTORS), "where tasks run")
    )
    workers: int = field(
        default=0, metadata=setting(cv.integer(minimum=0, note=_PER_CPU), "worker count")
    )
    artifacts: str = field(
        default="",  # $ROTA_HOME/artifacts
        metadata=setting(cv.location, "where outputs go: a folder or an fsspec URL (s3://...)"),
    )
    inline_output_max: int = field(
        default=64 * 1024,
        metadata=setting(
            cv.integer(minimum=0, note=" (0: every output in a file)"),
            "bytes up to which an output is kept in the store's row, not a file",
        ),
    )
    flows: Path | None = field(
        default=None, metadata=setting(cv.folder, "the folder flow names are found in")
    )
    db_connect_timeout: float = field(
        default=DEFAULT_DB_CONNECT_TIMEOUT,
        metadata=setting(_TIMEOUT, "seconds opening a PostgreSQL store may take"),
    )
    db_statement_timeout: float = field(
        default=0.0, metadata=setting(_TIMEOUT, "seconds a PostgreSQL statement may take")
    )
    dask_address: str = field(
        default="",
        metadata=setting(_dask_address, "the Dask scheduler (tcp://HOST:PORT) of --executor dask; "
                         "empty: a LocalCluster here"),
    )  # fmt: skip
    fault_points: str = field(
        default="", metadata=setting(cv.text, "named points to crash at (crash tests only)")
    )
    heartbeat_timeout: float = field(
        default=DEFAULT_HEARTBEAT_TIMEOUT,
        metadata=setting(cv.seconds(minimum=1.0), "seconds without a heartbeat before a run's "
                         "driver counts as gone (one value for every scheduler and driver)"),
    )  # fmt: skip
    hostname: str = field(
        default="", metadata=setting(cv.host_name, "this machine's name in scheduler/runner ids")
    )
    ui_url: str = field(
        default="",
        metadata=setting(cv.web_url, "where people open the web UI: notifiers link to it"),
    )

    sources: Mapping[str, Source] = field(default_factory=dict, compare=False, repr=False)
    files: tuple[str, ...] = field(default=(), compare=False, repr=False)

    def __post_init__(self) -> None:
        for name, spec in specs().items():  # values given in code are checked as read ones
            value = getattr(self, name)
            if value is None or isinstance(value, Path):
                continue
            try:
                spec.read(value, Path("."))
            except cv.BadValue as err:
                raise ConfigError(f"{name} {err}") from None
        # the defaults that live in the home (frozen: set once, here)
        if str(self.home).startswith("~"):
            object.__setattr__(self, "home", self.home.expanduser().absolute())
        if not self.database_url:
            object.__setattr__(self, "database_url", f"sqlite:///{self.home / 'rota.db'}")
        if not self.artifacts:
            object.__setattr__(self, "artifacts", str(self.home / "artifacts"))

    @classmethod
    def load(cls, environ: Mapping[str, str], cwd: Path | None = None) -> Settings:
        """The settings from the defaults, the configuration files and *environ*.

        Raises:
            ConfigError: a file has an unknown key, a value is invalid, or a file cannot be
                read (``UnsafeHome``: another user could have written it).
        """
        from rota.configfiles import read_home_file, read_project_file

        cwd = cwd or Path.cwd()
        layers = _Layers(environ, cwd)
        project = read_project_file(cwd)
        layers.home(project)
        home_file = read_home_file(layers.values["home"])
        for found in (home_file, project):
            if found is not None:
                layers.file(found)
        layers.env()
        return layers.build()

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """:meth:`load` from the working folder: the files too, then *environ*."""
        return cls.load(environ)

    def with_options(self, **given: Any) -> Settings:
        """A copy with command-line flags applied: ``with_options(workers=4)``; None means the
        flag was not given. The source of each is the flag (``--workers``).

        Raises:
            ConfigError: a value is invalid.
        """
        changes = {name: value for name, value in given.items() if value is not None}
        unknown = sorted(set(changes) - set(specs()))
        if unknown:
            raise TypeError(f"not settings: {', '.join(unknown)}")
        sources = dict(self.sources)
        for name in changes:
            sources[name] = Source("flag", "--" + name.replace("_", "-"))
        return dataclasses.replace(self, **changes, sources=sources)

    def source(self, name: str) -> Source:
        """Where setting *name* came from."""
        return self.sources.get(name, DEFAULT)

    def environment(self) -> dict[str, str]:
        """The ``ROTA_*`` variables that give a child process (a run's driver) these settings,
        whatever configuration files it finds: every setting that has a value."""
        out: dict[str, str] = {}
        for name in specs():
            value = getattr(self, name)
            if value is not None and str(value) != "":
                out[env_name(name)] = str(value)
        return out

    def shown(self) -> Iterator[tuple[str, str, Source, str]]:
        """Each setting as ``rota config show`` prints it: name, value (a secret masked),
        source and help."""
        for name, spec in specs().items():
            value = getattr(self, name)
            text = "" if value is None else f"{value:g}" if isinstance(value, float) else str(value)
            if spec.secret:
                text = mask(text)
            yield name, text, self.source(name), spec.help

    @property
    def artifacts_given(self) -> bool:
        """Whether a file, ``ROTA_ARTIFACTS`` or ``--artifacts`` named the artifact store, rather
        than the default folder in the home (which a cluster's workers cannot share)."""
        return self.source("artifacts").kind != "default"

    @property
    def worker_count(self) -> int:
        """Workers to start: the setting, or the number of CPUs when it is 0."""
        return self.workers or os.cpu_count() or 1

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"


def specs() -> dict[str, Spec]:
    """Every setting's :class:`Spec`, by name, in the order they are declared."""
    return {
        f.name: f.metadata["setting"]
        for f in dataclasses.fields(Settings)
        if "setting" in f.metadata
    }


def env_name(name: str) -> str:
    """The variable of setting *name*: ``ROTA_`` and the name in capitals."""
    return "ROTA_" + name.upper()


def mask(text: str) -> str:
    """*text* with the password of a URL in it replaced by ``***``."""
    import re

    return re.sub(r"(://[^:/@]*):[^@/]*@", r"\1:***@", text)


class _Layers:
    """The values and sources gathered so far, layer by layer (see the module docstring)."""

    def __init__(self, environ: Mapping[str, str], cwd: Path) -> None:
        self.environ = environ
        self.cwd = cwd
        self.values: dict[str, Any] = {}
        self.sources: dict[str, Source] = {}
        self.files: list[str] = []

    def _set(
        self, name: str, raw: Any, base: Path, source: Source, label: str, **where: Any
    ) -> None:
        try:
            self.values[name] = specs()[name].read(raw, base)
        except cv.BadValue as err:
            raise ConfigError(f"{label} {err}", **where) from None
        self.sources[name] = source

    def home(self, project: Any) -> None:
        """The home first: ``rota.toml`` is found in it."""
        default = Path(self.environ.get("HOME") or "~") / ".rota"
        self.values["home"] = default.expanduser().absolute()
        if project is not None and "home" in project.values:
            where = {"file": str(project.path), "line": project.line_of("home")}
            source = Source("file", str(project.path))
            self._set("home", project.values["home"], project.path.parent, source, "home", **where)
        if self.environ.get("ROTA_HOME"):
            self._set("home", self.environ["ROTA_HOME"], self.cwd, Source("env", "ROTA_HOME"),
                      "ROTA_HOME")  # fmt: skip

    def file(self, found: Any) -> None:
        """The settings of one configuration file; an unknown key is an error."""
        self.files.append(found.label)
        known = specs()
        for key, raw in found.values.items():
            where = {"file": str(found.path), "line": found.line_of(key)}
            if key not in known:
                raise ConfigError(_unknown(key), **where)
            if key == "home":
                if not found.table:
                    raise ConfigError(
                        "home cannot be set in rota.toml, which is read from the home: "
                        "set ROTA_HOME (or home in [tool.rota] of the project's pyproject.toml)",
                        **where,
                    )
                continue  # read first, by home()
            self._set(key, raw, found.path.parent, Source("file", str(found.path)), key, **where)

    def env(self) -> None:
        """The ``ROTA_*`` variables; an empty one counts as unset."""
        for name in specs():
            var = env_name(name)
            if name != "home" and self.environ.get(var, "").strip():
                self._set(name, self.environ[var], self.cwd, Source("env", var), var)

    def build(self) -> Settings:
        return Settings(**self.values, sources=self.sources, files=tuple(self.files))


def _unknown(key: str) -> str:
    close = difflib.get_close_matches(key, list(specs()), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else f" (settings: {', '.join(specs())})"
    return f"unknown setting {key!r}{hint}"
