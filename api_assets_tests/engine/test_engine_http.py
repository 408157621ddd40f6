"""`engine.ingest` end to end over real HTTP against the demo API: each kind of endpoint
(snapshot, incremental, window, child) lands exactly the truth with its archive, schema and
report; what the client sent is read back from the server's request log; a safety cap or a bad
parameter fails loudly having published nothing; a secret never reaches the disk or an error."""

import gzip
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import polars as pl
import pytest

from api_assets.config.models import SourceConfig
from api_assets.demo_api import DemoServer
from api_assets.errors import FetchError, IncompleteError
from api_assets.http.client import SourceClient
from api_assets.pipeline import checks
from api_assets.pipeline.ingest import IngestResult, ingest
from api_assets.storage.layout import DataLayout
from api_assets_tests.engine.conftest import (
    API_KEY_QUERY,
    KEY_2,
    endpoint,
    make_source,
    statuses,
    the_endpoint,
    truth_ids,
    v1_log,
)

Clients = Callable[..., SourceClient]
PARTITION = "2026-11-28"


@pytest.fixture
def layout(tmp_path: Path) -> DataLayout:
    return DataLayout(tmp_path / "data")


def run(
    source: SourceConfig,
    clients: Clients,
    layout: DataLayout,
    name: str | None = None,
    partition: str = PARTITION,
    **kwargs: Any,
) -> IngestResult:
    ep = the_endpoint(source, name)
    return ingest(source, ep, partition, layout=layout, client=clients(source), **kwargs)


def manifest(layout: DataLayout, source: str, ep: str, partition: str = PARTITION) -> list[Any]:
    path = layout.raw_dir(source, ep, partition) / "manifest.jsonl"
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def report(layout: DataLayout, source: str, ep: str, partition: str = PARTITION) -> Any:
    return orjson.loads(layout.report_path(source, ep, partition).read_bytes())


def every_byte_on_disk(root: Path) -> bytes:
    """All files under `root`, gzip members decompressed, concatenated."""
    out = []
    for path in sorted(root.rglob("*")):
        if path.is_file():
            data = path.read_bytes()
            out.append(gzip.decompress(data) if path.suffix == ".gz" else data)
    return b"\n".join(out)


# --- a snapshot endpoint, all the evidence ------------------------------------------------------


def test_snapshot_ingest_lands_the_truth_with_archive_schema_and_report(
    demo_api: DemoServer, clients: Clients, layout: DataLayout
) -> None:
    source = make_source(demo_api.url, "products", auth=API_KEY_QUERY)
    result = run(source, clients, layout)

    truth = truth_ids(demo_api, "products", status="active")
    assert sorted(result.table.df["id"].to_list()) == truth
    on_disk = pl.read_parquet(layout.table_path("shop", "products", PARTITION))
    assert sorted(on_disk["id"].to_list()) == truth
    assert set(on_disk["_partition"].to_list()) == {PARTITION}

    log = v1_log(demo_api)
    entries = manifest(layout, "shop", "products")
    assert len(entries) == len(log) == result.stats.pages
    assert [e["status"] for e in entries] == [200] * len(entries)
    assert sum(e["records"] for e in entries) == len(truth)
    assert sorted(int(e["params"]["offset"]) for e in entries) == sorted(
        int(r["params"]["offset"]) for r in log
    )
    assert all(e["params"]["api_key"] == "***" for e in entries)

    rep = report(layout, "shop", "products")
    assert rep["status"] == "success" and rep["error"] is None
    assert rep["fetched"] == rep["records"] == rep["total_reported"] == len(truth)
    assert rep["pages"] == rep["requests"] == len(log)
    assert rep["retries"] == rep["throttled"] == rep["duplicates"] == 0
    by_name = {c["name"]: c for c in rep["checks"]}
    assert set(by_name) == {checks.COMPLETENESS, checks.SCHEMA_DRIFT, checks.PAGE_COUNT_ANOMALY}
    assert by_name[checks.COMPLETENESS]["passed"] is True
    assert layout.schema_path("shop", "products", PARTITION).exists()

    # the key went out on every request and never reached the disk
    assert {r["credential"] for r in log} == {"api_key#2"}
    assert KEY_2.encode() not in every_byte_on_disk(layout.root)


