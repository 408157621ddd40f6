"""FastAPI + fastapi-pagination (SQLAlchemy extension, sqlakeyset cursors) behind Starlette's
GZipMiddleware, served by uvicorn: every paginator style FastAPI apps use, gzip-compressed.

One source, seven endpoints over the same 437 records, one `dagster asset materialize` run.
Proves that each of them lands the server's records exactly (every id once, every value intact),
that each run report says success with every check passed, and that the pages really came
gzip-compressed (the manifest's `content-encoding`) and were archived decoded once:

| endpoint | paginator | the API's signal |
| --- | --- | --- |
| limit_offset | `offset` + `total_path` | `total` in the body |
| total_header | `offset` + `total_header` | `X-Total-Count` header (`UseResponseHeaders`) |
| pages | `page_number` + `total_pages_path` | `pages` in the body |
| links | `next_url` + `next_path` | `links.next` in the body (a relative URL) |
| header_links | `link_header` | RFC 8288 `Link` (`UseHeaderLinks`) |
| cursor | `cursor` + `cursor_path` | `next_page` (an opaque, URL-quoted cursor) |
| keyset | `keyset` | `id > after ORDER BY id`, ends on an empty page |
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

COUNT = 437
SOURCES = """
sources:
  - name: fastapi
    base_url: ${FASTAPI_URL}
    rate_limit: {requests_per_second: 1000, burst: 100, max_concurrency: 4}
    retry: {max_attempts: 3, max_backoff_seconds: 1}
    partitions: {type: none}
    endpoints:
      - name: limit_offset
        path: /limit-offset
        records_path: items
        primary_key: id
        paginator: {type: offset, offset_param: offset, limit_param: limit, limit: 50, total_path: total}
      - name: total_header
        path: /limit-offset-header
        records_path: items
        primary_key: id
        paginator: {type: offset, limit: 40, total_header: X-Total-Count}
      - name: pages
        path: /pages
        records_path: items
        primary_key: id
        paginator: {type: page_number, page_param: page, size_param: size, size: 50, total_pages_path: pages}
      - name: links
        path: /links
        records_path: items
        primary_key: id
        paginator: {type: next_url, next_path: links.next, params: {size: 60}}
      - name: header_links
        path: /header-links
        records_path: items
        primary_key: id
        paginator: {type: link_header, params: {size: 45}}
      - name: cursor
        path: /cursor
        records_path: items
        primary_key: id
        paginator: {type: cursor, cursor_path: next_page, cursor_param: cursor, limit_param: size, limit: 50}
      - name: keyset
        path: /keyset
        primary_key: id
        paginator: {type: keyset, param: after, field: id, limit_param: limit, limit: 50}
"""
ENDPOINTS = ["limit_offset", "total_header", "pages", "links", "header_links", "cursor", "keyset"]


@pytest.fixture(scope="module")
def fastapi_server(log_dir: Path) -> Iterator[ServerProcess]:
    port = free_port()
    command = python_server("fastapi_pages", port, "--count", str(COUNT))
    with running_server("fastapi", command, port=port, log_dir=log_dir) as server:
        yield server


def test_every_fastapi_pagination_style_lands_the_whole_collection(
    fastapi_server: ServerProcess, project: Callable[..., ConformanceProject]
) -> None:
    truth = fastapi_server.get_json("/_truth")
    assert len(truth) == COUNT
    proj = project(SOURCES, {"FASTAPI_URL": fastapi_server.url})
    proj.materialize_ok("group:fastapi")
    for endpoint in ENDPOINTS:
        assert_same_records(proj.table("fastapi", endpoint), truth)
        report = proj.report("fastapi", endpoint)
        assert_complete_report(report, records=COUNT, min_pages=8)
        manifest = proj.manifest("fastapi", endpoint)
        assert {line["headers"].get("content-encoding") for line in manifest} == {"gzip"}
        # the archive holds each body decoded once: JSON, the records the server sent
        first = proj.archived_body("fastapi", endpoint, manifest[0])
        first_records = first if endpoint == "keyset" else first["items"]
        assert first_records == truth[: len(first_records)]
    # the styles that state a total report it; the others end on the API's own signal
    for endpoint in ("limit_offset", "total_header"):
        assert proj.report("fastapi", endpoint)["total_reported"] == COUNT
    assert proj.report("fastapi", "cursor")["stop_reason"] == "signal"
    assert proj.report("fastapi", "keyset")["stop_reason"] == "empty_page"
