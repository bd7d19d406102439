"""The suite's printed table: each Rota figure beside the floor and the peers, with the ratios,
and the issue's acceptance targets, each PASS or MISS (or n/a when it was not measured)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

Rec = dict[str, Any]
GIB_MIB = 1024.0


def find(recs: Iterable[Rec], tool: str, workload: str, mode: str | None = None) -> Rec | None:
    """The record of *tool* on *workload* (in *mode*, when given)."""
    for r in recs:
        same = r.get("tool") == tool and r.get("workload") == workload
        if same and (mode is None or r.get("mode") == mode):
            return r
    return None


def floor_for(recs: Iterable[Rec], wl_key: str) -> Rec | None:
    """The floor's record that matches the fan-out *wl_key* (F2K -> N=2000, F10K -> N=10000)."""
    n = {"F2K": 2000, "F10K": 10_000}.get(wl_key)
    return None if n is None else find(recs, "floor", f"fanout-{n}")


def _rss(r: Rec) -> str:
    parts = [f"runner {r['rss_runner_mib']:.0f}"] if "rss_runner_mib" in r else []
    if r.get("rss_worker_mib"):
        parts.append(f"worker {r['rss_worker_mib']:.0f}")
    return f"RSS MiB {', '.join(parts)}" if parts else ""


def cpu_per_task(r: Rec) -> float | None:
    """All the CPU ms per task of a record: runner plus workers, or the whole process's."""
    if "cpu_runner_ms_per_task" in r:
        return float(r["cpu_runner_ms_per_task"]) + float(r["cpu_workers_ms_per_task"])
    return float(r["cpu_ms_per_task"]) if "cpu_ms_per_task" in r else None


def _cpu(r: Rec) -> str:
    """CPU time per task: what a loaded machine's wall times cannot hide."""
    if "cpu_runner_ms_per_task" in r:
        return (
            f"CPU ms/task runner {r['cpu_runner_ms_per_task']:.3f} + "
            f"workers {r['cpu_workers_ms_per_task']:.3f}"
        )
    return f"CPU {r['cpu_ms_per_task']:.3f} ms/task" if "cpu_ms_per_task" in r else ""


def _latency(r: Rec) -> str:
    if "latency_p50_ms" not in r:
        return ""
    text = f"commit->start p50 {r['latency_p50_ms']:.3f} ms, p99 {r['latency_p99_ms']:.3f} ms"
    if "latency_finish_p50_ms" in r:
        text += (
            f"; end->start p50 {r['latency_finish_p50_ms']:.3f} ms, "
            f"p99 {r['latency_finish_p99_ms']:.3f} ms"
        )
    if r["latency_p50_ms"] < 0:
        text += " (negative: a downstream starts before its upstream's success is committed)"
    return text


def rota_line(r: Rec, recs: Sequence[Rec]) -> str:
    """One row: Rota's figure, then the floor and each peer beside it with the ratio."""
    mode = str(r["mode"])
    cells = [f"{r['workload']} {mode}"]
    if "ms_per_task" in r:
        cells.append(f"Rota {r['ms_per_task']:.3f} ms/task ({r['s']:.3f} s, n={r['n_runs']})")
    else:
        cells.append(f"Rota {r['s']:.3f} s (median of {r['n_runs']})")
    fl = floor_for(recs, str(r["workload"]))
    if fl is not None and "ms_per_task" in r:
        cells.append(f"floor {fl['ms_per_task']:.3f} ({r['ms_per_task'] / fl['ms_per_task']:.1f}x)")
        rota_cpu, floor_cpu = cpu_per_task(r), cpu_per_task(fl)
        if rota_cpu and floor_cpu:
            ratio = rota_cpu / floor_cpu
            cells.append(f"CPU/task Rota {rota_cpu:.3f} vs floor {floor_cpu:.3f} ({ratio:.1f}x)")
    for p in recs:
        if p.get("workload") == r["workload"] and p["tool"] not in ("rota", "floor") and "s" in p:
            peer_ms = p["whole_ms_per_task"] if mode == "whole-process" else p["ms_per_task"]
            cells.append(
                f"{p['tool'].capitalize()} {peer_ms:.3f} ({_faster(r['ms_per_task'], peer_ms)})"
            )
    cells += [c for c in (_latency(r), _cpu(r), _rss(r)) if c]
    cells.append("ok" if r.get("ok") else "NOT OK")
    return " | ".join(cells)


def _faster(rota_ms: float, peer_ms: float) -> str:
    if rota_ms <= 0 or peer_ms <= 0:
        return "n/a"
    if peer_ms >= rota_ms:
        return f"Rota {peer_ms / rota_ms:.1f}x faster"
    return f"Rota {rota_ms / peer_ms:.1f}x slower"


@dataclass(frozen=True)
class Target:
    text: str
    measure: Callable[[Sequence[Rec]], tuple[float, str] | None]
    """The figure (and how it is printed), or None when it was not measured."""
    passes: Callable[[float], bool]


def _get(recs: Sequence[Rec], tool: str, wl: str, mode: str | None, key: str) -> float | None:
    r = find(recs, tool, wl, mode)
    if r is None or key not in r or not r.get("ok", True):
        return None
    return float(r[key])


def _ratio(a: float | None, b: float | None, fmt: str) -> tuple[float, str] | None:
    if a is None or b is None or b == 0:
        return None
    return a / b, fmt.format(a / b)


