"""kill -9 at seeded random moments of the commit path: snapshot, incremental and window.

Each trial forks an ingestion from `crash_worker` (the engine's own commit path, as the Dagster
asset runs it) and SIGKILLs it either at a seeded step of the commit path (a page archived, an
fsync, the archive swap, the Parquet write, an atomic replace, before or after it) or after a
seeded delay. Between trials the API's data changes, and the partition is a seeded pick of
three, so kills land on first runs and on re-runs. After every kill:

- nothing partial is visible: temp files and directories exist only hidden (a leading dot),
  every visible archive, table, schema and report opens whole, `read_table` reads the union;
- the watermark is never ahead of the committed data: each table's `watermark_after` is the
  newest cursor value it holds, and `engine.latest_watermark` the newest of those;
- the next run completes and equals the ground truth (the partition's ids; for the incremental
  endpoint, the newest row per id across partitions matches every record's `updated_at`).

Three of the trials per run are `dagster asset materialize` processes instead: see
test_crash_dagster.py. Trials go on until 21 were killed (`API_ASSETS_EXTENDED=1`: 50).
"""

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from typing import IO, Any

import pytest

from api_assets.demo_api import DemoServer
from api_assets.storage.layout import PROJECT_ROOT

from .conftest import (
    EXTENDED,
    SOURCE,
    Project,
    assert_equals_truth,
    assert_readable,
    assert_watermark_not_ahead,
    visible_leftovers,
)

pytestmark = pytest.mark.e2e

SEED = 20261128
KILLS = 50 if EXTENDED else 21  # trials that must end in a kill (7 / ~17 per endpoint kind)
PARTITIONS = ["2026-03-02", "2026-03-03", "2026-03-04"]
NAMES = ["products", "orders", "events"]

# Steps of the commit path a kill may land on: (label, occurrence, before/after). The first
# commit of a partition renames its archive into place, a re-run exchanges it and removes the
# old one (`rmtree`); `replace` 1, 2, 3 are the schema, the table and the report.
KILL_POINTS: list[tuple[str, int, str]] = [
    ("page", 1, "before"),
    ("page", 1, "after"),
    ("page", 2, "after"),
    ("fsync", 1, "before"),
    ("swap", 1, "before"),
    ("swap", 1, "after"),
    ("rmtree", 1, "before"),
    ("replace", 1, "before"),
    ("replace", 1, "after"),
    ("write_parquet", 1, "before"),
    ("write_parquet", 1, "after"),
    ("replace", 2, "before"),
    ("replace", 2, "after"),
    ("replace", 3, "before"),
]


class Zygote:
    """The crash worker: forks one ingestion per trial."""

    def __init__(self, env: dict[str, str]):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "api_assets_tests.reliability.crash_worker"],
            cwd=PROJECT_ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._line() == "READY"

    def _line(self) -> str:
        out: IO[str] | None = self.proc.stdout
        assert out is not None
        line = out.readline().strip()
        if not line:
            raise AssertionError(f"the crash worker died ({self.proc.poll()})")
        return line

    def trial(self, spec: dict[str, Any], kill_after: float | None = None) -> int:
        """Run one ingestion; SIGKILL it after `kill_after` s when given. Returns its exit
        status (-9 when killed)."""
        stdin = self.proc.stdin
        assert stdin is not None
        stdin.write(json.dumps(spec) + "\n")
        stdin.flush()
        word, pid = self._line().split()
        assert word == "PID"
        if kill_after is not None:
            time.sleep(kill_after)
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass  # it had finished
        word, done, status = self._line().split()
        assert word == "EXIT" and done == pid
        return int(status)

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def slow_api(api_factory) -> DemoServer:  # type: ignore[no-untyped-def]
    """Pages take 15 ms, so that a delay-based kill can land mid-fetch."""
    server: DemoServer = api_factory(latency_ms=15)
    return server


@pytest.fixture
def zygote(project: Project) -> Iterator[Zygote]:
    z = Zygote(project.env())
    yield z
    z.close()


def _mutate(api: DemoServer, name: str, rng: random.Random) -> None:
    if name == "orders":
        api.mutate(
            "orders",
            inserts=rng.randint(0, 5),
            updates=rng.randint(5, 60),
            deletes=rng.randint(0, 3),
        )
    elif name == "products":
        api.mutate("products", inserts=rng.randint(0, 4), deletes=rng.randint(0, 3))


