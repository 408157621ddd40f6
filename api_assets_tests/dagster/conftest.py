"""Fixtures for the Dagster layer: a demo API per test module, and per test a project of its own
(sources file, data root, `DAGSTER_HOME`, instance) pointing at it.

- `server`: this module's `DemoServer` (300 products, 100 customers, 200 orders, 600 events over
  7 days), reset to its seeded state before each test.
- `project`: the standard sources file (`SOURCES`, below) written to a tmp dir, the environment
  of CONTRACT §3 pointing at tmp dirs and at `server`, and the definitions built from it.
- `instance`: a `dg.instance_for_test()` (history, cursors) for in-process runs.
"""

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pytest

from api_assets.config.loader import load_sources
from api_assets.demo_api import DemoConfig, DemoServer
from api_assets.storage.layout import DataLayout

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DAGSTER_BIN = str(Path(sys.executable).with_name("dagster"))
SIZES = {"products": 300, "customers": 100, "orders": 200, "events": 600}

# `shop`: one endpoint of each kind (snapshot, incremental, child, window), several pages each.
# `strict`: the same products with `schema_drift: {block: true}`.
SOURCES = """
sources:
  - name: shop
    base_url: ${DEMO_API_URL}
    auth:
      type: oauth2_client_credentials
      token_url: ${DEMO_API_URL}/oauth/token
      client_id: demo-client
      client_secret: demo-secret
      scopes: [read]
    rate_limit: {requests_per_second: 1000, burst: 200, max_concurrency: 8}
    retry: {max_attempts: 3, max_backoff_seconds: 1}
    partitions: {type: daily, start: "2026-01-01"}
    schedule: "0 3 * * *"
    endpoints:
      - name: products
        path: /v1/products
        records_path: data
        primary_key: id
        paginator: {type: offset, limit: 50, offset_param: offset, limit_param: limit, total_path: total}
      - name: orders
        path: /v1/orders
        records_path: data
        primary_key: id
        paginator: {type: cursor, cursor_path: next_cursor, cursor_param: cursor, limit_param: limit, limit: 50}
        incremental:
          cursor_field: updated_at
          param: updated_since
          lookback_seconds: 3600
          format: iso8601
      - name: order_lines
        path: /v1/orders/{order_id}/lines
        parent: {endpoint: orders, fields: {order_id: id}}
        records_path: lines
        primary_key: [order_id, line_no]
      - name: events
        path: /v1/events
        primary_key: id
        paginator: {type: link_header, params: {per_page: 40}}
        window: {start_param: since, end_param: until, format: iso8601}

  - name: strict
    base_url: ${DEMO_API_URL}
    auth: {type: api_key, name: X-API-Key, value: demo-key-1, location: header}
    rate_limit: {requests_per_second: 1000, burst: 200, max_concurrency: 8}
    retry: {max_attempts: 3, max_backoff_seconds: 1}
    partitions: {type: daily, start: "2026-01-01"}
    schema_drift: {block: true}
    endpoints:
      - name: products
        path: /v1/products
        records_path: data
        primary_key: id
        paginator: {type: offset, limit: 50, offset_param: offset, limit_param: limit, total_path: total}
"""


def utc_day(offset_days: int = 0) -> str:
    """A daily partition key relative to today (UTC). Each call reads the clock: a test that
    needs the same day twice computes it once (midnight may pass in between)."""
    return (datetime.now(UTC) + timedelta(days=offset_days)).strftime("%Y-%m-%d")


def last_minute_of(key: str) -> str:
    """`DemoConfig.now` that pins a demo server's clock to the last minute of the daily
    partition `key`: that day's `events` window then holds a whole day of events (86 of
    `SIZES`' 600, three pages of 40) at whatever hour the test runs. With the wall clock as its
    anchor it would hold only the hours since midnight: a handful of events at 00:30."""
    return f"{key}T23:59:00Z"


def day_window(key: str) -> tuple[str, str]:
    """The ISO-8601 window of a daily partition, as the demo API's `since`/`until` read it."""
    start = datetime.fromisoformat(key).replace(tzinfo=UTC)
    end = start + timedelta(days=1)
    return start.isoformat().replace("+00:00", "Z"), end.isoformat().replace("+00:00", "Z")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def build_defs(sources_file: Path) -> dg.Definitions:
    """The definitions of a sources file, as `build_definitions` makes them."""
    # Imported here, under the test's environment: importing `api_assets.definitions` loads
    # API_ASSETS_SOURCES (and sets DAGSTER_HOME when unset) for its module-level `defs`.
    from api_assets.definitions import build_definitions

    return build_definitions(load_sources(str(sources_file)), str(sources_file))


