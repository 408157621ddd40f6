"""Materializing through Dagster, in process (issue 4): tables equal the demo API's ground truth,
every materialization carries CONTRACT §6's metadata, checks pass on a clean run, run reports
hold the contract fields, re-materializing is idempotent, and an incremental run asks only for
the delta."""

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pytest

from api_assets.demo_api import DemoConfig, DemoServer
from api_assets.pipeline.watermark import latest_watermark
from api_assets.storage.archive import ArchiveReader

from .conftest import (
    SIZES,
    Project,
    check_evaluations,
    day_window,
    last_minute_of,
    make_project,
    materializations,
    utc_day,
)

REPORT_FIELDS = {
    "source",
    "endpoint",
    "partition",
    "run_id",
    "status",
    "started_at",
    "finished_at",
    "fetched",
    "records",
    "pages",
    "requests",
    "retries",
    "throttled",
    "total_reported",
    "duplicates",
    "watermark_before",
    "watermark_after",
    "checks",
}
FETCH_METADATA = {"dagster/row_count", "pages", "requests", "retries", "throttled"}
ENDPOINTS = ["products", "orders", "order_lines", "events"]


def truth_rows(project: Project, endpoint: str, partition: str) -> dict[Any, Any]:
    """The demo API's ground truth for what the partition must hold: key → a checked value."""
    server = project.server
    if endpoint == "products":
        return {i: None for i in server.truth("products")["ids"]}
    if endpoint == "orders":
        return {int(i): ts for i, ts in server.truth("orders")["updated_at"].items()}
    if endpoint == "order_lines":
        return {(o, n): None for o, n in server.truth("order_lines")["ids"]}
    since, until = day_window(partition)
    return {i: None for i in server.truth("events", since=since, until=until)["ids"]}


def table_rows(df: pl.DataFrame, endpoint: str) -> dict[Any, Any]:
    if endpoint == "orders":
        return dict(zip(df["id"].to_list(), df["updated_at"].to_list(), strict=True))
    if endpoint == "order_lines":
        return {(o, n): None for o, n in df.select("order_id", "line_no").iter_rows()}
    return {i: None for i in df["id"].to_list()}


def test_a_source_job_run_matches_the_ground_truth(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, instance: Any
) -> None:
    """Today's partition of the whole source job equals the ground truth, every endpoint over
    several pages. Its demo server is pinned to the last minute of today (`last_minute_of`):
    the module's server, anchored at the wall clock, holds only the hours since midnight in
    today's `events` window (one page until mid-morning, a handful of events at 00:30)."""
    today = utc_day(0)
    with DemoServer(DemoConfig(**SIZES, now=last_minute_of(today))) as server:
        assert_job_run_matches_the_ground_truth(
            make_project(tmp_path, monkeypatch, server), instance, today
        )


def assert_job_run_matches_the_ground_truth(project: Project, instance: Any, today: str) -> None:
    result = project.defs.resolve_job_def("shop_job").execute_in_process(
        instance=instance, partition_key=today, raise_on_error=False
    )
    assert result.success
    mats = materializations(result)
    evaluations = check_evaluations(result)
    for endpoint in ENDPOINTS:
        df = project.table("shop", endpoint, today)
        expected = truth_rows(project, endpoint, today)
        assert len(expected) > 20, f"{endpoint}: the demo data should span several pages"
        assert table_rows(df, endpoint) == expected, endpoint
        assert df.height == len(expected), f"{endpoint}: duplicate rows"
        assert set(df["_partition"].unique().to_list()) == {today}
        assert df.schema["_ingested_at"] == pl.Datetime(time_zone="UTC")

        raw = mats[(f"shop/raw/{endpoint}", today)].metadata
        table = mats[(f"shop/{endpoint}", today)].metadata
        schema = mats[(f"shop/schema/{endpoint}", today)].metadata
        for metadata in (raw, table, schema):
            assert set(metadata) >= FETCH_METADATA, endpoint
            assert metadata["dagster/row_count"].value == df.height
        assert raw["pages"].value >= 2 or endpoint == "order_lines"
        assert raw["requests"].value >= raw["pages"].value
        assert isinstance(table["dagster/column_schema"].value, dg.TableSchema)
        columns = {c.name for c in table["dagster/column_schema"].value.columns}
        assert set(df.columns) == columns
        assert "preview" in table
        if endpoint == "orders":
            newest = max(expected.values())
            for metadata in (raw, table, schema):
                assert metadata["high_water_mark"].value == newest
        else:
            assert "high_water_mark" not in table

        for name, key in (
            ("completeness", f"shop/raw/{endpoint}"),
            ("page_count_anomaly", f"shop/raw/{endpoint}"),
            ("schema_drift", f"shop/schema/{endpoint}"),
        ):
            evaluation = evaluations[(key, name)]
            assert evaluation.passed, (key, name, evaluation.description)

        report = project.report("shop", endpoint, today)
        assert set(report) >= REPORT_FIELDS, endpoint
        assert report["status"] == "success" and report["run_id"] == result.run_id
        assert report["records"] == df.height and report["pages"] == raw["pages"].value
        assert report["source"] == "shop" and report["endpoint"] == endpoint
        assert report["partition"] == today
        assert {c["name"] for c in report["checks"]} == {
            "completeness",
            "page_count_anomaly",
            "schema_drift",
        }
        for check in report["checks"]:
            assert check["passed"] is True and check["severity"] in ("WARN", "ERROR")
            assert check["message"]
        assert project.layout.schema_path("shop", endpoint, today).exists()
        assert (project.layout.raw_dir("shop", endpoint, today) / "manifest.jsonl").exists()
    assert project.report("shop", "products", today)["total_reported"] == 300
    orders_report = project.report("shop", "orders", today)
    assert orders_report["watermark_before"] is None  # no initial_value: no lower bound
    assert orders_report["watermark_after"] == max(truth_rows(project, "orders", today).values())
    assert project.leftovers() == []


