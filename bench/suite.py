"""Rota's performance suite: every workload in-run and as a whole process, beside the floor and
the peers, with the issue's acceptance targets (see bench/README.md).

Usage: python bench/suite.py [--workload W1,F2K,...] [--quick] [--repeat N] [--json]
                             [--mode both|in-run|whole] [--peers luigi|all|none]
                             [--peers-dir DIR] [--peer-venvs DIR] [--only-peers]
                             [--write-results FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import shlex
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import floor  # the bench folder is not a package
import measure
import peers
import suitereport as report
from workloads import WORKLOADS

START = "START"  # the start-up figures: `rota --help` and a one-task `rota run`
KEYS = (*WORKLOADS, START)
REPO = Path(__file__).resolve().parent.parent
Rec = dict[str, Any]


def workload_list(text: str) -> list[str]:
    keys = [k.strip().upper() for k in text.split(",") if k.strip()]
    unknown = [k for k in keys if k not in KEYS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown workload {unknown[0]!r} ({', '.join(KEYS)})")
    return keys


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--workload",
        type=workload_list,
        default=list(KEYS),
        help=f"comma-separated, of {','.join(KEYS)} (default all)",
    )
    ap.add_argument("--quick", action="store_true", help="no S2, one measured run each")
    ap.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="measured runs after a warm-up (F10K, S1, S2 and M1: one run, no warm-up)",
    )
    ap.add_argument("--mode", choices=("both", "in-run", "whole"), default="both")
    ap.add_argument(
        "--executor",
        choices=("local", "threads", "inprocess"),
        default="local",
        help="in-run executor (whole processes use rota run's defaults)",
    )
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument(
        "--peers",
        type=peer_list,
        default=["luigi"],
        help="luigi (default), all, none, or a list: luigi,prefect,dagster",
    )
    ap.add_argument("--peers-dir", type=Path, default=REPO.parent / "shared" / "bench" / "peers")
    ap.add_argument("--peer-venvs", type=Path, default=Path.home() / ".cache" / "rota-peers")
    ap.add_argument("--only-peers", action="store_true", help="the peers and the floor only")
    ap.add_argument("--json", action="store_true", help="one JSON line per figure and target")
    ap.add_argument(
        "--write-results", type=Path, metavar="FILE", help="write the table as Markdown"
    )
    ap.add_argument(
        "--save", type=Path, metavar="FILE", help="each record as a JSON line, as taken"
    )
    ap.add_argument("--table-from", type=Path, metavar="FILE", help="the table of a --save file")
    ap.add_argument("--single", choices=list(WORKLOADS), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.workers < 1 or args.repeat < 1:
        ap.error("--workers and --repeat must be >= 1")
    if args.quick:
        args.repeat = 1
        args.workload = [k for k in args.workload if k != "S2"]
    return args


def repeat_for(key: str, repeat: int) -> int:
    return 1 if key in WORKLOADS and WORKLOADS[key].large else repeat


def say(msg: str) -> None:
    print(f"# {dt.datetime.now(dt.UTC):%H:%M:%S} {msg}", file=sys.stderr, flush=True)


ORDER = ("W1", "W2", "W3", "F2K", "F10K", "S1", "M1", "L1", START, "S2")
"""The order the suite measures in: the longest (S2) last."""
FLOOR_N = {"F2K": 2000, "F10K": 10_000}
"""The fan-outs the floor is measured beside, with their N."""


def measure_all(args: argparse.Namespace, keep: Callable[[Rec], None]) -> None:
    """Each chosen workload in turn: Rota's figures, with the floor measured just before and
    just after them (the fan-outs) and the peers just after, so that all see the same load."""
    for key in (k for k in ORDER if k in args.workload):
        if key == START:
            if not args.only_peers:
                say("start-up")
                for rec in measure.startup(max(args.repeat, 5)):
                    keep(rec)
            continue
        before = floor_record(key, args)
        if not args.only_peers:
            rota_records(key, args, keep)
        if before is not None:
            after = floor_record(key, args)
            keep(before if after is None else floor.merged(before, after))
        for rec in peer_records(key, args):
            keep(rec)


def rota_records(key: str, args: argparse.Namespace, keep: Callable[[Rec], None]) -> None:
    """Rota's in-run and whole-process figures of workload *key*."""
    child = ["--executor", args.executor, "--workers", str(args.workers)]
    n = repeat_for(key, args.repeat)
    if args.mode in ("both", "in-run"):
        say(f"{key} in-run")
        keep(measure.run_child(key, [*child, "--repeat", str(n)]))
    if args.mode in ("both", "whole"):
        say(f"{key} whole process")
        keep(measure.whole(WORKLOADS[key], n))


def floor_record(key: str, args: argparse.Namespace) -> Rec | None:
    """The floor at the size of fan-out *key* (None for the other workloads)."""
    if key not in FLOOR_N:
        return None
    say(f"floor N={FLOOR_N[key]}")
    return floor.measured(FLOOR_N[key], args.repeat)


