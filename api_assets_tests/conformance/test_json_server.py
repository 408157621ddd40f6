"""json-server 0.17 (Node, Express): a REST API from a JSON file, paged the way it pages, and
compressed the way it compresses (Express' `compression`: brotli when asked, which the client
does).

Proves, in one run over 187 products:
- `offset` with `_start`/`_limit` and the total in the `X-Total-Count` header (`total_header`);
- `link_header` over `_page`/`_limit` (json-server's `Link` with `first`/`next`/`last`);
- an inclusive `keyset` on json-server's `id_gte` filter sorted by `_sort=id`: each page repeats
  the previous page's last record, the repeats are counted as `duplicates`, stored once, and the
  series ends on the page that holds nothing else;
each lands exactly the server's records, its report says success with every check passed, and
the pages came brotli-compressed.
"""

import json
from collections.abc import Callable, Iterator
from pathlib import Path

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
from api_assets_tests.conformance.servers.seed import make_records

pytestmark = pytest.mark.e2e

COUNT = 187
SOURCES = """
sources:
  - name: jsonserver
    base_url: ${JSON_SERVER_URL}
    rate_limit: {requests_per_second: 1000, burst: 100, max_concurrency: 4}
    retry: {max_attempts: 3, max_backoff_seconds: 1}
    partitions: {type: none}
    endpoints:
      - name: by_offset
        path: /products
        primary_key: id
        paginator: {type: offset, offset_param: _start, limit_param: _limit, limit: 40, total_header: X-Total-Count}
      - name: by_link
        path: /products
        primary_key: id
        paginator: {type: link_header, params: {_page: 1, _limit: 30}}
      - name: by_id
        path: /products
        primary_key: id
        paginator:
          type: keyset
          param: id_gte
          inclusive: true
          field: id
          limit_param: _limit
          limit: 50
          params: {_sort: id, _order: asc}
"""


@pytest.fixture(scope="module")
def json_server(log_dir: Path) -> Iterator[ServerProcess]:
    db = log_dir / "json-server-db.json"
    db.write_text(json.dumps({"products": make_records(COUNT, seed=31)}))
    port = free_port()
    command = node_command(
        "node_modules/json-server/lib/cli/bin.js",
        *("--host", "127.0.0.1", "--port", str(port), "--quiet", str(db)),
    )
    with running_server("json-server", command, port=port, log_dir=log_dir) as server:
        yield server


def test_json_server_offset_link_and_inclusive_keyset_pages_land_whole(
    json_server: ServerProcess, project: Callable[..., ConformanceProject]
) -> None:
    truth = json_server.get_json("/products")
    assert len(truth) == COUNT
    proj = project(SOURCES, {"JSON_SERVER_URL": json_server.url})
    proj.materialize_ok("group:jsonserver")

    for endpoint in ("by_offset", "by_link", "by_id"):
        assert_same_records(proj.table("jsonserver", endpoint), truth)
        # `compression` leaves bodies under 1 kB alone (the keyset's last page: one record)
        encodings = {
            line["headers"].get("content-encoding")
            for line in proj.manifest("jsonserver", endpoint)
            if line["records"] > 5
        }
        assert encodings == {"br"}, f"{endpoint}: {encodings}"

    by_offset = proj.report("jsonserver", "by_offset")
    assert_complete_report(by_offset, records=COUNT, min_pages=5)
    assert by_offset["total_reported"] == COUNT

    by_link = proj.report("jsonserver", "by_link")
    assert_complete_report(by_link, records=COUNT, min_pages=7)
    assert by_link["stop_reason"] == "signal"

    # inclusive bounds: every page after the first starts with the previous page's last record
    by_id = proj.report("jsonserver", "by_id")
    overlaps = by_id["pages"] - 1
    assert_complete_report(by_id, records=COUNT, fetched=COUNT + overlaps, min_pages=4)
    assert by_id["duplicates"] == overlaps
    # pages of 50 from id 1: 1-50, 50-99, 99-148, 148-187, then 187 alone ends the series
    bounds = [line["params"].get("id_gte") for line in proj.manifest("jsonserver", "by_id")]
    assert bounds == [None, "50", "99", "148", "187"]
    assert by_id["stop_reason"] == "empty_page"