def test_rematerializing_a_partition_is_idempotent(project: Project, instance: Any) -> None:
    partition = utc_day(-1)
    endpoints = [("shop", e) for e in ("products", "orders", "events")]
    first = project.run(instance, endpoints, partition=partition)
    assert first.success
    before = {e: project.table("shop", e, partition) for _, e in endpoints}
    second = project.run(instance, endpoints, partition=partition)
    assert second.success
    for _, endpoint in endpoints:
        after = project.table("shop", endpoint, partition)
        assert after.drop("_ingested_at").equals(before[endpoint].drop("_ingested_at"))
        assert after["id"].n_unique() == after.height
        assert after["_ingested_at"].min() > before[endpoint]["_ingested_at"].max()
        files = sorted(p.name for p in project.layout.table_dir("shop", endpoint).iterdir())
        assert files == [f"{partition}.parquet"]
        # the archive holds the second run's pages only
        raw_dir = project.layout.raw_dir("shop", endpoint, partition)
        manifest = (raw_dir / "manifest.jsonl").read_text().splitlines()
        pages = materializations(second)[(f"shop/raw/{endpoint}", partition)].metadata["pages"]
        assert len(manifest) == pages.value
        bodies = ArchiveReader(project.layout, "shop", endpoint, partition).iter_pages()
        assert len(list(bodies)) == pages.value
        assert project.report("shop", endpoint, partition)["run_id"] == second.run_id
    # the incremental endpoint re-fetched from the watermark the partition started from
    assert project.report("shop", "orders", partition)["watermark_before"] is None
    assert project.leftovers() == []


def test_an_incremental_run_asks_only_for_the_delta(project: Project, instance: Any) -> None:
    server, orders = project.server, [("shop", "orders")]
    yesterday, today = utc_day(-1), utc_day(0)
    assert project.run(instance, orders, partition=yesterday).success
    first = project.table("shop", "orders", yesterday)
    assert first.height == 200
    watermark = first["updated_at"].max()
    config = project.defs.resources["api_shop"].config()  # type: ignore[union-attr]
    assert latest_watermark(project.layout, config, config.endpoint("orders")) == watermark

    changed = server.mutate("orders", updates=5)["updated"]
    assert len(changed) == 5
    server.clear_requests()
    second = project.run(instance, orders, partition=today)
    assert second.success

    bound = datetime.fromisoformat(watermark.replace("Z", "+00:00")) - timedelta(hours=1)
    bound_text = bound.astimezone(UTC).isoformat().replace("+00:00", "Z")
    first_requests = [r for r in server.requests("/v1/orders") if "cursor" not in r["params"]]
    assert [r["params"].get("updated_since") for r in first_requests] == [bound_text]

    rows = project.table("shop", "orders", today)
    truth = server.truth("orders", updated_since=bound_text)
    assert sorted(rows["id"].to_list()) == sorted(truth["ids"])
    assert set(changed) <= set(rows["id"].to_list())
    assert rows.height < 200  # a delta, not the collection again
    assert (rows["updated_at"] >= bound_text).all()
    newest = server.truth("orders")["updated_at"]
    for oid in changed:
        assert rows.filter(pl.col("id") == oid)["updated_at"].item() == newest[str(oid)]

    report = project.report("shop", "orders", today)
    assert report["watermark_before"] == watermark
    assert report["watermark_after"] == max(newest[str(i)] for i in changed)
    raw = materializations(second)[("shop/raw/orders", today)].metadata
    assert raw["high_water_mark"].value == report["watermark_after"]
    assert raw["watermark_before"].value == watermark
    # yesterday's partition is untouched by today's run
    assert project.table("shop", "orders", yesterday).equals(first)


def test_a_range_run_materializes_each_partition_with_its_own_metadata(
    project: Project, instance: Any
) -> None:
    """A single-run backfill of a window endpoint: one table, report and materialization per
    partition, each with that partition's own row count (not the range's)."""
    keys = [utc_day(-3), utc_day(-2), utc_day(-1)]
    result = project.run(instance, [("shop", "events")], partition_range=(keys[0], keys[-1]))
    assert result.success
    mats = materializations(result)
    counts = []
    for key in keys:
        since, until = day_window(key)
        truth = project.server.truth("events", since=since, until=until)["ids"]
        df = project.table("shop", "events", key)
        assert sorted(df["id"].to_list()) == sorted(truth)
        assert project.report("shop", "events", key)["records"] == len(truth)
        for asset in ("shop/raw/events", "shop/events", "shop/schema/events"):
            assert mats[(asset, key)].metadata["dagster/row_count"].value == len(truth)
        counts.append(len(truth))
    assert len(set(counts)) > 1 or counts[0] > 0
    evaluations = check_evaluations(result)
    assert evaluations[("shop/raw/events", "completeness")].passed