def _fig(v: float | None, fmt: str) -> tuple[float, str] | None:
    return None if v is None else (v, fmt.format(v))


def _f2k_floor(recs: Sequence[Rec]) -> tuple[float, str] | None:
    fl = floor_for(recs, "F2K")
    rota = _get(recs, "rota", "F2K", "whole-process", "ms_per_task")
    return _ratio(rota, None if fl is None else float(fl["ms_per_task"]), "{:.1f}x the floor")


def _f2k_luigi(recs: Sequence[Rec]) -> tuple[float, str] | None:
    luigi = _get(recs, "luigi", "F2K", None, "whole_ms_per_task")
    rota = _get(recs, "rota", "F2K", "whole-process", "ms_per_task")
    return _ratio(luigi, rota, "Rota {:.1f}x faster")


def _s2_ok(recs: Sequence[Rec]) -> tuple[float, str] | None:
    r = find(recs, "rota", "S2", "in-run")
    return None if r is None else (1.0 if r.get("ok") else 0.0, "ok" if r.get("ok") else "not ok")


def _s2_s1(recs: Sequence[Rec]) -> tuple[float, str] | None:
    s2 = _get(recs, "rota", "S2", "in-run", "s")
    return _ratio(s2, _get(recs, "rota", "S1", "in-run", "s"), "{:.2f}")


def _s2_rss(recs: Sequence[Rec]) -> tuple[float, str] | None:
    return _fig(_get(recs, "rota", "S2", "in-run", "rss_runner_mib"), "{:.0f} MiB")


def _ms(wl: str, mode: str, key: str = "ms_per_task") -> Callable[[Sequence[Rec]], Any]:
    return lambda recs: _fig(_get(recs, "rota", wl, mode, key), "{:.3f} ms")


def _sec(wl: str) -> Callable[[Sequence[Rec]], Any]:
    return lambda recs: _fig(_get(recs, "rota", wl, "whole-process", "s"), "{:.3f} s")


TARGETS: tuple[Target, ...] = (
    Target("F2K whole process within 4x of the floor", _f2k_floor, lambda v: v <= 4),
    Target("F2K whole process >= 10x faster than Luigi (1 worker)", _f2k_luigi, lambda v: v >= 10),
    Target("W2 in-run <= 0.15 ms/task", _ms("W2", "in-run"), lambda v: v <= 0.15),
    Target("W1 in-run <= 0.3 ms/task", _ms("W1", "in-run"), lambda v: v <= 0.3),
    Target(
        "L1 upstream end -> downstream start p50 <= 1 ms (in-run; a downstream does not wait for "
        "its upstream's commit, so commit->start, printed beside it, is negative)",
        _ms("L1", "in-run", "latency_finish_p50_ms"),
        lambda v: 0 <= v <= 1,
    ),
    Target("M1 in-run <= 0.3 ms per mapped instance", _ms("M1", "in-run"), lambda v: v <= 0.3),
    Target("S2 (100,000 tasks) completes", _s2_ok, lambda v: v == 1.0),
    Target("time(S2) / time(S1) <= 11 (in-run)", _s2_s1, lambda v: v <= 11),
    Target("S2 runner peak RSS <= 1 GiB (in-run)", _s2_rss, lambda v: v <= GIB_MIB),
    Target("`rota --help` whole process <= 0.15 s", _sec("rota --help"), lambda v: v <= 0.15),
    Target("one-task `rota run` <= 0.4 s", _sec("one-task rota run"), lambda v: v <= 0.4),
)


def verdicts(recs: Sequence[Rec]) -> list[tuple[str, str, str]]:
    """(target, figure, PASS | MISS | n/a) for every acceptance target."""
    out = []
    for t in TARGETS:
        got = t.measure(recs)
        if got is None:
            out.append((t.text, "not measured", "n/a"))
        else:
            out.append((t.text, got[1], "PASS" if t.passes(got[0]) else "MISS"))
    return out


def table(recs: Sequence[Rec]) -> list[str]:
    """The printed lines: Rota's rows with the floor and peers beside them, then the targets."""
    lines = [rota_line(r, recs) for r in recs if r.get("tool") == "rota" and "s" in r]
    for fl in (r for r in recs if r.get("tool") == "floor"):
        lines.append(
            f"floor {fl['workload']} | {fl['ms_per_task']:.4f} ms/task ({fl['run_s']:.3f} s, "
            f"{fl['transactions']} transactions) | {_cpu(fl) or 'CPU n/a'} | "
            f"{'ok' if fl['ok'] else 'NOT OK'}"
        )
    for p in recs:
        if p.get("tool") not in ("rota", "floor") and "s" in p:
            lines.append(
                f"{p['tool']} {p['workload']} ({p['mode']}) | in-run {p['ms_per_task']:.3f} "
                f"ms/task | whole process {p['whole_ms_per_task']:.3f} ms/task "
                f"({p['whole_s']:.3f} s) | {_cpu(p) or 'CPU n/a'} (whole process) | "
                f"largest process {p['rss_largest_mib']:.0f} MiB | "
                f"{'ok' if p['ok'] else 'NOT OK'}"
            )
        elif "skipped" in p:
            lines.append(f"{p['tool']}: skipped ({p['skipped']})")
    lines += ["", "Acceptance targets (issue 14):"]
    lines += [f"  {v:<4}  {text}: {fig}" for text, fig, v in verdicts(recs)]
    return lines
