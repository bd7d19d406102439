"""The performance suite in bench/ at tiny sizes: its flows build and run to success, the floor
runs its transitions, and the table and targets come out of the records (no timing asserted)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import floor  # from bench/ (conftest.py puts it on the path)
import measure
import pytest
import suite
import suitereport as report
from workloads import WORKLOADS, scaled

SIZES = {"W1": 0.05, "W2": 0.01, "F2K": 0.005, "F10K": 0.001, "S1": 0.03, "S2": 0.003}
SIZES |= {"M1": 0.001, "L1": 0.05, "W3": 1.0}


@pytest.mark.parametrize("key", sorted(WORKLOADS))
def test_every_flow_builds_with_its_task_count(key: str) -> None:
    wl = scaled(WORKLOADS[key], SIZES[key])
    dag = wl.definition.build(wl.params)
    assert len(dag.tasks) == wl.n_tasks


def test_the_default_sizes_are_the_issues() -> None:
    sizes = {k: (w.n_tasks, w.mapped) for k, w in WORKLOADS.items()}
    assert sizes["F2K"] == (2002, 0) and sizes["F10K"] == (10_002, 0)
    assert sizes["S1"] == (10_000, 0) and sizes["S2"] == (100_000, 0)
    assert sizes["M1"] == (3, 10_000) and sizes["W2"] == (1002, 0)
    assert WORKLOADS["S2"].definition.build({"layers": 3}).tasks.keys() >= {"t_2_99", "t_0_0"}


@pytest.mark.parametrize("key", ["F2K", "M1", "L1", "W3", "S1"])
def test_in_run_at_tiny_size_succeeds_with_every_task(key: str) -> None:
    wl = scaled(WORKLOADS[key], SIZES[key])
    rec = measure.in_run(wl, "local", 2, repeat=1)
    assert rec["ok"] is True
    assert rec["units"] == wl.units and rec["n_runs"] == 1 and len(rec["s_all"]) == 1
    assert rec["rss_runner_mib"] > 0 and rec["rss_worker_mib"] > 0
    assert rec["cpu_runner_ms_per_task"] > 0 and rec["cpu_workers_ms_per_task"] > 0


def test_l1_reads_one_latency_per_link_of_the_chain() -> None:
    wl = scaled(WORKLOADS["L1"], 0.05)  # 10 steps, 9 links
    res = measure.timed_run(wl, "local", 2)
    assert res.check["ok"] and res.check["latency_links"] == 9
    assert res.check["latency_p50_ms"] <= res.check["latency_p99_ms"]


def test_a_failed_join_is_not_ok() -> None:
    wl = scaled(WORKLOADS["F2K"], 0.005)
    wrong = measure.Workload(wl.key, wl.definition, wl.n_tasks + 1, wl.params)
    assert measure.timed_run(wrong, "inprocess", 1).check["ok"] is False


def test_whole_process_rota_run_of_the_fanout() -> None:
    wl = scaled(WORKLOADS["F2K"], 0.005)  # 10 leaves
    timed, check = measure.whole_once(wl)
    assert timed.code == 0 and check["ok"] is True
    assert check["tasks"] == 12 and check["succeeded"] == 12
    assert timed.maxrss_kib > 0 and timed.runner_kib > 0 and timed.cpu_s > 0


def test_the_floor_commits_three_transitions_per_task() -> None:
    rec = floor.floor(20)
    assert rec["ok"] is True and rec["states"] == {"success": 22}
    assert rec["transitions"] == 3 * 22
    assert 1 < rec["transactions"] <= rec["transitions"]
    assert rec["cpu_runner_ms_per_task"] > 0 and rec["cpu_workers_ms_per_task"] > 0


def _recs() -> list[dict[str, Any]]:
    return [
        {
            "tool": "rota",
            "mode": "whole-process",
            "workload": "F2K",
            "ms_per_task": 0.4,
            "s": 0.8,
            "n_runs": 1,
            "ok": True,
            "rss_runner_mib": 60.0,
            "rss_worker_mib": 50.0,
        },
        {
            "tool": "floor",
            "workload": "fanout-2000",
            "ms_per_task": 0.2,
            "run_s": 0.4,
            "transactions": 900,
            "ok": True,
        },
        {
            "tool": "luigi",
            "mode": "local scheduler, workers=1",
            "workload": "F2K",
            "s": 12.0,
            "ms_per_task": 6.0,
            "whole_s": 13.0,
            "whole_ms_per_task": 6.5,
            "n_runs": 1,
            "rss_largest_mib": 40.0,
            "ok": True,
        },
        {
            "tool": "rota",
            "mode": "in-run",
            "workload": "W2",
            "ms_per_task": 0.3,
            "s": 0.3,
            "n_runs": 1,
            "ok": True,
        },
    ]


def test_the_table_puts_the_floor_and_luigi_beside_rota() -> None:
    lines = report.table(_recs())
    f2k = next(line for line in lines if line.startswith("F2K whole-process"))
    assert "floor 0.200 (2.0x)" in f2k and "Luigi 6.500 (Rota 16.2x faster)" in f2k


def test_the_targets_pass_miss_or_say_not_measured() -> None:
    got = {text: (fig, v) for text, fig, v in report.verdicts(_recs())}
    assert got["F2K whole process within 4x of the floor"] == ("2.0x the floor", "PASS")
    assert got["F2K whole process >= 10x faster than Luigi (1 worker)"][1] == "PASS"
    assert got["W2 in-run <= 0.15 ms/task"] == ("0.300 ms", "MISS")
    assert got["S2 (100,000 tasks) completes"] == ("not measured", "n/a")
    assert len(got) == len(report.TARGETS)


@pytest.mark.parametrize(("end_to_start", "verdict"), [(0.5, "PASS"), (1.5, "MISS")])
def test_l1_is_judged_on_end_to_start_with_commit_to_start_beside_it(
    end_to_start: float, verdict: str
) -> None:
    l1 = {"tool": "rota", "mode": "in-run", "workload": "L1", "ms_per_task": 0.9, "s": 0.2,
          "n_runs": 1, "ok": True, "latency_p50_ms": -0.4, "latency_p99_ms": 0.1,
          "latency_finish_p50_ms": end_to_start, "latency_finish_p99_ms": 2.0}  # fmt: skip
    (l1_target,) = [t for t in report.verdicts([l1]) if t[0].startswith("L1 ")]
    assert l1_target[1:] == (f"{end_to_start:.3f} ms", verdict)
    (line,) = [x for x in report.table([l1]) if x.startswith("L1 in-run")]
    assert "commit->start p50 -0.400 ms" in line and "negative" in line


def test_the_results_file_names_no_path_of_this_machine() -> None:
    argv = ["--peers", "luigi", "--peers-dir", "/x/peers", "--peer-venvs", "/y/v", "--save", "/z"]
    argv += ["--write-results", "bench/RESULTS.md", "--quick"]
    assert suite.public_argv(argv) == [
        "--peers", "luigi", "--peers-dir", "$PEERS_DIR", "--peer-venvs", "$PEER_VENVS", "--quick",
    ]  # fmt: skip


def test_the_floor_beside_a_workload_merges_its_two_measurements() -> None:
    first = floor.measured(10, repeat=1)
    second = floor.measured(10, repeat=2)
    rec = floor.merged(first, second)
    assert rec["ok"] is True and len(rec["run_s_all"]) == 3
    assert rec["run_s"] == sorted(rec["run_s_all"])[1]


def test_the_suite_saves_each_record_as_it_is_taken(tmp_path: Path) -> None:
    saved = tmp_path / "records.jsonl"
    argv = ["--workload", "W3", "--quick", "--mode", "in-run", "--peers", "none"]
    assert suite.main([*argv, "--save", str(saved)]) == 0
    recs = [json.loads(line) for line in saved.read_text().splitlines()]
    assert [r["tool"] for r in recs] == ["load", "rota", "load"]
    assert recs[1]["workload"] == "W3" and recs[1]["ok"] is True
