"""`kill -9` of a `dagster asset materialize` run mid-fetch (issue 4): no partial partition
becomes visible, the watermark does not move, and the next run completes to ground truth."""

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from api_assets.demo_api import DemoServer
from api_assets.pipeline.watermark import latest_watermark
from api_assets.storage.tables import read_table

from .conftest import DAGSTER_BIN, SOURCES, Project, make_project, utc_day

ORDERS = [("shop", "orders")]
SELECT = "shop/raw/orders,shop/orders,shop/schema/orders"
pytestmark = pytest.mark.e2e


def kill_mid_fetch(project: Project, partition: str, pages_before_kill: int = 2) -> None:
    """Start the CLI run with every orders page slowed down, and SIGKILL its whole process group
    (the CLI and anything it started) once `pages_before_kill` pages have been served."""
    server = project.server
    server.set_faults("slow", path="/v1/orders", delay=1.0, persistent=True)
    server.clear_requests()
    log = (project.root / f"killed-{time.monotonic_ns()}.log").open("w")
    command = [DAGSTER_BIN, "asset", "materialize", "-m", "api_assets.definitions"]
    # in-process executor: the same run without a step process to start (the test is slow enough)
    in_process = '{"execution": {"config": {"in_process": {}}}}'
    proc = subprocess.Popen(
        [*command, "--select", SELECT, "--partition", partition, "--config-json", in_process],
        cwd=project.root,
        env=project.env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 180
        while len(server.requests("/v1/orders")) < pages_before_kill:
            assert proc.poll() is None, f"the run ended early: {log.name}"
            assert time.monotonic() < deadline, "the run never reached the API"
            time.sleep(0.05)
        # mid-fetch: 10 pages of 20 orders at 1 s each, so 8 are still to come
        assert proc.poll() is None
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        log.close()
    server.clear_faults()


def committed_state(project: Project, partition: str) -> dict[str, Any]:
    layout = project.layout
    table = layout.table_path("shop", "orders", partition)
    manifest = layout.raw_dir("shop", "orders", partition) / "manifest.jsonl"
    schema = layout.schema_path("shop", "orders", partition)
    return {
        "table": table.read_bytes() if table.exists() else None,
        "raw": manifest.read_bytes() if manifest.exists() else None,
        "schema": schema.read_bytes() if schema.exists() else None,
    }


def watermark(project: Project) -> Any:
    config = project.defs.resources["api_shop"].config()  # type: ignore[union-attr]
    return latest_watermark(project.layout, config, config.endpoint("orders"))


@pytest.fixture
def crash_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: DemoServer) -> Project:
    """The standard project with small order pages: a killed run is far from its last page."""
    sources = SOURCES.replace(
        "cursor_param: cursor, limit_param: limit, limit: 50",
        "cursor_param: cursor, limit_param: limit, limit: 20",
    )
    assert sources != SOURCES
    return make_project(tmp_path, monkeypatch, server, sources)


def test_kill_9_mid_run_publishes_nothing_and_the_next_run_completes(
    crash_project: Project, instance: Any
) -> None:
    project = crash_project
    server, partition = project.server, utc_day(-1)

    # a first run killed: no table, no archive, no schema; nothing to read
    kill_mid_fetch(project, partition)
    assert committed_state(project, partition) == {"table": None, "raw": None, "schema": None}
    with pytest.raises(FileNotFoundError):
        read_table("shop", "orders", data_dir=project.data)
    assert watermark(project) is None  # no initial_value, nothing committed

    # the next run completes to ground truth
    assert project.run(instance, ORDERS, partition=partition).success
    first = project.table("shop", "orders", partition)
    assert sorted(first["id"].to_list()) == server.truth("orders")["ids"]
    committed_watermark = watermark(project)
    assert committed_watermark == max(server.truth("orders")["updated_at"].values())
    before = committed_state(project, partition)

    # a re-run killed mid-way leaves the committed partition as it was, watermark included
    changed = server.mutate("orders", updates=5)["updated"]
    kill_mid_fetch(project, partition)
    assert committed_state(project, partition) == before
    assert watermark(project) == committed_watermark
    assert read_table("shop", "orders", data_dir=project.data).collect().height == 200

    # and the run after it completes, with the changes
    assert project.run(instance, ORDERS, partition=partition).success
    after = project.table("shop", "orders", partition)
    truth = server.truth("orders")
    assert sorted(after["id"].to_list()) == truth["ids"]
    assert dict(zip(after["id"].to_list(), after["updated_at"].to_list(), strict=True)) == {
        int(k): v for k, v in truth["updated_at"].items()
    }
    assert set(changed) <= set(after["id"].to_list())
    assert watermark(project) > committed_watermark
