"""kill -9 of `dagster asset materialize` itself, at a seeded moment of its step.

One trial per partition kind (snapshot, incremental, window; `API_ASSETS_EXTENDED=1`: two
each). The command runs with the in-process executor, in its own session, so that SIGKILL to the
process group takes down the whole run at once (as an OOM kill or a lost machine would). The
moment: once the step has started fetching (its hidden `.P.tmp-*` archive folder appears), a
seeded delay within a window of the fetch's expected length — mid-fetch, late (the commit and
Dagster's bookkeeping after it) or anywhere. Half the trials re-run a committed partition.

Afterwards: nothing partial is visible, the watermark is not ahead of the committed data, and the
next run — through Dagster, on the same instance that still holds the killed run — completes and
equals the ground truth.
"""

import json
import os
import random
import signal
import subprocess
import time

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
    dagster_bin,
    expected_ids,
    visible_leftovers,
)

pytestmark = pytest.mark.e2e

SEED = 8128
IN_PROCESS = json.dumps({"execution": {"config": {"in_process": {}}}})
LATENCY = 0.2  # seconds per page: a fetch of 5-10 pages lasts 1-2 s
# (endpoint, partition, re-run a committed partition, kill window as fractions of the fetch)
TRIALS = [
    ("products", "2026-03-03", False, (0.0, 0.8)),  # mid-fetch
    ("orders", "2026-03-03", True, (0.7, 1.6)),  # late: the commit and what follows it
    ("events", "2026-03-04", True, (0.0, 1.6)),  # anywhere
] + (
    [
        ("products", "2026-03-04", True, (0.7, 1.6)),
        ("orders", "2026-03-04", False, (0.0, 0.8)),
        ("events", "2026-03-03", False, (0.0, 1.6)),
    ]
    if EXTENDED
    else []
)


def _started(project: Project, name: str, partition: str) -> bool:
    folder = project.layout.root / "raw" / SOURCE / name
    return folder.is_dir() and any(folder.glob(f".{partition}.tmp-*"))


def _run_and_kill(project: Project, name: str, partition: str, delay: float) -> bool:
    """Start the command, wait until its step fetches, SIGKILL its process group `delay` s
    later. False when it had finished by then (it must then have succeeded)."""
    proc = subprocess.Popen(
        [
            dagster_bin(), "asset", "materialize", "-m", "api_assets.definitions",
            "--select", f"group:{SOURCE}", "--partition", partition, "--config-json", IN_PROCESS,
        ],
        cwd=PROJECT_ROOT,
        env=project.env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while proc.poll() is None and not _started(project, name, partition):
            assert time.monotonic() < deadline, "the step never started"
            time.sleep(0.01)
        time.sleep(delay)
        killed = proc.poll() is None
        if killed:
            os.killpg(proc.pid, signal.SIGKILL)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    if killed:
        assert proc.returncode == -signal.SIGKILL
    else:
        assert proc.returncode == 0, err.decode()[-3000:]
    return killed


@pytest.mark.parametrize(("name", "partition", "rerun", "window"), TRIALS)
def test_kill_9_of_dagster_asset_materialize(
    project: Project,
    api_factory,
    name: str,
    partition: str,
    rerun: bool,
    window: tuple[float, float],
) -> None:
    api: DemoServer = api_factory(latency_ms=LATENCY * 1000)
    project.api = api
    rng = random.Random(f"{SEED}-{name}-{partition}")
    project.write(
        project.source(
            name,
            base_url=api.url,
            rate_limit={"requests_per_second": 2000, "burst": 200, "max_concurrency": 1},
        )
    )
    if rerun:
        assert project.ingest(name, partition).report.status == "success"
        api.mutate("orders" if name == "orders" else "products", inserts=3, updates=20)
    before = project.table_meta(name, partition)
    started_from = before.get("watermark_before") if before else None
    pages = -(-len(expected_ids(api, name, partition, started_from)) // 50)
    fetch = pages * LATENCY

    # a seeded moment in the window; should the run win the race, it is run again (at most
    # three times, each a new moment) so that every trial ends in a kill
    for attempt in range(3):
        delay = rng.uniform(window[0] * fetch, window[1] * fetch)
        killed = _run_and_kill(project, name, partition, delay)
        print(
            f"\n{name} {partition} rerun={rerun}: attempt {attempt}, kill after {delay:.2f}s "
            f"of a ~{fetch:.1f}s fetch: killed={killed}"
        )
        if killed:
            break
    assert killed, "the run finished before every kill"

    # what a reader sees right after the kill
    assert not visible_leftovers(project.layout), visible_leftovers(project.layout)
    assert_readable(project.layout, SOURCE, name)
    if name == "orders":
        assert_watermark_not_ahead(project, name)

    # the next run, through Dagster on the same instance, completes and equals the truth
    run = project.materialize(partition)
    assert run.success, run.failure()
    report = project.report(name, partition)
    assert report is not None and report["status"] == "success"
    started_from = report["watermark_before"]
    if before:
        assert started_from == before.get("watermark_before")
    assert_equals_truth(project, api, name, partition, started_from)
    if name == "orders":
        assert_watermark_not_ahead(project, name)
    assert not visible_leftovers(project.layout)
