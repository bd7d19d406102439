"""The scheduler daemon's view of a folder of flow files, parsed in child processes.

The daemon never imports user code in its own process: a flow file may hang, crash or call
``exit()`` at import. :class:`FlowFolder` parses each new or changed file in a child process
(``python -m rota.engine.parse_worker FILE``), kills it after a timeout, and keeps the last report
of every unchanged file, so a scan with nothing new costs a ``stat`` per file and no process.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any, Final

from rota.engine.loader import _flow_files
from rota.engine.runner import FlowRef
from rota.errors import ConfigError
from rota.model.datasets import Dataset
from rota.model.schedule import FlowTiming, Schedule

WORKER_MODULE: Final = "rota.engine.parse_worker"
_RACY_NS: Final = 2_000_000_000
"""A file modified this close to when it was stat'ed may change again within the same timestamp
(coarse file system clocks), so its (mtime, size) is not trusted on the next scan: git's "racily
clean" rule. Its content hash is checked instead, which costs a read but no process."""
_STDERR_TAIL: Final = 4096


@dataclass(frozen=True, slots=True)
class FlowInfo:
    """What the scheduler needs to know of one good flow, as plain data that crosses processes.

    Attributes:
        name, path, module, code_hash: where the flow's code lives (see :meth:`ref`).
        description: the flow's description (its docstring for a ``@flow`` function).
        cron: the cron expression (presets expanded), if the flow runs on a cron schedule.
        every_seconds: the interval, if the flow runs on a timedelta schedule.
        timezone: the zone the schedule reads wall time in.
        start_date, end_date: the schedule's bounds, ISO 8601 in UTC, or None.
        catchup, max_active_runs: as in :class:`~rota.model.schedule.FlowTiming`.
        datasets: URIs of the datasets the flow is scheduled on.
        params: the parameters' defaults as the store keeps them (a secret is a marker, a
            ``rota.Secret`` a reference); a parameter without a default, or with one that does
            not survive a JSON round trip, is left out (a scheduled flow may have neither).
        tasks: ``(task id, operator kind, code hash)`` in topological order, for the graph built
            with the defaults; None when a parameter has no default (the flow only runs by hand).
        upstream: each task's direct upstream ids in that graph (a run records its graph).
    """

    name: str
    path: str
    module: str
    code_hash: str
    description: str = ""
    cron: str | None = None
    every_seconds: float | None = None
    timezone: str = "UTC"
    start_date: str | None = None
    end_date: str | None = None
    catchup: bool = False
    max_active_runs: int = 16
    datasets: tuple[str, ...] = ()
    params: dict[str, Any] = field(default_factory=dict)
    tasks: tuple[tuple[str, str, str], ...] | None = ()
    upstream: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def scheduled(self) -> bool:
        """Whether the flow runs on its own (a clock or datasets), not only when started."""
        return self.cron is not None or self.every_seconds is not None or bool(self.datasets)

    def timing(self) -> FlowTiming:
        """Rebuild when the flow runs.

        Raises:
            PolicyError: the stored schedule is invalid (it cannot be, if a worker made it).
        """
        clock: Schedule | None = None
        value: str | timedelta | None = self.cron
        if value is None and self.every_seconds is not None:
            value = timedelta(seconds=self.every_seconds)
        if value is not None:
            clock = Schedule.parse(
                value,
                timezone=self.timezone,
                start_date=_from_iso(self.start_date),
                end_date=_from_iso(self.end_date),
            )
        datasets = tuple(Dataset(uri) for uri in self.datasets)
        return FlowTiming(clock, datasets, self.catchup, self.max_active_runs, self.timezone)

    def ref(self) -> FlowRef:
        """Where workers import the flow from."""
        return FlowRef(self.name, self.path, self.module, self.code_hash)

    def to_json(self) -> dict[str, Any]:
        """This flow info as a JSON-able dict (tuples become lists)."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["datasets"] = list(self.datasets)
        data["params"] = dict(self.params)
        data["tasks"] = None if self.tasks is None else [list(t) for t in self.tasks]
        data["upstream"] = {tid: list(ups) for tid, ups in self.upstream.items()}
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FlowInfo:
        """The flow info :meth:`to_json` gave *data* for.

        Raises:
            ValueError: *data* lacks a field or has an unknown one.
        """
        names = {f.name for f in fields(cls)}
        if set(data) != names:
            wrong = sorted(set(data) ^ names)
            raise ValueError(f"not a flow info: fields {', '.join(wrong)} missing or unknown")
        values = dict(data)
        values["datasets"] = tuple(values["datasets"])
        tasks = values["tasks"]
        values["tasks"] = None if tasks is None else tuple((a, b, c) for a, b, c in tasks)
        values["upstream"] = {tid: tuple(ups) for tid, ups in values["upstream"].items()}
        return cls(**values)


@dataclass(frozen=True, slots=True)
class FileReport:
    """What parsing one file found: its good flows and one-line errors (``file:line: ...``)."""

    flows: tuple[FlowInfo, ...] = ()
    errors: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """This report as a JSON-able dict."""
        return {"flows": [f.to_json() for f in self.flows], "errors": list(self.errors)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FileReport:
        """The report :meth:`to_json` gave *data* for.

        Raises:
            ValueError: *data* is not a report.
        """
        try:
            flows = tuple(FlowInfo.from_json(f) for f in data["flows"])
            errors = tuple(str(e) for e in data["errors"])
        except (KeyError, TypeError) as err:
            raise ValueError(f"not a file report: {err}") from None
        return cls(flows, errors)


@dataclass(frozen=True, slots=True)
class ScanResult:
    """The folder as of one scan.

    Attributes:
        flows: good flows by name.
        errors: one line per bad file, by file path.
        changed: whether ``flows`` or ``errors`` differ from the previous scan's (True the first
            time).
        parsed: the files this scan parsed in a child process.
    """

    flows: dict[str, FlowInfo]
    errors: dict[str, str]
    changed: bool
    parsed: tuple[str, ...] = ()


def _from_iso(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value is not None else None


def one_line(text: str) -> str:
    """*text* with its lines joined by spaces, so an error stays one line."""
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


# --- in the daemon: a folder, re-parsed where it changed -----------------------------------------


@dataclass(slots=True)
class _Known:
    """The last report of one file and the stat and content it was made from."""

    stat: tuple[int, int]  # (mtime_ns, size)
    digest: str
    report: FileReport
    trusted: bool  # False when the file was modified too close to the stat (see _RACY_NS)


class FlowFolder:
    """The flows in a folder of flow files, each file parsed in a child process.

    Each :meth:`scan` re-parses only files that are new or whose content changed, at most
    *max_parallel* at once, and forgets deleted files. Files and folders whose names start with
    ``.`` or ``__`` are skipped. A flow name defined in several files is an error in each of
    them, and the flow is in none's results until only one file defines it. Not thread-safe:
    call :meth:`scan` from one thread.

    Args:
        root: the folder (or a single flow file).
        parse_timeout: seconds a file may take to import and build; past that, its process
            group is killed and the file gets an error.
        max_parallel: the most parse processes at once.

    Raises:
        ConfigError: *parse_timeout* is not positive or *max_parallel* is below 1.
    """

    def __init__(self, root: Path, *, parse_timeout: float = 30.0, max_parallel: int = 4) -> None:
        if not parse_timeout > 0:
            raise ConfigError(f"parse_timeout must be positive, got {parse_timeout!r}")
        if isinstance(max_parallel, bool) or not isinstance(max_parallel, int) or max_parallel < 1:
            raise ConfigError(f"max_parallel must be an int >= 1, got {max_parallel!r}")
        self.root = root.resolve()
        self.parse_timeout = float(parse_timeout)
        self.max_parallel = max_parallel
        self.parse_count = 0
        """How many files were parsed in a child process, over all scans."""
        self._files: dict[str, _Known] = {}
        self._last: tuple[dict[str, FlowInfo], dict[str, str]] | None = None

    def scan(self) -> ScanResult:
        """Re-parse new and changed files, forget deleted ones, and return every flow and error.

        A file that cannot be parsed (it hangs, crashes, or its process dies) gets an error;
        the scan itself does not fail because of a flow file. A file's error stays until the
        file changes: a file that timed out is not retried while its content is the same.

        Raises:
            OSError: a parse process could not be started (no memory, too many open files).
        """
        started = time.time_ns()
        found = self._stat_all()
        for gone in self._files.keys() - found.keys():
            del self._files[gone]
        todo = self._to_parse(found, started)
        reports = self._parse_all(sorted(todo))
        for path, report in reports.items():
            stat, digest = todo[path]
            self._files[path] = _Known(stat, digest, report, _trusted(stat, started))
        flows, errors = _combine(self._files)
        changed = self._last != (flows, errors)
        self._last = (flows, errors)
        return ScanResult(flows, errors, changed, tuple(sorted(todo)))

    def _stat_all(self) -> dict[str, tuple[int, int]]:
        """(mtime_ns, size) of every flow file now in the folder."""
        found: dict[str, tuple[int, int]] = {}
        if not self.root.exists():
            return found
        for file in _flow_files(self.root):
            try:
                st = file.stat()
            except OSError:  # deleted since it was listed: next scan will not list it
                continue
            found[str(file)] = (st.st_mtime_ns, st.st_size)
        return found

    def _to_parse(
        self, found: Mapping[str, tuple[int, int]], now_ns: int
    ) -> dict[str, tuple[tuple[int, int], str]]:
        """The files to parse, with their stat and content digest; refresh touched ones."""
        todo: dict[str, tuple[tuple[int, int], str]] = {}
        for path, stat in found.items():
            known = self._files.get(path)
            if known is not None and known.trusted and known.stat == stat:
                continue
            try:
                digest = hashlib.blake2b(Path(path).read_bytes(), digest_size=16).hexdigest()
            except OSError as err:  # unreadable: an error now, tried again next scan
                report = FileReport(errors=(one_line(f"{path}: cannot read: {err}"),))
                self._files[path] = _Known((-1, -1), "", report, trusted=False)
                continue
            if known is not None and known.digest == digest:  # touched, not changed
                known.stat, known.trusted = stat, _trusted(stat, now_ns)
                continue
            todo[path] = (stat, digest)
        return todo

    def _parse_all(self, paths: list[str]) -> dict[str, FileReport]:
        """Parse *paths* in child processes, at most ``max_parallel`` at once."""
        if not paths:
            return {}
        self.parse_count += len(paths)
        workers = min(self.max_parallel, len(paths))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rota-parse") as pool:
            reports = pool.map(lambda p: parse_in_child(p, self.parse_timeout), paths)
            return dict(zip(paths, reports, strict=True))


def _trusted(stat: tuple[int, int], now_ns: int) -> bool:
    return now_ns - stat[0] > _RACY_NS


def _combine(files: Mapping[str, _Known]) -> tuple[dict[str, FlowInfo], dict[str, str]]:
    """Good flows by name and errors by file; a name in several files is an error in each."""
    owners: dict[str, dict[str, FlowInfo]] = {}  # flow name -> file -> flow
    messages: dict[str, list[str]] = {}
    for path in sorted(files):
        report = files[path].report
        for info in report.flows:
            owners.setdefault(info.name, {})[path] = info
        if report.errors:
            messages[path] = list(report.errors)
    flows: dict[str, FlowInfo] = {}
    for name in sorted(owners):
        by_file = owners[name]
        if len(by_file) == 1:
            flows[name] = next(iter(by_file.values()))
            continue
        for path in by_file:
            others = ", ".join(p for p in by_file if p != path)
            messages.setdefault(path, []).append(
                f"{path}: flow {name!r} is also defined in {others}"
            )
    return flows, {path: "; ".join(messages[path]) for path in sorted(messages)}


# --- one child process ----------------------------------------------------------------------------


def parse_in_child(path: str, timeout: float) -> FileReport:
    """Run the parse worker on *path* in a new process group and return its report.

    Whatever happens to the child (a hang, a crash, no report), the result is a report, and
    nothing the child started outlives this call: its whole process group is killed.
    """
    command = [sys.executable, "-m", WORKER_MODULE, path]
    with (
        tempfile.TemporaryFile() as stderr,
        subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            start_new_session=True,
        ) as proc,
    ):
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc.pid)
            proc.wait()
            return FileReport(errors=(f"{path}: parse timed out after {timeout:g}s (killed)",))
        _kill_group(proc.pid)  # anything the file started and left running
        return _read_report(path, proc.returncode, out, stderr)


def _kill_group(pgid: int) -> None:
    # A group id stays reserved while any member lives, so this cannot hit a stranger.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _read_report(path: str, returncode: int, out: bytes, stderr: IO[bytes]) -> FileReport:
    """The report on the child's last stdout line, or an error naming how the child ended."""
    lines = out.decode("utf-8", errors="replace").strip().splitlines()
    if lines:
        try:
            return FileReport.from_json(json.loads(lines[-1]))
        except ValueError:  # JSONDecodeError too
            pass
    how = f"exit code {returncode}"
    if returncode < 0:
        try:
            how = f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            how = f"killed by signal {-returncode}"
    last = _last_line(stderr)
    detail = f": {last}" if last else ""
    return FileReport(errors=(f"{path}: parse worker gave no result ({how}){detail}",))


def _last_line(stream: IO[bytes]) -> str:
    """The last non-empty line of what the child wrote to *stream*, at most 300 characters."""
    size = stream.seek(0, os.SEEK_END)
    stream.seek(max(0, size - _STDERR_TAIL))
    text = stream.read().decode("utf-8", errors="replace")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""