def test_rematerializing_replaces_the_partition(
    demo_api: DemoServer, clients: Clients, layout: DataLayout
) -> None:
    source = make_source(demo_api.url, "customers")
    run(source, clients, layout)
    demo_api.mutate("customers", inserts=5)
    result = run(source, clients, layout)
    files = list(layout.table_dir("shop", "customers").glob("*.parquet"))
    assert files == [layout.table_path("shop", "customers", PARTITION)]
    ids = pl.read_parquet(files[0])["id"].to_list()
    assert len(ids) == len(set(ids))
    assert sorted(ids) == truth_ids(demo_api, "customers") == sorted(result.table.df["id"])


def test_failed_rerun_keeps_the_previous_partition(
    demo_api: DemoServer, clients: Clients, layout: DataLayout
) -> None:
    source = make_source(demo_api.url, "customers")
    run(source, clients, layout)
    before = layout.table_path("shop", "customers", PARTITION).read_bytes()
    old_manifest = manifest(layout, "shop", "customers")

    demo_api.set_faults("empty_page", path="/v1/customers", count=1)
    with pytest.raises(IncompleteError):
        run(source, clients, layout)
    assert layout.table_path("shop", "customers", PARTITION).read_bytes() == before
    assert manifest(layout, "shop", "customers") == old_manifest
    assert report(layout, "shop", "customers")["status"] == "failed"


# --- incremental, window and child endpoints ---------------------------------------------------


def test_incremental_sends_the_watermark_minus_lookback_and_advances(
    demo_api: DemoServer, clients: Clients, layout: DataLayout
) -> None:
    ep = endpoint(
        "orders",
        incremental={
            "cursor_field": "updated_at",
            "param": "updated_since",
            "initial_value": "2020-01-01T00:00:00Z",
            "lookback_seconds": 3600,
            "format": "iso8601",
        },
    )
    source = make_source(demo_api.url, ep)
    first = run(source, clients, layout, partition="2026-11-27")
    truth = demo_api.truth("orders")
    assert sorted(first.table.df["id"].to_list()) == sorted(truth["ids"])
    assert v1_log(demo_api)[0]["params"]["updated_since"] == "2019-12-31T23:00:00Z"
    newest = max(truth["updated_at"].values())
    assert first.watermark_after == newest

    demo_api.clear_requests()
    changed = demo_api.mutate("orders", updates=7)
    second = run(source, clients, layout, partition=PARTITION)
    sent = v1_log(demo_api)[0]["params"]["updated_since"]
    bound = datetime.fromisoformat(newest.replace("Z", "+00:00")) - timedelta(hours=1)
    assert datetime.fromisoformat(sent.replace("Z", "+00:00")) == bound
    got = set(second.table.df["id"].to_list())
    assert set(changed["updated"]) <= got
    assert got == {int(i) for i in demo_api.truth("orders", updated_since=sent)["ids"]}
    # the lookback re-reads what the first run ended with: counted, not treated as missing
    assert second.report.duplicates == second.lookback_duplicates > 0
    assert second.report.watermark_before == newest
    assert second.watermark_after > newest


def test_window_endpoint_fetches_exactly_its_day(
    demo_api: DemoServer, clients: Clients, layout: DataLayout
) -> None:
    ep = endpoint(
        "events", window={"start_param": "since", "end_param": "until", "format": "iso8601"}
    )
    source = make_source(demo_api.url, ep)
    day = (datetime.now(UTC) - timedelta(days=1)).date()
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    window = (start, start + timedelta(days=1))
    result = run(source, clients, layout, partition=day.isoformat(), window=window)

    since, until = (w.isoformat().replace("+00:00", "Z") for w in window)
    log = v1_log(demo_api)
    assert log[0]["params"] == {"per_page": "200", "since": since, "until": until}
    truth = truth_ids(demo_api, "events", since=since, until=until)
    assert truth, "the demo has events on every day of its range"
    assert sorted(result.table.df["id"].to_list()) == truth
    assert result.report.status == "success"


