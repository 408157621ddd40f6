"""Flask-Smorest (marshmallow schemas, `@blp.paginate(Page)`) served by waitress, a production
WSGI server: page-number pagination stated in headers, not in the body.

Flask-Smorest puts its paging metadata in the `X-Pagination` JSON header; through its documented
hook (`LinkedBlueprint`) the same metadata also goes out as `X-Total-Count` and an RFC 8288
`Link` header with absolute URLs. The body is a bare JSON list (no `records_path`).

Proves, in one run over 263 pets: `page_number` with `total_header` (the pages after the first
fetched concurrently from the stated total) and `link_header` (followed one after the other,
to the page without `rel="next"`) both land exactly the server's records, with reports that
say success and every check passed.
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

COUNT = 263
SOURCES = """
sources:
  - name: smorest
    base_url: ${SMOREST_URL}
    rate_limit: {requests_per_second: 1000, burst: 100, max_concurrency: 4}
    retry: {max_attempts: 3, max_backoff_seconds: 1}
    partitions: {type: none}
    endpoints:
      - name: pets_by_page
        path: /pets
        primary_key: id
        paginator: {type: page_number, page_param: page, size_param: page_size, size: 25, total_header: X-Total-Count}
      - name: pets_by_link
        path: /pets
        primary_key: id
        paginator: {type: link_header, params: {page_size: 30}}
"""


@pytest.fixture(scope="module")
def smorest_server(log_dir: Path) -> Iterator[ServerProcess]:
    port = free_port()
    command = python_server("smorest_pets", port, "--count", str(COUNT))
    with running_server("flask-smorest", command, port=port, log_dir=log_dir) as server:
        yield server


def test_flask_smorest_pages_land_whole_by_total_header_and_by_link_header(
    smorest_server: ServerProcess, project: Callable[..., ConformanceProject]
) -> None:
    truth = smorest_server.get_json("/_truth")
    assert len(truth) == COUNT
    proj = project(SOURCES, {"SMOREST_URL": smorest_server.url})
    proj.materialize_ok("group:smorest")

    assert_same_records(proj.table("smorest", "pets_by_page"), truth)
    by_page = proj.report("smorest", "pets_by_page")
    assert_complete_report(by_page, records=COUNT, min_pages=11)
    assert by_page["total_reported"] == COUNT
    assert by_page["stop_reason"] == "total_reached"

    assert_same_records(proj.table("smorest", "pets_by_link"), truth)
    by_link = proj.report("smorest", "pets_by_link")
    assert_complete_report(by_link, records=COUNT, min_pages=9)
    assert by_link["stop_reason"] == "signal"
    # the Link header's URLs were followed as given: pages 1 to 9 in order, each once
    pages = [line["params"].get("page") for line in proj.manifest("smorest", "pets_by_link")]
    assert pages == [None, *map(str, range(2, by_link["pages"] + 1))]
