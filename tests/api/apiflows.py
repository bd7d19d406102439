"""Flows the API tests run from Python, defined at a module's top level (a resume loads them
again from this file)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rota import Flow, PythonTask, ShellTask, Skip, flow, task


class Model:
    """A class of this module: its instances are stored with pickle."""

    def __init__(self, weights: list[float]) -> None:
        self.weights = weights

    def predict(self, x: float) -> float:
        return sum(w * x for w in self.weights)


@task
def extract(n: int) -> list[int]:
    return list(range(n))


@task
def square(x: int) -> int:
    return x * x


@task
def fit(xs: list[int], threshold: float) -> Model:
    return Model([threshold * x for x in xs])


@task
def evaluate(model: Model, squares: list[int]) -> dict[str, float]:
    return {"score": model.predict(1.0) + sum(squares)}


@flow
def ml_pipeline(n: int = 3, threshold: float = 0.5) -> None:
    xs = extract(n)
    evaluate(fit(xs, threshold), square.map(xs))


@task
def maybe_fail(marker: str) -> str:
    if marker and Path(marker).exists():
        raise ValueError(f"the marker {Path(marker).name} is there")
    return "fine"


@task
def after(value: str) -> str:
    return value + "!"


@flow
def flaky(marker: str = "") -> None:
    after(maybe_fail(marker))


def _double(x: int) -> int:
    return 2 * x


with Flow("ops") as ops:
    first = PythonTask("first", _double, args=(21,))
    echo = ShellTask("echo", "echo from-shell")
    first >> echo


@task
def skipper() -> None:
    raise Skip("nothing to do")


@task
def context_probe(ctx: Any) -> dict[str, Any]:
    return {
        "run_id": ctx.run_id,
        "logical_date": ctx.logical_date.isoformat(),
        "params": dict(ctx.params),
    }


@flow(schedule="@daily")
def daily(label: str = "d") -> None:
    context_probe()


@task
def counting(ctx: Any) -> int:
    """How many times it ran with this checkpoint: a checkpoint that persists adds one."""
    seen = (ctx.checkpoint.load() or 0) + 1
    ctx.checkpoint.save(seen)
    return int(seen)


@flow
def resumable() -> None:
    counting()
