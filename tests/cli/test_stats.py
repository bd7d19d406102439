"""``rota stats`` end to end: a seeded flow run 200 times, then the real command reads the store.

Each task draws its failures from a random generator seeded with (task, run, try), so the test
replays the draws itself and knows exactly how many tries failed, which runs succeeded and hence
every number the command must print.
"""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from clihelp import Result, RotaCli, rota_env

from rota.engine.loader import resolve_target
from rota.engine.runner import Runner
from rota.executors.threads import InProcessExecutor
from rota.flowfile import import_flow_file
from rota.model.schedule import SystemClock
from rota.store.sql import open_store

RUNS = 200
FLAKY_RETRIES, PART_RETRIES, PART_INSTANCES = 2, 1, 3

SEEDED_FLOW = f"""
    import random

    from rota import flow, task

    def fails(*key: object) -> bool:
        \"\"\"The seeded draw of one try: it fails 30% of the time.\"\"\"
        return random.Random(":".join(map(str, key))).random() < 0.3

    @task(retries={FLAKY_RETRIES})
    def flaky(k: int, ctx) -> int:
        if fails("flaky", k, ctx.try_number):
            raise RuntimeError(f"seeded failure: run {{k}}, try {{ctx.try_number}}")
        return k

    @task
    def steady(x: int) -> int:
        return x + 1

    @task(retries={PART_RETRIES})
    def part(i: int, k: int, ctx) -> int:
        if fails("part", k, i, ctx.try_number):
            raise RuntimeError(f"seeded failure: run {{k}}, instance {{i}}, try {{ctx.try_number}}")
        return i

    @flow
    def seeded(k: int = 0):
        steady(flaky(k))
        part.map(i=list(range({PART_INSTANCES})), k=k)
"""


@dataclass
class Tally:
    """Tries and failed tries of one task, replayed."""

    attempts: int = 0
    failures: int = 0

    def tries(self, fails: Any, retries: int, *key: object) -> bool:
        """Replay one task (or instance) in one run; whether it succeeded."""
        for t in range(1, retries + 2):
            self.attempts += 1
            if not fails(*key, t):
                return True
            self.failures += 1
        return False

    @property
    def p(self) -> float:
        return self.failures / self.attempts


@dataclass
class Replay:
    """What runs ``first..last-1`` of the seeded flow did, from the draws alone."""

    flaky: Tally = field(default_factory=Tally)
    steady: Tally = field(default_factory=Tally)
    part: Tally = field(default_factory=Tally)
    succeeded: int = 0


def replay(module: ModuleType, runs: range) -> Replay:
    out = Replay()
    for k in runs:
        first = out.flaky.tries(module.fails, FLAKY_RETRIES, "flaky", k)
        if first:
            out.steady.attempts += 1  # never fails; upstream_failed when flaky failed for good
        parts = [
            out.part.tries(module.fails, PART_RETRIES, "part", k, i) for i in range(PART_INSTANCES)
        ]
        out.succeeded += first and all(parts)
    return out


