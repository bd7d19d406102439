"""The bashlex tables Rota ships are the ones bashlex builds, so reading them changes nothing."""

from __future__ import annotations

import json
import subprocess
import sys

from rota.model import bashgrammar

DUMP = """
import json, sys
{load}
import bashlex.parser as P
print(json.dumps({{"action": {{str(k): dict(v) for k, v in P.yaccparser.action.items()}},
                  "goto": {{str(k): dict(v) for k, v in P.yaccparser.goto.items()}}}}))
"""


def _tables(load: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", DUMP.format(load=load)], capture_output=True, text=True, check=True
    )
    parsed: dict[str, object] = json.loads(done.stdout)
    return parsed


def test_the_shipped_tables_equal_a_fresh_build_by_bashlex() -> None:
    import bashlex.parser
    from bashlex import yacc

    fresh = yacc.yacc(module=bashlex.parser, debug=False, write_tables=False)
    shipped = bashgrammar._shipped()
    assert shipped is not None
    # if this fails after a bashlex upgrade, run scripts/bashlex-tables.py
    assert shipped == bashgrammar.tables_of(fresh, fresh.productions)


def test_a_parser_from_the_shipped_tables_is_the_parser_bashlex_makes() -> None:
    plain = _tables("")
    read = _tables("from rota.model.bashgrammar import bashlex; bashlex()")
    assert read == plain
    assert read["action"]  # the dump holds the tables, not nothing


def test_bashlex_is_imported_once_and_parses() -> None:
    first = bashgrammar.bashlex()
    assert bashgrammar.bashlex() is first
    (node,) = first.parse("echo a | grep b")
    assert node.kind == "pipeline"
