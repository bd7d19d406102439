"""A mixed pipeline: shell steps and Python steps in one operator-style flow, joined with ``>>``.

``prepare`` and ``generate`` are shell commands (bash, with ``$WORK`` given through ``env=``);
the last line ``generate`` prints, the CSV's path, is its output and the argument of the Python
task ``summarize``; ``check`` fails the run if the data looks wrong; ``report`` is shell again.

    rota run examples/shell_and_python.py
    ROTA_EXAMPLE_DIR=/some/folder rota run examples/shell_and_python.py

A step in a container (an image run by podman, or a Kubernetes pod) arrives with ``ContainerTask``,
which is not built yet; until then a ``ShellTask`` can run ``podman run --rm IMAGE ...`` itself.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from rota import Flow, PythonTask, ShellTask

WORK = os.environ.get("ROTA_EXAMPLE_DIR") or os.path.join(tempfile.gettempdir(), "rota-example")


def summarize(csv_path: str) -> dict[str, float]:
    """Read the numbers the shell step wrote and summarise them."""
    values = [float(line.split(",")[1]) for line in Path(csv_path).read_text().splitlines()[1:]]
    summary = {"count": len(values), "total": sum(values), "mean": sum(values) / len(values)}
    print(f"summary: {summary}")
    return summary


def check(summary: dict[str, float]) -> str:
    """Fail loudly if the data looks wrong."""
    if summary["count"] != 100:
        raise ValueError(f"expected 100 rows, got {summary['count']}")
    return "ok"


with Flow("shell_and_python") as shell_and_python:
    prepare = ShellTask(
        "prepare", 'mkdir -p "$WORK" && echo "working in $WORK"', env={"WORK": WORK}
    )
    generate = ShellTask(
        "generate",
        'seq 1 100 | awk \'BEGIN{print "i,square"} {print $1","$1*$1}\' > "$WORK/squares.csv"'
        ' && wc -l "$WORK/squares.csv" >&2 && echo "$WORK/squares.csv"',
        env={"WORK": WORK},
    )
    stats = PythonTask("summarize", summarize, args=(generate,))
    verdict = PythonTask("check", check, args=(stats,))
    report = ShellTask("report", 'echo "pipeline finished in $WORK"', env={"WORK": WORK})
    prepare >> generate
    verdict >> report