@dataclass
class Seeded:
    flow_file: Path
    home: Path
    module: ModuleType

    def stats(self, *args: str) -> Result:
        proc = subprocess.run(
            [sys.executable, "-m", "rota", "stats", str(self.flow_file), *args],
            capture_output=True,
            text=True,
            env=rota_env(self.home),
            cwd=self.home.parent,
            timeout=120,
            check=False,
        )
        return Result(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    """The seeded flow run 200 times (k = 0..199, in order) in-process into a SQLite store."""
    base = tmp_path_factory.mktemp("stats")
    home = base / "rota-home"
    home.mkdir(mode=0o700)
    flow_file = base / "seeded.py"
    flow_file.write_text(textwrap.dedent(SEEDED_FLOW))
    loaded = resolve_target(str(flow_file))
    executor = InProcessExecutor()
    with open_store(f"sqlite:///{home}/rota.db") as store:
        runner = Runner(store, executor, home=home, clock=SystemClock())
        for k in range(RUNS):
            runner.run(loaded.build({"k": k}), loaded.ref)
    executor.close()
    yield Seeded(flow_file, home, import_flow_file(flow_file))


def _wilson(hits: int, n: int) -> tuple[float, float]:
    """The textbook form of the Wilson 95% interval, written apart from Rota's."""
    z = 1.959963984540054
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def test_a_task_failing_30_percent_of_tries_over_200_runs(seeded: Seeded) -> None:
    expected = replay(seeded.module, range(RUNS))
    done = seeded.stats("--json", "--last", str(RUNS))
    assert done.code == 0, done.err
    got = done.json()
    tasks = {t["task"]: t for t in got["tasks"]}
    assert set(tasks) == {"flaky", "part", "steady"}
    flaky = tasks["flaky"]
    assert (flaky["attempts"], flaky["failures"]) == (
        expected.flaky.attempts,
        expected.flaky.failures,
    )
    assert flaky["p"] == expected.flaky.p
    low, high = flaky["interval"]
    assert (low, high) == pytest.approx(_wilson(expected.flaky.failures, expected.flaky.attempts))
    assert low <= 0.3 <= high  # the true probability is inside the estimate's interval
    assert low <= flaky["p"] <= high
    assert flaky["retries"] == FLAKY_RETRIES
    assert flaky["success"] == 1 - expected.flaky.p ** (FLAKY_RETRIES + 1)  # the exact value

    part = tasks["part"]  # mapped: its instances' tries are its tries
    assert (part["attempts"], part["failures"]) == (expected.part.attempts, expected.part.failures)
    assert expected.part.attempts >= RUNS * PART_INSTANCES
    assert part["mapped"] is True and part["instances_per_run"] == PART_INSTANCES
    assert part["success"] == pytest.approx(
        (1 - expected.part.p ** (PART_RETRIES + 1)) ** PART_INSTANCES, rel=1e-15
    )
    steady = tasks["steady"]
    assert (steady["attempts"], steady["failures"], steady["p"]) == (expected.steady.attempts, 0, 0)

    assert (got["runs"], got["succeeded"]) == (RUNS, expected.succeeded)
    assert got["observed"] == expected.succeeded / RUNS
    predicted = (1 - expected.flaky.p**3) * (1 - expected.part.p**2) ** 3
    assert got["predicted"] == pytest.approx(predicted, rel=1e-14)
    without = (1 - expected.flaky.p) * (1 - expected.part.p) ** 3
    assert got["predicted_without_retries"] == pytest.approx(without, rel=1e-14)
    # the prediction from per-try rates agrees with what the runs did
    olow, ohigh = got["observed_interval"]
    assert olow <= got["predicted"] <= ohigh


def _success(p: dict[str, float], r: dict[str, int]) -> float:
    return math.prod((1 - p[t] ** (r[t] + 1)) ** (3 if t == "part" else 1) for t in p)


@pytest.mark.parametrize("target", ["0.9", "0.99", "0.999"])
def test_the_recommended_retries_are_the_fewest_that_reach_the_target(
    seeded: Seeded, target: str
) -> None:
    done = seeded.stats("--json", "--last", str(RUNS), "--target", target)
    assert done.code == 0, done.err
    got = done.json()
    p = {t["task"]: t["p"] for t in got["tasks"]}
    needed = {t["task"]: t["needed_retries"] for t in got["tasks"]}
    assert got["reachable"] is True
    assert needed["steady"] == 0  # never failed
    assert _success(p, needed) >= float(target)
    assert got["needed_success"] == pytest.approx(_success(p, needed), rel=1e-14)
    total = sum(needed.values())
    for rf in range(total + 1):  # every allocation with fewer retries in all falls short
        for rp in range(total - rf):
            assert _success(p, {"flaky": rf, "part": rp, "steady": 0}) < float(target), (rf, rp)


def test_last_reads_only_the_newest_runs(seeded: Seeded) -> None:
    done = seeded.stats("--json", "--last", "50")
    assert done.code == 0, done.err
    got = done.json()
    expected = replay(seeded.module, range(RUNS - 50, RUNS))  # the runs made last
    flaky = next(t for t in got["tasks"] if t["task"] == "flaky")
    assert (got["runs"], got["succeeded"]) == (50, expected.succeeded)
    assert (flaky["attempts"], flaky["failures"]) == (
        expected.flaky.attempts,
        expected.flaky.failures,
    )


def test_the_table_shows_each_task_and_the_prediction_beside_the_observation(
    seeded: Seeded,
) -> None:
    expected = replay(seeded.module, range(RUNS))
    done = seeded.stats("--last", str(RUNS))
    assert done.code == 0, done.err
    rows = {line.split()[0]: line.split() for line in done.out.splitlines() if line.strip()}
    flaky = rows["flaky"]
    assert flaky[1:4] == [
        str(expected.flaky.attempts),
        str(expected.flaky.failures),
        f"{expected.flaky.p:.4f}",
    ]
    assert flaky[5:7] == [str(FLAKY_RETRIES), f"{1 - expected.flaky.p**3:.4f}"]
    assert rows["part"][1] == str(expected.part.attempts)
    assert f"observed: {expected.succeeded} of {RUNS} runs succeeded" in done.out
    assert "P(run succeeds) predicted: " in done.out
    assert "target 0.99: reached" in done.out


# --- bad input: one line, exit 2, nothing run -------------------------------------------------

COUNTING_FLOW = """
    from pathlib import Path

    from rota import flow, task

    with open(Path(__file__).with_name("imports.log"), "a") as log:
        log.write("imported\\n")

    @task(retries=1)
    def one() -> int:
        return 1

    @flow
    def counted():
        one()
"""


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("--target", "0"), "--target"),
        (("--target", "1.5"), "--target"),
        (("--target", "nan"), "--target"),
        (("--target", "x"), "--target"),
        (("--last", "0"), "--last"),
        (("--last", "10000000000"), "--last"),
    ],
)
def test_bad_options_are_one_line_and_exit_2(
    rota: RotaCli, write_flow: Any, args: tuple[str, ...], needle: str
) -> None:
    path = write_flow("counted.py", COUNTING_FLOW)
    done = rota("stats", str(path), *args)
    assert done.code == 2
    assert needle in done.err and "Traceback" not in done.err


