"""A FastAPI app behind slowapi, a real rate limiter (10 requests a second per client, fixed
window), that announces no budget until it refuses: 429 with `Retry-After`. The sources file
allows 50 requests a second with a burst of 20, so the client does run into the limiter.

Proves, in one run over 300 readings in pages of 10 (fastapi-pagination `Page`, the pages after
the first fetched concurrently from the stated total): the server really refused requests (it
counts its 429s) and the report's `throttled` is exactly that count; every refused page was
retried after `Retry-After`, so the table equals the server's readings exactly, the report says
success and every check passed.
"""

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from api_assets_tests.conformance.harness import (
    ConformanceProject,
    ServerProcess,
    assert_complete_report,
    assert_same_records,
    free_port,
    python_server,
    running_server,
)

pytestmark = pytest.mark.e2e

COUNT = 300
SERVER_LIMIT = "10/second"
SOURCES = """
sources:
  - name: limited
    base_url: ${LIMITED_URL}
    rate_limit: {requests_per_second: 50, burst: 20, max_concurrency: 4}
    retry: {max_attempts: 8, max_backoff_seconds: 2}
    partitions: {type: none}
    endpoints:
      - name: readings
        path: /readings
        records_path: items
        primary_key: id
        paginator: {type: page_number, page_param: page, size_param: size, size: 10, total_path: total}
"""


@pytest.fixture(scope="module")
def limited_server(log_dir: Path) -> Iterator[ServerProcess]:
    port = free_port()
    command = python_server("rate_limited", port, "--count", str(COUNT), "--limit", SERVER_LIMIT)
    with running_server("slowapi", command, port=port, log_dir=log_dir) as server:
        yield server


def test_real_429s_are_retried_after_retry_after_and_the_table_is_complete(
    limited_server: ServerProcess, project: Callable[..., ConformanceProject]
) -> None:
    truth = limited_server.get_json("/_truth")
    assert len(truth) == COUNT
    before = limited_server.get_json("/_stats")
    proj = project(SOURCES, {"LIMITED_URL": limited_server.url})
    proj.materialize_ok("group:limited")
    after = limited_server.get_json("/_stats")

    report = proj.report("limited", "readings")
    assert_complete_report(report, records=COUNT, min_pages=COUNT // 10)
    assert report["total_reported"] == COUNT
    assert_same_records(proj.table("limited", "readings"), truth)
    refused = after["throttled"] - before["throttled"]
    assert refused > 0, "the server never refused a request: the limiter was not exercised"
    assert report["throttled"] == refused
    assert report["requests"] == report["pages"] + refused
    assert after["served"] - before["served"] == report["pages"]
    # the refused requests are in the archive's manifest only as the pages that finally passed
    assert all(line["status"] == 200 for line in proj.manifest("limited", "readings"))
