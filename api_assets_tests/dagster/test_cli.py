"""The shell path of CONTRACT §2: `dagster asset materialize -m api_assets.definitions` in a
subprocess, with the environment of CONTRACT §3 pointing at tmp dirs and a demo API."""

import subprocess
from datetime import datetime
from pathlib import Path

import polars as pl
import pytest

from api_assets.demo_api import DemoServer

from .conftest import DAGSTER_BIN, SOURCES, Project, day_window, make_project, utc_day

pytestmark = pytest.mark.e2e

# `shop` with its incremental and child endpoints only (fewer step processes), and the window
# endpoint in a source of its own (`evt`) for the range run.
PRODUCTS = """      - name: products
        path: /v1/products
        records_path: data
        primary_key: id
        paginator: {type: offset, limit: 50, offset_param: offset, limit_param: limit, total_path: total}
"""
CLI_SOURCES = SOURCES.replace(PRODUCTS, "", 1).replace(
    """      - name: events
        path: /v1/events
""",
    """
  - name: evt
    base_url: ${DEMO_API_URL}
    auth: {type: api_key, name: X-API-Key, value: demo-key-2, location: header}
    partitions: {type: daily, start: "2026-01-01"}
    endpoints:
      - name: events
        path: /v1/events
""",
)


@pytest.fixture
def cli_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: DemoServer) -> Project:
    assert "evt" in CLI_SOURCES and CLI_SOURCES.count(PRODUCTS) == 1  # strict keeps its own
    return make_project(tmp_path, monkeypatch, server, CLI_SOURCES)


def materialize(project: Project, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [DAGSTER_BIN, "asset", "materialize", "-m", "api_assets.definitions", *args],
        cwd=project.root,
        env=project.env,
        capture_output=True,
        text=True,
        timeout=400,
    )


def test_a_group_materializes_todays_partition(cli_project: Project) -> None:
    project, today = cli_project, utc_day(0)
    proc = materialize(project, "--select", "group:shop", "--partition", today)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "RUN_SUCCESS" in proc.stderr
    # two endpoints, two steps: each in its own process (defs/executor.py)
    assert "Executing steps using multiprocess executor" in proc.stderr
    server = project.server
    orders = project.table("shop", "orders", today)
    assert sorted(orders["id"].to_list()) == server.truth("orders")["ids"]
    lines = project.table("shop", "order_lines", today)
    assert sorted(lines.select("order_id", "line_no").rows()) == sorted(
        tuple(pair) for pair in server.truth("order_lines")["ids"]
    )
    for endpoint in ("orders", "order_lines"):
        report = project.report("shop", endpoint, today)
        assert report["status"] == "success"
        assert all(c["passed"] for c in report["checks"])
    # the run is on the instance under DAGSTER_HOME, not a throwaway one
    assert (project.home / "history" / "runs.db").exists()
    assert not list(project.root.glob(".tmp_dagster_home_*"))
    # the other sources were not selected
    assert not project.layout.table_dir("evt", "events").exists()
    assert not project.layout.table_dir("strict", "products").exists()


def test_a_partition_range_writes_each_window_on_its_own(cli_project: Project) -> None:
    project = cli_project
    keys = [utc_day(-3), utc_day(-2), utc_day(-1)]
    proc = materialize(
        project, "--select", "group:evt", "--partition-range", f"{keys[0]}...{keys[-1]}"
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "RUN_SUCCESS" in proc.stderr
    # one endpoint, one step: it runs in the run's process, no step process to start
    assert "Executing steps in process" in proc.stderr
    assert "multiprocess executor" not in proc.stderr
    files = sorted(p.name for p in project.layout.table_dir("evt", "events").iterdir())
    assert files == [f"{k}.parquet" for k in keys]
    for key in keys:
        since, until = day_window(key)
        truth = project.server.truth("events", since=since, until=until)["ids"]
        assert truth, f"the demo API should have events on {key}"
        df = project.table("evt", "events", key)
        assert sorted(df["id"].to_list()) == sorted(truth)
        occurred = df["occurred_at"].str.to_datetime(time_zone="UTC")
        start, end = (datetime.fromisoformat(t.replace("Z", "+00:00")) for t in (since, until))
        assert occurred.min() >= start and occurred.max() < end
        assert df["_partition"].unique().to_list() == [key]
        report = project.report("evt", "events", key)
        assert report["partition"] == key and report["status"] == "success"
        assert report["records"] == len(truth)
        assert {c["name"] for c in report["checks"]} == {
            "completeness",
            "page_count_anomaly",
            "schema_drift",
        }
    # the windows do not overlap: the three partitions read as one table without duplicates
    union = pl.concat([project.table("evt", "events", k) for k in keys], how="diagonal_relaxed")
    assert union["id"].n_unique() == union.height


def test_a_one_step_run_can_ask_for_its_own_step_process(cli_project: Project) -> None:
    """`isolate_single_step: true` puts even a one-step run in a step process (forkserver)."""
    isolate = '{"execution": {"config": {"multiprocess": {"isolate_single_step": true}}}}'
    proc = materialize(
        cli_project, "--select", "group:evt", "--partition", utc_day(-1), "--config-json", isolate
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "Executing steps using multiprocess executor" in proc.stderr
    assert cli_project.report("evt", "events", utc_day(-1))["status"] == "success"