def test_child_endpoint_fans_out_over_the_parent_table(
    demo_api: DemoServer, clients: Clients, layout: DataLayout
) -> None:
    lines = {
        "name": "order_lines",
        "path": "/v1/orders/{order_id}/lines",
        "parent": {"endpoint": "orders", "fields": {"order_id": "id"}},
        "records_path": "lines",
        "primary_key": ["order_id", "line_no"],
    }
    source = make_source(demo_api.url, endpoint("orders", paginator={"max_pages": 1}), lines)
    # the parent table: the first page of orders (a capped parent fails, so build it here)
    parent_ids = truth_ids(demo_api, "orders")[:40]
    result = run(
        source,
        clients,
        layout,
        name="order_lines",
        parent_rows=[{"order_id": i} for i in parent_ids],
    )
    df = result.table.df
    assert sorted(set(df["order_id"].to_list())) == parent_ids
    truth = {tuple(p) for p in demo_api.truth("order_lines")["ids"] if p[0] in set(parent_ids)}
    assert set(zip(df["order_id"].to_list(), df["line_no"].to_list(), strict=True)) == truth
    assert len(v1_log(demo_api)) == len(parent_ids)
    assert result.report.status == "success" and result.report.records == len(truth)


# --- loud failures ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["products", "orders", "events"])
def test_max_pages_is_a_completeness_error(
    demo_api: DemoServer, clients: Clients, layout: DataLayout, name: str
) -> None:
    source = make_source(demo_api.url, endpoint(name, paginator={"max_pages": 2}))
    with pytest.raises(IncompleteError) as info:
        run(source, clients, layout)
    assert "max_pages" in str(info.value)
    assert len(v1_log(demo_api)) == 2
    rep = report(layout, "shop", name)
    assert rep["status"] == "failed" and "max_pages" in rep["error"]
    assert rep["stop_reason"] == "max_pages" and rep["pages"] == 2
    completeness = next(c for c in rep["checks"] if c["name"] == checks.COMPLETENESS)
    assert completeness["passed"] is False and completeness["severity"] == "ERROR"
    assert not layout.table_path("shop", name, PARTITION).exists()
    assert not layout.raw_dir("shop", name, PARTITION).exists()


def test_bad_param_fails_with_a_report_naming_the_request_without_the_key(
    demo_api: DemoServer, clients: Clients, layout: DataLayout
) -> None:
    source = make_source(
        demo_api.url, endpoint("products", params={"status": "bogus"}), auth=API_KEY_QUERY
    )
    with pytest.raises(FetchError) as info:
        run(source, clients, layout)
    assert info.value.status == 400
    rep = report(layout, "shop", "products")
    assert rep["status"] == "failed"
    for text in (str(info.value), rep["error"]):
        assert "HTTP 400" in text and "/v1/products" in text and "status=bogus" in text
        assert "source `shop`" in text and "endpoint `products`" in text
    assert statuses(v1_log(demo_api)) == [400]
    assert KEY_2.encode() not in every_byte_on_disk(layout.root)
    assert not layout.table_path("shop", "products", PARTITION).exists()


def test_no_secret_in_errors_of_a_failing_run(
    demo_api: DemoServer, clients: Clients, layout: DataLayout
) -> None:
    demo_api.set_faults("5xx_burst", path="/v1/products", after=1, persistent=True)
    source = make_source(
        demo_api.url,
        "products",
        auth=API_KEY_QUERY,
        retry={"max_attempts": 2, "max_backoff_seconds": 0.05},
    )
    with pytest.raises(FetchError) as info:
        run(source, clients, layout)
    assert "503" in str(info.value)
    assert KEY_2 not in str(info.value) and KEY_2 not in repr(info.value.args)
    assert "api_key=***" in str(info.value)
    assert KEY_2.encode() not in every_byte_on_disk(layout.root)


def test_ingest_with_the_process_client_shares_the_limiter_on_disk(
    demo_api: DemoServer, clients: Clients, layout: DataLayout
) -> None:
    """Without an explicit client, `ingest` uses the process's client, whose limiter state lives
    under the data root's `.state/` for other processes to share."""
    clients  # noqa: B018  (the fixture clears the process-wide limiters and tokens)
    source = make_source(demo_api.url, "categories")
    result = ingest(source, the_endpoint(source), "current", layout=layout)
    assert result.report.records == 12
    shared = list((layout.state_dir() / "ratelimit").glob("*.bucket"))
    assert len(shared) == 1
    assert len(v1_log(demo_api)) == 1