def test_a_flow_without_finished_runs_is_an_error(rota: RotaCli, write_flow: Any) -> None:
    path = write_flow("counted.py", COUNTING_FLOW)
    done = rota("stats", str(path))
    assert done.code == 2
    assert done.err.strip() == "rota: error: flow 'counted' has no finished run in the store"


def test_a_bare_name_never_imports_the_file_the_store_names(rota: RotaCli, write_flow: Any) -> None:
    path = write_flow("counted.py", COUNTING_FLOW)
    log = path.with_name("imports.log")
    assert rota("run", str(path), "--executor", "inprocess").code == 0
    imported = log.read_text().count("imported")
    done = rota("stats", "counted")
    assert done.code == 2
    assert "Traceback" not in done.err and len(done.err.strip().splitlines()) == 1
    assert f"rota stats {path.resolve()}:counted" in done.err  # says how, does not do it
    assert log.read_text().count("imported") == imported
    named = rota("stats", "counted", "--flows", str(path.parent), "--json")
    assert named.code == 0, named.err
    (one,) = named.json()["tasks"]
    assert (one["task"], one["attempts"], one["failures"], one["retries"]) == ("one", 1, 0, 1)


PARAM_FLOW = """
    from rota import flow, task

    @task
    def step(i: int, api_token: str) -> int:
        return i

    @flow
    def wide(n: int = 1, api_token: str = "placeholder"):
        if not isinstance(api_token, str):  # the store's marker for an unkept secret is not one
            raise TypeError(f"api_token must be text, got {api_token!r}")
        for i in range(n):
            step(i, api_token)
"""


def test_the_flow_is_built_with_the_newest_runs_parameters_but_no_secret(
    rota: RotaCli, write_flow: Any
) -> None:
    path = write_flow("wide.py", PARAM_FLOW)
    ran = rota("run", str(path), "-p", "n=3", "-p", "api_token=s3cr3t-value", "--executor",
               "inprocess")  # fmt: skip
    assert ran.code == 0, ran.err
    done = rota("stats", str(path), "--json")
    assert done.code == 0, done.err
    got = done.json()
    assert [t["task"] for t in got["tasks"]] == ["step", "step__1", "step__2"]  # n=3, as stored
    assert all(t["attempts"] == 1 for t in got["tasks"])
    assert "s3cr3t" not in done.out + done.err
    fewer = rota("stats", str(path), "--json", "-p", "n=2")  # -p wins
    assert [t["task"] for t in fewer.json()["tasks"]] == ["step", "step__1"]
