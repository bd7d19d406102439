"""Start-up facts (never times): which modules `rota --help`, `import rota` and a one-task
`rota run` load, in a fresh interpreter each."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

HEAVY = ("rich", "sqlalchemy", "alembic", "cloudpickle", "jinja2", "croniter", "bashlex", "fsspec")
"""Libraries the command line loads only inside the commands that use them."""

_PROBE = """
import atexit, json, sys

def _report():
    sys.stderr.write("\\nMODULES " + json.dumps(sorted(sys.modules)) + "\\n")

atexit.register(_report)
{body}
"""


def _modules(body: str, tmp_path: Path, env: dict[str, str] | None = None) -> set[str]:
    """The modules a fresh interpreter holds when *body* ends (it may end by SystemExit)."""
    code = _PROBE.format(body=textwrap.dedent(body))
    run_env = {**os.environ, "ROTA_HOME": str(tmp_path / "home"), **(env or {})}
    run_env.pop("ROTA_DATABASE_URL", None)
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=run_env,
        timeout=120,
        check=False,
    )
    marker = [ln for ln in proc.stderr.splitlines() if ln.startswith("MODULES ")]
    assert marker, proc.stderr
    return set(json.loads(marker[-1].removeprefix("MODULES ")))


def _top(modules: set[str]) -> set[str]:
    return {name.split(".")[0] for name in modules}


def test_importing_the_command_line_loads_no_heavy_library(tmp_path: Path) -> None:
    loaded = _modules("import rota.cli.main", tmp_path)
    assert "rota.cli.main" in loaded
    assert _top(loaded) & set(HEAVY) == set()


def test_rota_help_loads_no_heavy_library_nor_the_engine(tmp_path: Path) -> None:
    loaded = _modules(
        """
        import sys
        sys.argv = ["rota", "--help"]
        from rota.cli.main import main
        main()
        """,
        tmp_path,
    )
    assert "click.formatting" in loaded  # the help was printed
    assert _top(loaded) & set(HEAVY) == set()
    assert {m for m in loaded if m.startswith(("rota.engine.", "rota.store."))} <= {
        "rota.engine.session",  # open_store's thin wrapper: it imports the store when called
        "rota.engine.stats",  # DEFAULT_LAST for `rota stats --last`
        "rota.engine.backfillopts",  # the values `rota backfill` offers
    }
    assert not (tmp_path / "home").exists()  # --help opens no store


def test_import_rota_loads_only_what_a_name_needs(tmp_path: Path) -> None:
    loaded = _modules("import rota", tmp_path)
    assert {m for m in loaded if m.startswith("rota")} == {"rota"}
    loaded = _modules("from rota import flow, task", tmp_path)
    assert "rota.api" in loaded and "rota.operators.python" in loaded
    assert "rota.notifiers" not in loaded and "rota.operators.sensors" not in loaded


@pytest.mark.parametrize("name", __import__("rota").__all__)
def test_every_public_name_is_the_object_of_its_module(name: str) -> None:
    import importlib

    import rota

    value = getattr(rota, name)
    if name == "cache":
        assert value is importlib.import_module("rota.cache")
    else:
        assert value is getattr(importlib.import_module(rota._HOME[name]), name)
    assert name in dir(rota)


def test_an_unknown_name_is_an_attribute_error() -> None:
    import rota

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        rota.nope  # noqa: B018


def test_a_run_on_a_new_store_or_one_at_head_does_not_import_alembic(tmp_path: Path) -> None:
    (tmp_path / "f.py").write_text(
        textwrap.dedent(
            """
            from rota import flow, task

            @task
            def one() -> int:
                return 1

            @flow
            def demo():
                one()
            """
        )
    )
    run = """
    import sys
    sys.argv = ["rota", "run", "f.py"]
    from rota.cli.main import main
    main()
    """
    first = _modules(run, tmp_path, {"ROTA_WORKERS": "1"})
    assert "rota.store.fresh" in first  # a new store: the head revision's tables at once
    assert "alembic" not in _top(first)
    assert (tmp_path / "home" / "rota.db").exists()
    again = _modules(run, tmp_path, {"ROTA_WORKERS": "1"})
    assert "sqlalchemy" in _top(again)
    assert "alembic" not in _top(again)  # already at head: one cheap read of the revision
    assert {"jinja2", "bashlex", "croniter"} & _top(again) == set()  # no template, shell, cron
    assert "fsspec" not in _top(first) | _top(again)  # a local artifact folder: plain files
