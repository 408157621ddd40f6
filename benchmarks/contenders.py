"""The contenders, each a plain function of (server URL, records, output folder) that moves every
record into Parquet and returns what it measured: `elapsed` (seconds of work, imports and
interpreter start excluded) and `records` (rows read back from what it wrote).

- `floor`: a bare httpx loop, `json.loads`, `pl.from_dicts`, one `write_parquet`;
- `dlt`: dlt `rest_api` → filesystem destination (local folder), Parquet, default settings;
- `engine`: `api_assets.pipeline.ingest.ingest` alone, from a sources YAML like the end-to-end one;
- `e2e`: `dagster asset materialize` as a subprocess (see `e2e_command`); its wall time is
  measured by the caller, whole process start included.

`python -m benchmarks.worker` runs these in a fresh process so that each run gets its own
peak RSS.
"""

import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

PAGE_SIZE = 100
SOURCE = "bench"
ENDPOINT = "products"
# The engine's rate limiter is always on: "unlimited" is a budget no run can reach.
UNLIMITED = {"requests_per_second": 100000, "burst": 100000}
ENGINE_CONCURRENCY = 4  # the sources model's default `max_concurrency`


def today() -> str:
    return datetime.now(UTC).date().isoformat()


def products_path(records: int) -> str:
    return f"/{records}/{ENDPOINT}"


# --- floor ---------------------------------------------------------------------------------


def run_floor(url: str, records: int, out: Path) -> dict[str, Any]:
    import httpx
    import polars as pl

    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    offset = 0
    with httpx.Client(base_url=url, timeout=60) as client:
        while True:
            response = client.get(
                products_path(records), params={"offset": offset, "limit": PAGE_SIZE}
            )
            response.raise_for_status()
            body = json.loads(response.content)
            rows.extend(body["data"])
            offset += PAGE_SIZE
            if offset >= body["total"]:
                break
    path = out / "floor.parquet"
    pl.from_dicts(rows).write_parquet(path)
    elapsed = time.perf_counter() - started
    return {"elapsed": elapsed, "records": _parquet_rows([path])}


# --- dlt -----------------------------------------------------------------------------------


def run_dlt(url: str, records: int, out: Path) -> dict[str, Any]:
    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
    import dlt
    from dlt.sources.rest_api import rest_api_source

    started = time.perf_counter()
    source = rest_api_source(
        {
            "client": {
                "base_url": url,
                "paginator": {
                    "type": "offset",
                    "limit": PAGE_SIZE,
                    "offset_param": "offset",
                    "limit_param": "limit",
                    "total_path": "total",
                },
            },
            "resources": [
                {
                    "name": ENDPOINT,
                    "endpoint": {"path": products_path(records), "data_selector": "data"},
                }
            ],
        }
    )
    pipeline = dlt.pipeline(
        pipeline_name="bench",
        pipelines_dir=str(out / "pipelines"),
        destination=dlt.destinations.filesystem(bucket_url=(out / "lake").as_uri()),
        dataset_name="bench",
    )
    pipeline.run(source, loader_file_format="parquet")
    elapsed = time.perf_counter() - started
    files = sorted((out / "lake" / "bench" / ENDPOINT).glob("*.parquet"))
    return {"elapsed": elapsed, "records": _parquet_rows(files)}


# --- our engine ----------------------------------------------------------------------------


def sources_yaml(
    url: str,
    records: int,
    *,
    max_concurrency: int = ENGINE_CONCURRENCY,
    requests_per_second: float = UNLIMITED["requests_per_second"],
    burst: int = UNLIMITED["burst"],
) -> str:
    """The sources file both the engine and the end-to-end contender run."""
    return f"""\
sources:
  - name: {SOURCE}
    base_url: {url}
    rate_limit: {{requests_per_second: {requests_per_second}, burst: {burst}, \
max_concurrency: {max_concurrency}}}
    retry: {{max_attempts: 6, max_backoff_seconds: 30}}
    partitions: {{type: daily, start: "{today()}"}}
    endpoints:
      - name: {ENDPOINT}
        path: {products_path(records)}
        records_path: data
        primary_key: id
        paginator: {{type: offset, limit: {PAGE_SIZE}, offset_param: offset, \
limit_param: limit, total_path: total}}
"""