def test_table_or_schema_alone_are_rebuilt_from_the_archive(
    project: Project, instance: Any
) -> None:
    partition = utc_day(-1)
    assert project.run(instance, [("shop", "products")], partition=partition).success
    before = project.table("shop", "products", partition)
    project.server.clear_requests()
    keys = [dg.AssetKey(["shop", "products"]), dg.AssetKey(["shop", "schema", "products"])]
    result = project.run(instance, keys=keys, partition=partition)
    assert result.success
    assert project.server.requests("/v1") == []  # no request sent
    after = project.table("shop", "products", partition)
    assert after.drop("_ingested_at").equals(before.drop("_ingested_at"))
    mats = materializations(result)
    assert set(mats) == {("shop/products", partition), ("shop/schema/products", partition)}
    table = mats[("shop/products", partition)].metadata
    assert table["dagster/row_count"].value == 300
    assert "dagster/column_schema" in table
    drift = check_evaluations(result)[("shop/schema/products", "schema_drift")]
    assert drift.passed


def test_retries_and_throttling_reach_the_metadata(project: Project, instance: Any) -> None:
    server, partition = project.server, utc_day(-1)
    server.set_faults("429_storm", path="/v1/products", count=2, retry_after=0.1)
    server.set_faults("5xx_burst", path="/v1/products", count=1, after=3, add=True)
    result = project.run(instance, [("shop", "products")], partition=partition)
    assert result.success
    raw = materializations(result)[("shop/raw/products", partition)].metadata
    assert raw["throttled"].value == 2
    assert raw["retries"].value == 3
    assert raw["requests"].value == raw["pages"].value + 3
    report = project.report("shop", "products", partition)
    assert (report["throttled"], report["retries"]) == (2, 3)
    assert (
        sorted(project.table("shop", "products", partition)["id"].to_list())
        == (server.truth("products")["ids"])
    )


FLAT_SOURCES = """
sources:
  - name: flat
    base_url: ${DEMO_API_URL}
    auth: {type: api_key, name: X-API-Key, value: demo-key-1, location: header}
    partitions: {type: none}
    endpoints:
      - name: orders
        path: /v1/orders
        records_path: data
        primary_key: id
        paginator: {type: cursor, cursor_path: next_cursor, cursor_param: cursor, limit_param: limit, limit: 50}
        incremental:
          cursor_field: updated_at
          param: updated_since
          initial_value: "2020-01-01T00:00:00Z"
          lookback_seconds: 60
          format: iso8601
      - name: products
        path: /v1/products
        records_path: data
        primary_key: id
        paginator: {type: offset, limit: 50, total_path: total}
"""


def test_unpartitioned_endpoints_replace_or_merge_current(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: DemoServer, instance: Any
) -> None:
    """`partitions: none`: P is `current`; a snapshot replaces it, an incremental endpoint
    merges each fetch into it by primary key."""
    project = make_project(tmp_path, monkeypatch, server, FLAT_SOURCES)
    job = project.defs.resolve_job_def("flat_job")
    assert job.partitions_def is None
    assert job.execute_in_process(instance=instance, raise_on_error=False).success
    assert project.table("flat", "orders", "current").height == 200
    first_report = project.report("flat", "orders", "current")
    assert first_report["watermark_before"] == "2020-01-01T00:00:00Z"

    changed = server.mutate("orders", updates=4, inserts=3)
    server.mutate("products", delete_ids=server.truth("products")["ids"][:10])
    server.clear_requests()
    result = job.execute_in_process(instance=instance, raise_on_error=False)
    assert result.success
    [first_request] = [r for r in server.requests("/v1/orders") if "cursor" not in r["params"]]
    watermark = datetime.fromisoformat(first_report["watermark_after"].replace("Z", "+00:00"))
    assert first_request["params"]["updated_since"] == (
        watermark - timedelta(seconds=60)
    ).astimezone(UTC).isoformat().replace("+00:00", "Z")
    orders = project.table("flat", "orders", "current")
    truth = server.truth("orders")
    assert orders.height == orders["id"].n_unique() == 203
    assert dict(zip(orders["id"].to_list(), orders["updated_at"].to_list(), strict=True)) == {
        int(k): v for k, v in truth["updated_at"].items()
    }
    assert set(changed["inserted"]) | set(changed["updated"]) <= set(orders["id"].to_list())
    products = project.table("flat", "products", "current")
    assert sorted(products["id"].to_list()) == server.truth("products")["ids"]  # replaced
    mats = materializations(result)
    assert mats[("flat/orders", None)].metadata["dagster/row_count"].value == 203
    assert project.leftovers() == []
