"""The child process that parses one flow file: ``python -m rota.engine.parse_worker FILE``.

It imports the file, builds each flow's graph with the default parameters (:func:`describe_file`),
writes one JSON line, a :class:`~rota.engine.flowdir.FileReport`, to stdout and exits 0. The
file's own output cannot corrupt that line: before the file is imported, file descriptor 1 is
pointed at stderr (so ``print``, C code and child processes all write there), and the report goes
to a private duplicate of the original stdout.
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn

from rota.engine.flowdir import FileReport, FlowInfo, one_line
from rota.engine.loader import LoadedFlow, load_file
from rota.errors import DefinitionError, UserError
from rota.model.dag import REQUIRED, Dag
from rota.model.secrets import stored_params


def describe_file(path: Path) -> FileReport:
    """Import *path* in this process and describe the flows it defines.

    This runs the file's code: only the parse worker calls it. Every error the file causes is
    reported, one line each; other flows of the file are still described.
    """
    try:
        loaded = load_file(path)
    except UserError as err:
        return FileReport(errors=(one_line(str(err)),))
    counts = Counter(lf.name for lf in loaded)
    flows: list[FlowInfo] = []
    errors: list[str] = []
    for lf in loaded:
        if counts[lf.name] > 1:  # two objects of one name: neither wins
            message = f"{lf.ref.path}: flow {lf.name!r} is defined twice in this file"
            if message not in errors:
                errors.append(message)
            continue
        try:
            flows.append(describe_flow(lf))
        except UserError as err:
            errors.append(one_line(str(err)))
        except (Exception, SystemExit) as err:  # the flow body's own failure
            errors.append(one_line(f"{lf.ref.path}: flow {lf.name!r}: {_exc_text(err)}"))
    return FileReport(tuple(flows), tuple(errors))


def describe_flow(loaded: LoadedFlow) -> FlowInfo:
    """Describe one flow, building its graph with the default parameters.

    Raises:
        UserError: the graph is invalid (file:line where known), or a scheduled flow has a
            parameter without a default that survives JSON.
    """
    definition = loaded.definition
    timing = definition.timing
    clock = timing.schedule
    scheduled = clock is not None or bool(timing.datasets)
    params, required = _defaults(loaded, scheduled)
    dag = None if required else loaded.build()
    return FlowInfo(
        name=loaded.name,
        path=loaded.ref.path,
        module=loaded.ref.module,
        code_hash=loaded.ref.code_hash,
        description=str(getattr(definition, "description", "") or ""),
        cron=clock.cron if clock is not None else None,
        every_seconds=clock.every.total_seconds() if clock and clock.every is not None else None,
        timezone=clock.timezone if clock is not None else timing.timezone,
        start_date=_to_iso(clock.start_date) if clock is not None else None,
        end_date=_to_iso(clock.end_date) if clock is not None else None,
        catchup=timing.catchup,
        max_active_runs=timing.max_active_runs,
        datasets=tuple(d.uri for d in timing.datasets),
        params=params,
        tasks=None if dag is None else _tasks(dag),
        upstream={} if dag is None else {tid: dag.tasks[tid].upstream for tid in dag.order},
    )


def _defaults(loaded: LoadedFlow, scheduled: bool) -> tuple[dict[str, Any], list[str]]:
    """The defaults that survive JSON, in the form the store keeps (no secret in clear), and the
    names of parameters without a default.

    Raises:
        DefinitionError: *scheduled* and a parameter has no such default.
    """
    defaults: dict[str, Any] = {}
    required: list[str] = []
    for spec in loaded.definition.params:
        # as the store keeps it: a Secret as its reference, another secret as "the default"
        value = stored_params({spec.name: spec.default}, {spec.name: spec.default})[spec.name]
        if spec.default is not REQUIRED and _json_safe(value):
            defaults[spec.name] = value
            continue
        if scheduled:
            what = "a default" if spec.default is REQUIRED else "a JSON default"
            raise DefinitionError(
                f"scheduled flow {loaded.name!r} needs {what} for parameter {spec.name!r}",
                file=loaded.ref.path,
                line=_first_line(loaded),
            )
        if spec.default is REQUIRED:
            required.append(spec.name)
    return defaults, required


def _json_safe(value: object) -> bool:
    """Whether *value* comes back equal from a JSON round trip (a tuple does not)."""
    try:
        return bool(json.loads(json.dumps(value, allow_nan=False)) == value)
    except (TypeError, ValueError, RecursionError):
        return False


def _tasks(dag: Dag) -> tuple[tuple[str, str, str], ...]:
    return tuple((tid, dag.tasks[tid].op.kind, dag.tasks[tid].op.code_hash()) for tid in dag.order)


def _first_line(loaded: LoadedFlow) -> int | None:
    """The line a ``@flow`` function starts on (None for a ``with Flow`` block)."""
    code = getattr(getattr(loaded.definition, "fn", None), "__code__", None)
    line = getattr(code, "co_firstlineno", None)
    return line if isinstance(line, int) else None


def _to_iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _exc_text(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}" if str(err) else type(err).__name__


def _private_stdout() -> int:
    """Keep the real stdout on a new descriptor for the report; send fd 1 to stderr."""
    sys.stdout.flush()
    report_fd = os.dup(1)  # not inherited by processes the flow file starts
    os.dup2(2, 1)
    return report_fd


def main(argv: Sequence[str]) -> NoReturn:
    """Parse the file named in *argv*, write its report, and exit without running exit hooks.

    Exits 2 when *argv* does not name one file; 0 otherwise, even when the file is bad.
    """
    report_fd = _private_stdout()
    if len(argv) != 1:
        print("usage: python -m rota.engine.parse_worker FILE", file=sys.stderr)
        sys.stderr.flush()
        os._exit(2)
    try:
        report = describe_file(Path(argv[0]))
    except BaseException as err:  # the file's code may raise anything; a report still goes out
        report = FileReport(errors=(one_line(f"{argv[0]}: {_exc_text(err)}"),))
    line = json.dumps(report.to_json()) + "\n"
    sys.stdout.flush()
    sys.stderr.flush()
    with os.fdopen(report_fd, "w", encoding="utf-8") as out:
        out.write(line)
    # Threads or atexit hooks the flow file left behind must not keep this process alive.
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1:])