def run_engine(
    url: str, records: int, out: Path, *, yaml_text: str | None = None
) -> dict[str, Any]:
    """One `ingest` of today's partition; `yaml_text` overrides the default sources file."""
    from api_assets.config.loader import load_sources
    from api_assets.http.client import SourceClient
    from api_assets.http.ratelimit import clear_limiters
    from api_assets.pipeline.ingest import ingest
    from api_assets.storage.layout import DataLayout

    path = out / "sources.yaml"
    path.write_text(yaml_text or sources_yaml(url, records))
    source = load_sources(str(path))[0]
    endpoint = source.endpoints[0]
    layout = DataLayout(out / "data")
    clear_limiters()  # a limiter is per process and per source: start from this config
    started = time.perf_counter()
    client = SourceClient(source, shared_dir=layout.state_dir() / "ratelimit")
    try:
        result = ingest(source, endpoint, today(), layout=layout, client=client)
    finally:
        client.close()
    elapsed = time.perf_counter() - started
    return {
        "elapsed": elapsed,
        "records": _parquet_rows([layout.table_path(source.name, endpoint.name, today())]),
        "requests": result.stats.requests,
        "throttled": result.stats.throttled,
        "retries": result.stats.retries,
    }


def run_children(url: str, orders: list[int], out: Path, max_concurrency: int) -> dict[str, Any]:
    """The child fan-out of issue 9: `order_lines` of the demo API, one request per order."""
    from api_assets.config.loader import load_sources
    from api_assets.http.client import SourceClient
    from api_assets.http.ratelimit import clear_limiters
    from api_assets.pipeline.ingest import ingest
    from api_assets.storage.layout import DataLayout

    path = out / "sources.yaml"
    path.write_text(f"""\
sources:
  - name: shop
    base_url: {url}
    auth: {{type: api_key, name: X-API-Key, value: demo-key-1}}
    rate_limit: {{requests_per_second: 100000, burst: 100000, max_concurrency: {max_concurrency}}}
    partitions: {{type: daily, start: "{today()}"}}
    endpoints:
      - name: orders
        path: /v1/orders
        records_path: data
        primary_key: id
        paginator: {{type: cursor, cursor_path: next_cursor, cursor_param: cursor, limit_param: \
limit, limit: 100}}
      - name: order_lines
        path: /v1/orders/{{order_id}}/lines
        parent: {{endpoint: orders, fields: {{order_id: id}}}}
        records_path: lines
        primary_key: [order_id, line_no]
""")
    source = load_sources(str(path))[0]
    endpoint = source.endpoint("order_lines")
    layout = DataLayout(out / "data")
    clear_limiters()
    started = time.perf_counter()
    client = SourceClient(source, shared_dir=layout.state_dir() / "ratelimit")
    try:
        result = ingest(
            source,
            endpoint,
            today(),
            layout=layout,
            client=client,
            parent_rows=[{"order_id": oid} for oid in orders],
        )
    finally:
        client.close()
    return {
        "elapsed": time.perf_counter() - started,
        "records": result.table.df.height,
        "requests": result.stats.requests,
    }


# --- end to end ----------------------------------------------------------------------------


def e2e_command(python: str) -> list[str]:
    """`dagster asset materialize` for the three assets of the benchmark endpoint, today."""
    dagster = str(Path(python).with_name("dagster"))
    select = f"{SOURCE}/raw/{ENDPOINT},{SOURCE}/{ENDPOINT},{SOURCE}/schema/{ENDPOINT}"
    return [
        dagster,
        "asset",
        "materialize",
        "-m",
        "api_assets.definitions",
        "--select",
        select,
        "--partition",
        today(),
    ]


def e2e_records(data_dir: Path) -> int:
    from api_assets.storage.layout import DataLayout

    return _parquet_rows([DataLayout(data_dir).table_path(SOURCE, ENDPOINT, today())])


# --- helpers -------------------------------------------------------------------------------


def _parquet_rows(files: list[Path]) -> int:
    import polars as pl

    return sum(pl.scan_parquet(f).select(pl.len()).collect().item() for f in files if f.exists())
