"""A layered left-to-right layout of a graph (Sugiyama style), computed on the server.

1. Layers: a task's layer is the length of the longest path to it from a root.
2. Order within layers: a few sweeps that place each task at the mean position (barycenter) of
   its neighbours in the layer before (left to right) or after (right to left), which removes
   most edge crossings.
3. Coordinates: layers are columns, positions rows; edges are drawn as curves between columns.

Linear in the edges per sweep, so a 10,000-task graph lays out in well under a second.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Final

NODE_W: Final = 150
NODE_H: Final = 28
GAP_X: Final = 60
GAP_Y: Final = 14
PAD: Final = 10
SWEEPS: Final = 4


@dataclass(frozen=True, slots=True)
class Node:
    """A task's box: its id, layer, row and top-left corner."""

    id: str
    layer: int
    row: int
    x: int
    y: int


@dataclass(frozen=True, slots=True)
class Edge:
    """An edge's SVG path, from the right side of *source* to the left side of *target*."""

    source: str
    target: str
    d: str


@dataclass(frozen=True, slots=True)
class Layout:
    """Boxes, edges and the drawing's size."""

    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]
    width: int
    height: int


def _layers(tasks: Sequence[str], upstream: dict[str, tuple[str, ...]]) -> dict[str, int]:
    """Longest-path layering; tasks whose upstreams are not in the graph start at layer 0."""
    layer: dict[str, int] = {}
    pending = {tid: [u for u in upstream.get(tid, ()) if u in upstream] for tid in tasks}
    down: dict[str, list[str]] = {tid: [] for tid in tasks}
    for tid, ups in pending.items():
        for up in ups:
            down[up].append(tid)
    left = {tid: len(ups) for tid, ups in pending.items()}
    ready = [tid for tid in tasks if left[tid] == 0]
    while ready:
        tid = ready.pop()
        layer[tid] = max((layer[u] + 1 for u in pending[tid]), default=0)
        for d in down[tid]:
            left[d] -= 1
            if left[d] == 0:
                ready.append(d)
    for tid in tasks:  # a cycle cannot be stored, but a corrupt row could hold one
        layer.setdefault(tid, 0)
    return layer


def _barycenter(tid: str, near: Mapping[str, Sequence[str]], pos: dict[str, float]) -> float:
    others = [pos[o] for o in near.get(tid, ()) if o in pos]
    return sum(others) / len(others) if others else pos[tid]


def _order(
    columns: list[list[str]], upstream: dict[str, tuple[str, ...]], down: dict[str, list[str]]
) -> None:
    """Reorder each column in place by barycenter sweeps."""
    pos: dict[str, float] = {}
    for col in columns:
        pos.update((tid, float(i)) for i, tid in enumerate(col))
    for sweep in range(SWEEPS):
        forward = sweep % 2 == 0
        near: Mapping[str, Sequence[str]] = upstream if forward else down
        for col in columns[1:] if forward else list(reversed(columns[:-1])):
            col.sort(key=partial(_barycenter, near=near, pos=pos))
            pos.update((tid, float(i)) for i, tid in enumerate(col))


def layout(graph: Sequence[tuple[str, tuple[str, ...]]]) -> Layout:
    """Lay out *graph*: ``(task id, upstream ids)`` pairs."""
    tasks = [tid for tid, _ in graph]
    upstream = {tid: tuple(u for u in ups if u != tid) for tid, ups in graph}
    layer = _layers(tasks, upstream)
    columns: list[list[str]] = [[] for _ in range(max(layer.values(), default=-1) + 1)]
    for tid in tasks:
        columns[layer[tid]].append(tid)
    down: dict[str, list[str]] = {tid: [] for tid in tasks}
    for tid in tasks:
        for up in upstream[tid]:
            if up in down:
                down[up].append(tid)
    _order(columns, upstream, down)
    nodes: dict[str, Node] = {}
    for li, col in enumerate(columns):
        for ri, tid in enumerate(col):
            x, y = PAD + li * (NODE_W + GAP_X), PAD + ri * (NODE_H + GAP_Y)
            nodes[tid] = Node(tid, li, ri, x, y)
    edges = [_edge(nodes[up], nodes[tid]) for tid in tasks for up in upstream[tid] if up in nodes]
    rows = max((len(c) for c in columns), default=0)
    width = PAD * 2 + max(len(columns), 1) * (NODE_W + GAP_X) - GAP_X
    height = PAD * 2 + max(rows, 1) * (NODE_H + GAP_Y) - GAP_Y
    return Layout(tuple(nodes[t] for t in tasks), tuple(edges), width, height)


def _edge(a: Node, b: Node) -> Edge:
    x1, y1 = a.x + NODE_W, a.y + NODE_H // 2
    x2, y2 = b.x, b.y + NODE_H // 2
    mid = (x1 + x2) // 2
    return Edge(a.id, b.id, f"M{x1},{y1} C{mid},{y1} {mid},{y2} {x2},{y2}")
