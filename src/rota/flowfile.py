"""Importing a flow file as a module under a stable name, in the CLI and in every worker alike.

The name is a pure function of the file's absolute path, so objects pickled by reference in one
process (task functions, classes defined in the flow file) unpickle in another.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType


def module_name_for(path: Path) -> str:
    """The module name a flow file is imported under."""
    resolved = path.resolve()
    tag = hashlib.blake2b(str(resolved).encode(), digest_size=4).hexdigest()
    stem = "".join(c if c.isalnum() else "_" for c in resolved.stem)
    return f"rota_flow_{stem}_{tag}"


def import_flow_file(path: Path, *, reload: bool = False) -> ModuleType:
    """Import *path* (once per process unless *reload*) and return the module.

    The file's folder goes at the end of ``sys.path`` so a flow file can import its sibling
    modules, but no file beside it takes the place of an installed module.
    Exceptions raised by the file's own code propagate unchanged; callers turn them into
    :class:`~rota.errors.FlowLoadError` with the file and line.
    """
    path = path.resolve()
    name = module_name_for(path)
    if not reload and name in sys.modules:
        return sys.modules[name]
    folder = str(path.parent)
    if folder not in sys.path:  # last: a file beside the flow never shadows a module installed
        sys.path.append(folder)  # (a flow folder holding numbers.py or json.py)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module
