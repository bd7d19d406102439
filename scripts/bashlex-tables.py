"""Write src/rota/model/bashlex_tables.json: bashlex's LALR tables, built by bashlex's own builder.

Run it after changing the bashlex version (tests/model/test_bashgrammar.py says when).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import bashlex.parser
from bashlex import yacc

from rota.model.bashgrammar import TABLES, tables_of


def main() -> None:
    fresh = yacc.yacc(module=bashlex.parser, debug=False, write_tables=False)
    target = Path(__file__).resolve().parents[1] / "src" / "rota" / "model" / TABLES
    target.write_text(json.dumps(tables_of(fresh, fresh.productions), sort_keys=True) + "\n")
    print(f"wrote {target.relative_to(Path.cwd())}", file=sys.stderr)


if __name__ == "__main__":
    main()
