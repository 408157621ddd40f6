"""Feathers 5 on Koa with `@feathersjs/memory` (Node): `$limit`/`$skip` pages with `total` in the
body, Feathers' query syntax for keyset paging (`id[$gt]`, `$sort[id]=1`) and for an incremental
lower bound (`updated_at[$gt]`), and data changed through Feathers' own REST API between runs.

Proves, through two `dagster asset materialize` runs on two daily partitions:
- day 1 (`group:feathers`): the offset snapshot, the keyset series and the first incremental
  fetch (no lower bound yet) each land exactly the server's 311 records; reports say success
  with every check passed; the incremental watermark is the highest `updated_at` received;
- then 37 records are created (POST) and 24 updated (PATCH) on the server;
- day 2 (`feathers/raw/changes*`): the incremental endpoint sends its watermark as
  `updated_at[$gt]` and fetches only the delta, exactly the 61 changed records; the newest row
  per key (`read_table(current=True)`) equals the server's whole collection, updates included.
"""

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from api_assets_tests.conformance.harness import (
    ConformanceProject,
    ServerProcess,
    assert_complete_report,
    assert_same_records,
    free_port,
    node_command,
    running_server,
)
from api_assets_tests.conformance.servers.seed import make_records, timestamp

pytestmark = pytest.mark.e2e

COUNT = 311
CREATED = 37
UPDATED_IDS = list(range(5, COUNT, 13))  # 24 records spread over the collection
DAY1, DAY2 = "2026-03-01", "2026-03-02"
SOURCES = """
sources:
  - name: feathers
    base_url: ${FEATHERS_URL}
    rate_limit: {requests_per_second: 1000, burst: 100, max_concurrency: 4}
    retry: {max_attempts: 3, max_backoff_seconds: 1}
    partitions: {type: daily, start: "2026-01-01"}
    endpoints:
      - name: messages
        path: /messages
        records_path: data
        primary_key: id
        paginator:
          type: offset
          offset_param: $skip
          limit_param: $limit
          limit: 40
          total_path: total
          params: {"$sort[id]": 1}
      - name: by_id
        path: /messages
        records_path: data
        primary_key: id
        paginator:
          type: keyset
          param: id[$gt]
          field: id
          limit_param: $limit
          limit: 50
          params: {"$sort[id]": 1}
      - name: changes
        path: /messages
        records_path: data
        primary_key: id
        paginator:
          type: offset
          offset_param: $skip
          limit_param: $limit
          limit: 30
          total_path: total
          params: {"$sort[updated_at]": 1}
        incremental: {cursor_field: updated_at, param: "updated_at[$gt]", format: raw}
"""


@pytest.fixture(scope="module")
def feathers_server(log_dir: Path) -> Iterator[ServerProcess]:
    seed = log_dir / "feathers-seed.json"
    seed.write_text(json.dumps(make_records(COUNT, seed=23)))
    port = free_port()
    command = node_command("feathers_server.mjs", str(port), str(seed))
    with running_server("feathers", command, port=port, log_dir=log_dir) as server:
        yield server


def change_data(server: ServerProcess) -> list[dict[str, Any]]:
    """Create and update records through Feathers' REST API; returns the changed records as
    the server answered them, each `updated_at` past every earlier one."""
    changed = []
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for i, record in enumerate(make_records(CREATED, seed=29, first_id=COUNT + 1)):
            record["updated_at"] = timestamp(100_000 + i)
            response = client.post("/messages", json=record)
            response.raise_for_status()
            changed.append(response.json())
        for i, record_id in enumerate(UPDATED_IDS):
            patch = {
                "name": f"renamed “{record_id}”",
                "price": 0.25 + i,
                "quantity": None,
                "updated_at": timestamp(200_000 + i),
            }
            response = client.patch(f"/messages/{record_id}", json=patch)
            response.raise_for_status()
            changed.append(response.json())
    return changed


def test_feathers_offset_keyset_and_incremental_since(
    feathers_server: ServerProcess, project: Callable[..., ConformanceProject]
) -> None:
    truth = feathers_server.get_json("/truth")
    assert len(truth) == COUNT
    proj = project(SOURCES, {"FEATHERS_URL": feathers_server.url})

    proj.materialize_ok("group:feathers", partition=DAY1)
    for endpoint in ("messages", "by_id", "changes"):
        assert_same_records(proj.partition_table("feathers", endpoint, DAY1), truth)
        assert_complete_report(proj.report("feathers", endpoint, DAY1), records=COUNT)
    assert proj.report("feathers", "messages", DAY1)["total_reported"] == COUNT
    assert proj.report("feathers", "by_id", DAY1)["stop_reason"] == "empty_page"
    first = proj.report("feathers", "changes", DAY1)
    watermark = max(r["updated_at"] for r in truth)
    assert first["watermark_before"] is None
    assert first["watermark_after"] == watermark

    changed = change_data(feathers_server)
    truth_after = feathers_server.get_json("/truth")
    assert len(truth_after) == COUNT + CREATED

    proj.materialize_ok("feathers/raw/changes*", partition=DAY2)
    second = proj.report("feathers", "changes", DAY2)
    # Day 1's prices include whole numbers, which JavaScript writes as integers (`3.0` → `3`):
    # its snapshot types `price` integer|number. The 61 changed prices hold none, so day 2's is
    # `number` alone, and `schema_drift` warns of a retype although the column stays Float64.
    drift = "schema drift against 2026-03-01: retyped `price`"
    assert_complete_report(second, records=len(changed), warnings={"schema_drift": drift})
    assert second["watermark_before"] == watermark
    assert second["watermark_after"] == max(r["updated_at"] for r in changed)
    # only the delta was asked for: every request carried the watermark as Feathers' `$gt`
    manifest = proj.manifest("feathers", "changes", DAY2)
    assert {line["params"].get("updated_at[$gt]") for line in manifest} == {watermark}
    assert_same_records(proj.partition_table("feathers", "changes", DAY2), changed)
    assert_same_records(proj.table("feathers", "changes", current=True), truth_after)
    # the snapshot endpoints were not selected: day 2 has none of their files
    assert not (proj.data / "tables" / "feathers" / "messages" / f"{DAY2}.parquet").exists()
