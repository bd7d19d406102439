"""Finding flows in files and folders, with one clear error per bad file.

A bad file (syntax error, import error, an exception at import, an invalid graph) gives an error
naming the file and, where Python knows it, the line. Loading a folder keeps every good flow.
"""

from __future__ import annotations

import hashlib
import traceback
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rota.engine.runner import FlowRef
from rota.errors import FlowLoadError, FlowNotFound, UserError
from rota.flowfile import import_flow_file, module_name_for
from rota.model.dag import Dag
from rota.model.flows import Flow, FlowDefinition, FlowFunction


@dataclass(frozen=True, slots=True)
class LoadedFlow:
    """A flow definition and where it came from."""

    definition: FlowDefinition
    ref: FlowRef

    @property
    def name(self) -> str:
        return self.definition.name

    def build(self, params: Mapping[str, Any] | None = None) -> Dag:
        """Build the graph, turning errors raised in the flow file into file:line errors.

        Raises:
            UserError: unknown parameters, an invalid graph, or an exception in the flow body.
        """
        path = Path(self.ref.path) if self.ref.path else None
        try:
            return self.definition.build(params)
        except UserError as err:
            if path is not None:
                err.locate(str(path), _line_in(err, path))
            raise
        except Exception as err:
            if path is None:
                raise
            line = _line_in(err, path)
            raise FlowLoadError(
                f"building flow {self.name!r} failed: {type(err).__name__}: {err}",
                file=str(path),
                line=line,
            ) from None


@dataclass
class LoadResult:
    """What loading a path found: good flows by name, and one error per bad file."""

    flows: dict[str, LoadedFlow] = field(default_factory=dict)
    errors: list[UserError] = field(default_factory=list)


def _line_in(err: BaseException, path: Path) -> int | None:
    line = None
    for frame in traceback.extract_tb(err.__traceback__):
        if Path(frame.filename).resolve() == path:
            line = frame.lineno
    return line


def _flow_files(path: Path) -> Iterator[Path]:
    if path.is_file():
        yield path
        return
    for p in sorted(path.rglob("*.py")):
        rel = p.relative_to(path).parts
        if any(part.startswith((".", "__")) for part in rel):
            continue
        yield p


def load_file(path: Path) -> list[LoadedFlow]:
    """Import one flow file and return the flows it defines at module level.

    Raises:
        FlowLoadError: the file cannot be imported (syntax error, import error, exception).
    """
    path = path.resolve()
    try:
        module = import_flow_file(path)
    except SyntaxError as err:
        raise FlowLoadError(f"syntax error: {err.msg}", file=str(path), line=err.lineno) from None
    except UserError as err:
        raise FlowLoadError(err.message, file=str(path), line=_line_in(err, path)) from None
    except KeyboardInterrupt:
        raise
    except BaseException as err:  # SystemExit too: a flow file calling exit() is a bad file
        msg = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
        raise FlowLoadError(
            f"import failed: {msg}", file=str(path), line=_line_in(err, path)
        ) from None
    code_hash = file_hash(path)
    found: dict[int, LoadedFlow] = {}
    for value in vars(module).values():
        if isinstance(value, Flow | FlowFunction) and id(value) not in found:
            ref = FlowRef(value.name, str(path), module_name_for(path), code_hash)
            found[id(value)] = LoadedFlow(value, ref)
    return list(found.values())


def file_hash(path: Path) -> str:
    """The code hash of a flow file: a digest of its bytes."""
    return hashlib.blake2b(path.read_bytes(), digest_size=16).hexdigest()


def in_memory(definition: FlowDefinition, path: Path | None) -> LoadedFlow:
    """A flow object already imported (``flow.run()`` from Python), defined in *path* if known.

    Its workers import nothing (the flow's module is loaded in this process already, and local
    workers are forked from it); *path* is recorded with the run so that a resume can load the
    code again from there.
    """
    if path is None:
        return LoadedFlow(definition, FlowRef(definition.name))
    return LoadedFlow(definition, FlowRef(definition.name, str(path), "", file_hash(path)))


def load_path(path: Path) -> LoadResult:
    """Load every flow under *path* (a file or a folder, searched recursively).

    Raises:
        FlowNotFound: *path* does not exist.
    """
    if not path.exists():
        raise FlowNotFound(f"no such file or folder: {path}")
    result = LoadResult()
    owners: dict[str, list[Path]] = {}
    for file in _flow_files(path):
        try:
            flows = load_file(file)
        except FlowLoadError as err:
            result.errors.append(err)
            continue
        for lf in flows:
            owners.setdefault(lf.name, []).append(file)
            result.flows.setdefault(lf.name, lf)
    for name, files in owners.items():
        if len(files) > 1:
            del result.flows[name]
            for f in files:
                others = ", ".join(str(o) for o in files if o != f)
                result.errors.append(
                    FlowLoadError(f"flow {name!r} is also defined in {others}", file=str(f))
                )
    return result


def resolve_target(target: str) -> LoadedFlow:
    """Find the flow named by ``PATH[:FLOW]``.

    Raises:
        FlowNotFound: no such path or flow, or several flows and no name given.
        FlowLoadError: the file cannot be loaded.
    """
    path_text, name = target, None
    if ":" in target and not Path(target).exists():
        path_text, name = target.rsplit(":", 1)
    path = Path(path_text)
    result = load_path(path)
    if name is None and path.is_file() and result.errors:
        raise result.errors[0]
    if name is not None:
        if name in result.flows:
            return result.flows[name]
        if result.errors:
            raise result.errors[0]
        known = ", ".join(sorted(result.flows)) or "none"
        raise FlowNotFound(f"no flow named {name!r} in {path} (flows: {known})")
    if len(result.flows) == 1:
        return next(iter(result.flows.values()))
    if not result.flows:
        raise FlowNotFound(f"no flow defined in {path}")
    known = ", ".join(sorted(result.flows))
    raise FlowNotFound(f"{path} defines several flows ({known}): name one as {path_text}:FLOW")
