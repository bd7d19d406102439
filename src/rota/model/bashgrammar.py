"""bashlex, with its parse tables read from a file shipped with Rota instead of rebuilt at import.

bashlex builds its LALR tables from its grammar every time it is imported (its copy of PLY has no
table cache): half a second, more on a loaded machine, paid by every ``rota`` command and every
scheduler parse of a flow file that holds a shell template. :func:`bashlex` imports it once with
the table builder swapped for one that takes the tables from ``bashlex_tables.json`` when they were
made from the same grammar (a digest of its productions decides), and builds them as usual
otherwise. The file is made by bashlex's own builder (``scripts/bashlex-tables.py``); a test checks
that it equals a fresh build. Reading it is the only thing done differently: what parses is bashlex.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import sys
from importlib import resources
from types import ModuleType
from typing import Any, Final

TABLES: Final = "bashlex_tables.json"


def grammar_digest(productions: Any) -> str:
    """A digest of a grammar's productions, in order (what the tables are made from)."""
    text = "\n".join(str(p) for p in productions)
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def _shipped() -> dict[str, Any] | None:
    try:
        raw = resources.files("rota.model").joinpath(TABLES).read_text(encoding="utf-8")
        found: dict[str, Any] = json.loads(raw)
    except (OSError, ValueError):
        return None
    return found


def bashlex() -> ModuleType:
    """The ``bashlex`` package, imported (the first time) with its tables read from the file."""
    if "bashlex.parser" in sys.modules:
        return sys.modules["bashlex"]
    # The package's __init__ imports the parser, which builds the tables: make the package's
    # module first without running it, patch its yacc, then run it.
    spec = importlib.util.find_spec("bashlex")
    if spec is None or spec.loader is None:
        raise ImportError("bashlex is not installed (pip install bashlex)")
    package = importlib.util.module_from_spec(spec)
    sys.modules["bashlex"] = package
    try:
        yacc = importlib.import_module("bashlex.yacc")
        _patch_and_run(yacc, package, spec.loader)
    except BaseException:
        for name in [n for n in sys.modules if n == "bashlex" or n.startswith("bashlex.")]:
            del sys.modules[name]
        raise
    return package


def _patch_and_run(yacc: Any, package: ModuleType, loader: Any) -> None:
    """Run bashlex's package code with *yacc*'s table builder reading the shipped tables."""
    shipped = _shipped()
    built = yacc.LRTable

    class ShippedTable(built):  # type: ignore[misc, valid-type]
        def __init__(self, grammar: Any, log: Any = None) -> None:
            if shipped is None or shipped.get("digest") != grammar_digest(grammar.Productions):
                super().__init__(grammar, log)
                return
            self.grammar = grammar
            self.log = log or yacc.NullLogger()
            self.lr_action = _states(shipped["action"])
            self.lr_goto = _states(shipped["goto"])
            self.lr_productions = grammar.Productions
            self.sr_conflicts: list[Any] = []
            self.rr_conflicts: list[Any] = []
            self.conflicts: list[Any] = []

    yacc.LRTable = ShippedTable
    try:
        loader.exec_module(package)
    finally:
        yacc.LRTable = built


def _states(table: dict[str, dict[str, int]]) -> dict[int, dict[str, int]]:
    return {int(state): dict(row) for state, row in table.items()}


def tables_of(parser: Any, productions: Any) -> dict[str, Any]:
    """What :data:`TABLES` holds for a bashlex parser built from *productions*."""
    return {
        "digest": grammar_digest(productions),
        "action": {str(s): dict(row) for s, row in parser.action.items()},
        "goto": {str(s): dict(row) for s, row in parser.goto.items()},
    }