def test_kill_9_anywhere_leaves_a_consistent_partition_and_the_next_run_completes(
    project: Project, slow_api: DemoServer, zygote: Zygote
) -> None:
    rng = random.Random(SEED)
    api = slow_api
    project.api = api
    sources = {
        name: project.source(
            "orders" if name == "orders" else name,
            base_url=api.url,
            rate_limit={"requests_per_second": 2000, "burst": 200, "max_concurrency": 2},
        )
        for name in NAMES
    }
    outcomes: Counter[str] = Counter()
    where: Counter[str] = Counter()
    trial = -1
    # trials until KILLS of them were killed: a kill point a run never reaches (a second page,
    # removing an old archive on a first run) or a delay longer than the run lets it finish,
    # which is a trial too (the checks hold after a clean finish as well)
    while outcomes["killed"] < KILLS and trial < 2 * KILLS:
        trial += 1
        name = NAMES[trial % len(NAMES)]
        partition = rng.choice(PARTITIONS)
        project.write(sources[name])
        _mutate(api, name, rng)
        committed_before = project.table_meta(name, partition)
        spec: dict[str, Any] = {
            "sources": str(project.sources_file),
            "data": str(project.data),
            "endpoint": name,
            "partition": partition,
            "kill": None,
            "trace": None,
        }
        delay = None
        if rng.random() < 0.75:
            spec["kill"] = list(rng.choice(KILL_POINTS))
        else:
            delay = rng.uniform(0.0, 0.4)
        status = zygote.trial(spec, kill_after=delay)
        label = f"trial {trial} ({name} {partition} kill={spec['kill']} delay={delay})"
        assert status in (0, -signal.SIGKILL), f"{label}: the ingestion failed ({status})"
        outcomes["killed" if status == -signal.SIGKILL else "finished"] += 1
        if status == -signal.SIGKILL:
            where[str(spec["kill"][0] if spec["kill"] else "delay")] += 1

        # what a reader sees right after the kill
        assert not visible_leftovers(project.layout), (
            f"{label}: {visible_leftovers(project.layout)}"
        )
        assert_readable(project.layout, SOURCE, name)
        if name == "orders":
            assert_watermark_not_ahead(project, "orders")

        # the next run completes and equals the ground truth; a re-run starts from the
        # watermark the partition started from before
        result = project.ingest(name, partition)
        assert result.report.status == "success", label
        started_from = result.watermark_before
        if name == "orders" and committed_before:
            assert started_from == committed_before["watermark_before"], label
        assert_equals_truth(project, api, name, partition, started_from)
        if name == "orders":
            assert_watermark_not_ahead(project, "orders")
        assert_readable(project.layout, SOURCE, name)

    print(f"\n{trial + 1} trials: {dict(outcomes)}; killed at {dict(where)}")
    assert outcomes["killed"] >= KILLS, outcomes
    assert len(where) >= 5, where  # the kills spread over the commit path


def test_the_kill_points_are_real_steps_of_the_commit_path(
    project: Project, slow_api: DemoServer, zygote: Zygote
) -> None:
    """Guards the trial above: an unkilled run of each kind passes every listed step, in the
    commit order the engine documents (archive swapped in, then schema, table, report)."""
    project.api = slow_api
    for name in NAMES:
        project.write(project.source(name, base_url=slow_api.url))
        for rerun in (False, True):
            trace = project.root / f"trace-{name}-{rerun}"
            spec = {
                "sources": str(project.sources_file),
                "data": str(project.data),
                "endpoint": name,
                "partition": PARTITIONS[0],
                "kill": None,
                "trace": str(trace),
            }
            assert zygote.trial(spec) == 0
            steps = [tuple(line.split()) for line in trace.read_text().splitlines()]
            seen = {(label, int(n), when) for label, n, when in steps}
            expected = set(KILL_POINTS) - {("page", 2, "after")}
            if not rerun:
                expected -= {("rmtree", 1, "before")}
            assert expected <= seen, (name, rerun, sorted(expected - seen))
            order = [s[0] for s in steps if s[2] == "after" and s[0] in ("swap", "replace")]
            assert order == ["swap", "replace", "replace", "replace"], (name, rerun, order)