def asset_keys(source: str, endpoint: str) -> list[dg.AssetKey]:
    return [
        dg.AssetKey([source, "raw", endpoint]),
        dg.AssetKey([source, endpoint]),
        dg.AssetKey([source, "schema", endpoint]),
    ]


@dataclass
class Project:
    """A sources file, a data root and a `DAGSTER_HOME` in tmp dirs, pointing at one server."""

    root: Path
    server: DemoServer
    sources_file: Path
    data: Path
    home: Path
    defs: dg.Definitions
    env: dict[str, str] = field(default_factory=dict)

    @property
    def layout(self) -> DataLayout:
        return DataLayout(self.data)

    def run(
        self,
        instance: dg.DagsterInstance,
        endpoints: list[tuple[str, str]] | None = None,
        *,
        keys: list[dg.AssetKey] | None = None,
        partition: str | None = None,
        partition_range: tuple[str, str] | None = None,
    ) -> dg.ExecuteInProcessResult:
        """Materialize the three assets of each (source, endpoint), or `keys`, in process."""
        selected = keys or [k for s, e in endpoints or [] for k in asset_keys(s, e)]
        job = dg.define_asset_job("test_job", selection=dg.AssetSelection.assets(*selected))
        resolved = job.resolve(asset_graph=self.defs.resolve_asset_graph())
        tags = None
        if partition_range is not None:
            tags = {
                "dagster/asset_partition_range_start": partition_range[0],
                "dagster/asset_partition_range_end": partition_range[1],
            }
        return resolved.execute_in_process(
            instance=instance,
            partition_key=partition,
            tags=tags,
            resources=self.defs.resources,
            raise_on_error=False,
        )

    def table(self, source: str, endpoint: str, partition: str) -> pl.DataFrame:
        return pl.read_parquet(self.layout.table_path(source, endpoint, partition))

    def report(self, source: str, endpoint: str, partition: str) -> dict[str, Any]:
        import json

        path = self.layout.report_path(source, endpoint, partition)
        result: dict[str, Any] = json.loads(path.read_text())
        return result

    def leftovers(self) -> list[Path]:
        """Temporary or aside files and directories anywhere under the data root."""
        if not self.data.exists():
            return []
        return [p for p in self.data.rglob("*") if ".tmp-" in p.name or ".old-" in p.name]


@pytest.fixture(scope="module")
def module_server() -> Iterator[DemoServer]:
    with DemoServer(DemoConfig(**SIZES)) as server:
        yield server


@pytest.fixture
def server(module_server: DemoServer) -> DemoServer:
    module_server.reset()
    return module_server


def make_project(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: DemoServer, sources: str = SOURCES
) -> Project:
    root = tmp_path / "project"
    root.mkdir()
    sources_file = root / "sources.yaml"
    sources_file.write_text(sources)
    data, home = root / "data", root / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {
        "DEMO_API_URL": server.url,
        "API_ASSETS_SOURCES": str(sources_file),
        "API_ASSETS_DATA_DIR": str(data),
        "DAGSTER_HOME": str(home),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    defs = build_defs(sources_file)
    return Project(root, server, sources_file, data, home, defs, env={**os.environ, **env})


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: DemoServer) -> Project:
    return make_project(tmp_path, monkeypatch, server)


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as inst:
        yield inst


def check_evaluations(result: dg.ExecuteInProcessResult) -> dict[tuple[str, str], Any]:
    """(asset key as `a/b/c`, check name) → the check evaluation of that run."""
    return {
        (ev.asset_key.to_user_string(), ev.check_name): ev
        for ev in result.get_asset_check_evaluations()
    }


def materializations(result: dg.ExecuteInProcessResult) -> dict[tuple[str, str | None], Any]:
    """(asset key as `a/b/c`, partition) → the materialization of that run."""
    out = {}
    for event in result.get_asset_materialization_events():
        mat = event.materialization
        out[(mat.asset_key.to_user_string(), mat.partition)] = mat
    return out


def failure_messages(result: dg.ExecuteInProcessResult) -> str:
    """Every step failure's message (and its cause's), joined."""
    parts = []
    for event in result.all_events:
        if event.is_step_failure:
            error = event.step_failure_data.error
            while error is not None:
                parts.append(error.message)
                error = error.cause
    return "\n".join(parts)


def stop_process_tree(proc: subprocess.Popen[Any]) -> None:
    """Stop a `dg dev` / `dagster dev` started with `start_new_session=True`: SIGINT (its own
    clean shutdown), then SIGKILL to whatever of its process group is left."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # whatever of the tree is left
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)