def peer_list(text: str) -> list[str]:
    """The peers named by --peers: ``all``, ``none`` or a comma-separated list of tools."""
    if text in ("all", "none"):
        return list(peers.TOOLS) if text == "all" else []
    tools = [t.strip().lower() for t in text.split(",") if t.strip()]
    unknown = [t for t in tools if t not in peers.TOOLS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown peer {unknown[0]!r} ({', '.join(peers.TOOLS)})")
    return tools


def peer_records(key: str, args: argparse.Namespace) -> list[Rec]:
    """The chosen peers' figures of workload *key* (those that have it)."""
    tools: list[str] = args.peers
    if not tools or not any(peers.jobs(t, args.peers_dir, [key], Path()) for t in tools):
        return []
    say(f"{key}: peers {', '.join(tools)}")
    return peers.run_peers(tools, args.peers_dir, args.peer_venvs, [key], args.repeat)


def machine() -> str:
    mem = ""
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kib / 1024 / 1024:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    return (
        f"{os.cpu_count()} cores{mem}, {platform.system()} {platform.release()}, "
        f"CPython {platform.python_version()}"
    )


def load_record(at: str) -> Rec:
    """The load average (1, 5, 15 minutes) at the start or end of the run, kept with the rest."""
    return {"tool": "load", "at": at, "loadavg": [round(x, 1) for x in os.getloadavg()]}


def load_line(recs: Sequence[Rec]) -> str:
    """How busy the machine was: the figures of a loaded machine are noisy."""
    loads = [f"{r['at']} {' '.join(map(str, r['loadavg']))}" for r in recs if r["tool"] == "load"]
    if not loads:
        return "- Load average (1/5/15 min): not recorded"
    busy = any(r["loadavg"][0] > (os.cpu_count() or 1) for r in recs if r["tool"] == "load")
    line = f"- Load average (1/5/15 min): {'; '.join(loads)}"
    if busy:
        line += " — **taken under load** (more runnable processes than cores): noisy figures"
    return line


def commit() -> str:
    proc = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    )
    return proc.stdout.strip() or "unknown"


PATH_OPTIONS = {"--peers-dir": "$PEERS_DIR", "--peer-venvs": "$PEER_VENVS"}
"""Options whose value is a path of this machine: written as the Makefile's variable."""


def public_argv(argv: Sequence[str]) -> list[str]:
    """*argv* without this machine's paths (--save, --write-results, the peers' folders)."""
    out: list[str] = []
    skip = False
    for i, arg in enumerate(argv):
        if skip:
            skip = False
            continue
        if arg in ("--save", "--write-results", "--table-from"):
            skip = True
        elif arg in PATH_OPTIONS and i + 1 < len(argv):
            out += [arg, PATH_OPTIONS[arg]]
            skip = True
        else:
            out.append(arg)
    return out


def results_md(
    lines: Sequence[str], argv: Sequence[str], started: dt.datetime, recs: Sequence[Rec]
) -> str:
    cmd = shlex.join(["python", "bench/suite.py", *public_argv(argv)])
    return "\n".join(
        [
            "# Benchmark results",
            "",
            "Written by `make bench` (`bench/suite.py --write-results bench/RESULTS.md`); run it",
            "again to regenerate this file. How each figure is taken: `bench/README.md`.",
            "",
            f"- Command: `{cmd}`",
            f"- Date: {started:%Y-%m-%d %H:%M} UTC; commit `{commit()}`",
            f"- Machine: {machine()}",
            load_line(recs),
            "",
            "```text",
            *lines,
            "```",
            "",
        ]
    )


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    if args.single:  # internal: one workload's in-run figures in this process, one JSON line
        from workloads import WORKLOADS as ALL

        rec = measure.in_run(ALL[args.single], args.executor, args.workers, args.repeat)
        print(json.dumps(rec), flush=True)
        return 0 if rec["ok"] else 1
    started = dt.datetime.now(dt.UTC)
    if args.table_from:
        lines = args.table_from.read_text().splitlines()
        recs: list[Rec] = [json.loads(line) for line in lines if line]
    else:
        recs = take(args)
    output(recs, args, argv, started)
    return 0 if all(r.get("ok", True) for r in recs) else 1


def take(args: argparse.Namespace) -> list[Rec]:
    """Measure everything chosen; each record is also written to --save as soon as it is taken
    (a run stopped halfway keeps what it measured: ``--table-from`` prints its table)."""
    recs: list[Rec] = []
    with contextlib.ExitStack() as stack:
        save = stack.enter_context(args.save.open("w")) if args.save else None

        def keep(rec: Rec) -> None:
            recs.append(rec)
            if save is not None:
                save.write(json.dumps(rec) + "\n")
                save.flush()

        keep(load_record("start"))
        measure_all(args, keep)
        keep(load_record("end"))
    return recs


def output(
    recs: list[Rec], args: argparse.Namespace, argv: Sequence[str], when: dt.datetime
) -> None:
    """Print the table (or JSON lines) and write the Markdown file, when asked."""
    lines = report.table(recs)
    if args.json:
        for rec in recs:
            print(json.dumps(rec))
        for text, fig, verdict in report.verdicts(recs):
            print(json.dumps({"target": text, "figure": fig, "verdict": verdict}))
    else:
        print("\n".join(lines))
    if args.write_results:
        args.write_results.write_text(results_md(lines, argv, when, recs))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
