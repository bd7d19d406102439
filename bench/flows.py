"""The performance suite's workload flows (see bench/README.md).

Each flow is a module-level ``@flow`` whose size is a parameter with the suite's default, so
``rota run bench/flows.py:f2k`` runs the suite's F2K and ``rota run bench/flows.py:f2k -p n=50``
a small one; the tests build them at tiny sizes the same way (``f2k.build({"n": 5})``).

- ``w1``: a chain of ``n`` (200) no-op tasks, ordering edges (``a >> b``).
- ``w2``: root -> ``n`` (1,000) independent no-ops -> join.
- ``w3``: extract -> clean -> features -> train -> evaluate -> deploy, a list of 10,000 floats
  passed along through data edges (the peers' step functions).
- ``f2k`` / ``f10k``: root -> ``n`` (2,000 / 10,000) leaves, each returning a small int (its
  index) -> a join that receives every leaf's value (a data edge from each leaf) and sums them.
- ``s1`` / ``s2``: ``layers`` x ``width`` no-ops (100 x 100 / 1,000 x 100); task i of layer k
  depends on tasks i and (i + 1) % width of layer k - 1 (as L10K in run.py).
- ``m1``: a task returning ``list(range(n))`` (10,000), a no-op mapped over it with ``.map``, and
  a join receiving the mapped results in order.
- ``l1``: a chain of ``n`` (200) no-ops; the suite reads each upstream's commit time and its
  downstream's start time from the attempt rows.
- ``one``: a single no-op task (the start-up figure of a one-task ``rota run``).
"""

from __future__ import annotations

from rota import PythonTask, flow, task
from rota.model.builder import TaskNode

N_FLOATS = 10_000


def noop() -> None:
    """A task that does nothing."""


# --- W1, L1, W2 ----------------------------------------------------------------------------------
def chain(n: int) -> None:
    """A linear chain of *n* no-op tasks (ordering edges)."""
    prev = PythonTask("step_0", noop)
    for i in range(1, n):
        prev = prev >> PythonTask(f"step_{i}", noop)


@flow(name="w1")
def w1(n: int = 200) -> None:
    """A linear chain of n no-op tasks."""
    chain(n)


@flow(name="l1")
def l1(n: int = 200) -> None:
    """A linear chain of n no-op tasks, for the commit-to-start latency."""
    chain(n)


@flow(name="w2")
def w2(n: int = 1000) -> None:
    """root -> n independent no-ops -> join (ordering edges, no values)."""
    root = PythonTask("root", noop)
    end = PythonTask("join", noop)
    for i in range(n):
        root >> PythonTask(f"leaf_{i}", noop) >> end


# --- W3 ------------------------------------------------------------------------------------------
@task
def extract() -> list[float]:
    return [i * 0.001 for i in range(N_FLOATS)]


@task
def clean(xs: list[float]) -> list[float]:
    return [x if x == x else 0.0 for x in xs]  # noqa: PLR0124 (NaN -> 0.0, as the peers)


@task
def features(xs: list[float]) -> list[float]:
    return [x * 2.0 + 1.0 for x in xs]


@task
def train(xs: list[float]) -> list[float]:
    w = sum(xs) / len(xs)
    return [x * w for x in xs]


@task
def evaluate(xs: list[float]) -> list[float]:
    return [x * 0.5 for x in xs]


@task
def deploy(xs: list[float]) -> dict[str, float]:
    assert len(xs) == N_FLOATS
    return {"n": len(xs), "checksum": round(sum(xs), 6)}


@flow(name="w3")
def w3() -> None:
    """Six steps passing a list of N_FLOATS floats through data edges."""
    deploy(evaluate(train(features(clean(extract())))))


# --- F2K, F10K -----------------------------------------------------------------------------------
@task
def leaf(i: int) -> int:
    """A fan-out leaf: returns a small int (its index)."""
    return i


@task
def total(xs: list[int]) -> int:
    """The fan-out's join: receives every leaf's value, in order (it fails if one is missing)."""
    assert xs == list(range(len(xs)))
    return sum(xs)


def fanout(n: int) -> None:
    """root -> n leaves returning small ints -> a join summing them (``total``)."""
    root = PythonTask("root", noop)
    leaves: list[TaskNode] = [leaf(i, task_id=f"leaf_{i}") for i in range(n)]
    root >> leaves
    total(leaves, task_id="join")


@flow(name="f2k")
def f2k(n: int = 2000) -> None:
    """Fan-out of n leaves returning small ints."""
    fanout(n)


@flow(name="f10k")
def f10k(n: int = 10_000) -> None:
    """Fan-out of n leaves returning small ints."""
    fanout(n)


# --- S1, S2 --------------------------------------------------------------------------------------
def layered(layers: int, width: int) -> None:
    """layers x width no-ops; t_k_i depends on t_{k-1}_i and t_{k-1}_{(i+1) % width}."""
    prev = [PythonTask(f"t_0_{i}", noop) for i in range(width)]
    for k in range(1, layers):
        layer = [PythonTask(f"t_{k}_{i}", noop) for i in range(width)]
        for i, node in enumerate(layer):
            [prev[i], prev[(i + 1) % width]] >> node
        prev = layer


@flow(name="s1")
def s1(layers: int = 100, width: int = 100) -> None:
    """10,000 tasks in 100 layers of 100."""
    layered(layers, width)


@flow(name="s2")
def s2(layers: int = 1000, width: int = 100) -> None:
    """100,000 tasks in 1,000 layers of 100."""
    layered(layers, width)


# --- M1 ------------------------------------------------------------------------------------------
@task
def items(n: int) -> list[int]:
    """The list the mapped task fans out over."""
    return list(range(n))


@task
def one_item(x: int) -> int:
    """A mapped instance: returns its element."""
    return x


@task
def collect(xs: list[int]) -> int:
    """Receives every mapped result, in order (it fails if one is missing)."""
    assert xs == list(range(len(xs)))
    return len(xs)


@flow(name="m1")
def m1(n: int = 10_000) -> None:
    """One task mapped over n elements at run time."""
    collect(one_item.map(items(n)), task_id="join")


# --- one task ------------------------------------------------------------------------------------
@flow(name="one")
def one() -> None:
    """A single no-op task."""
    PythonTask("only", noop)
