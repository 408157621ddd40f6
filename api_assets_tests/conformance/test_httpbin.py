"""httpbin (the reference HTTP test service, a Flask app) served by waitress: every content
encoding a client meets, and what a run does when an API answers what it must not trust.

httpbin's `/gzip`, `/deflate` and `/brotli` compress whatever the client asked for: a body that is
one JSON object, which is one record. `/json` is a fixed document whose `slideshow.slides` is a
list of records. Proves, in one run:
- each encoding is decoded exactly once: the archive holds the JSON body, the table its record
  (httpbin's echo of the request, flattened: `headers__Host`, ...), and the manifest the
  `content-encoding` the body came in;
- `records_path` into a nested document lands the slides exactly as httpbin holds them;
- loud failures: a 503 that never ends (retried, then failed), an HTML answer where JSON was
  expected, and a redirect (the client never follows one, so that no credential can be sent
  where the source did not name): the run exits non-zero, each report says `failed` naming the
  cause, and none of them publishes a table.
"""

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from api_assets_tests.conformance.harness import (
    ConformanceProject,
    ServerProcess,
    assert_same_records,
    free_port,
    running_server,
)

pytestmark = pytest.mark.e2e

SOURCES = """
sources:
  - name: httpbin
    base_url: ${HTTPBIN_URL}
    rate_limit: {requests_per_second: 1000, burst: 100, max_concurrency: 4}
    retry: {max_attempts: 2, max_backoff_seconds: 0.2}
    partitions: {type: none}
    endpoints:
      - {name: gzip, path: /gzip}
      - {name: deflate, path: /deflate}
      - {name: brotli, path: /brotli}
      - name: slides
        path: /json
        records_path: slideshow.slides
        primary_key: title
      - {name: unavailable, path: /status/503}
      - {name: html, path: /html}
      - name: redirected
        path: /redirect-to
        params: {url: /json}
        records_path: slideshow.slides
"""
ENCODINGS = {
    "gzip": ("gzip", "gzipped"),
    "deflate": ("deflate", "deflated"),
    "brotli": ("br", "brotli"),
}
LOUD = {
    "unavailable": ["503"],
    "html": ["JSON"],
    "redirected": ["302", "redirects to /json", "`base_url` or `path`"],
}


@pytest.fixture(scope="module")
def httpbin_server(log_dir: Path) -> Iterator[ServerProcess]:
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "waitress",
        "--host=127.0.0.1",
        f"--port={port}",
        "httpbin:app",
    ]
    with running_server("httpbin", command, port=port, log_dir=log_dir) as server:
        yield server


def test_httpbin_encodings_decode_once_and_untrusted_answers_fail_loudly(
    httpbin_server: ServerProcess, project: Callable[..., ConformanceProject]
) -> None:
    proj = project(SOURCES, {"HTTPBIN_URL": httpbin_server.url})
    proc = proj.materialize("group:httpbin")
    assert proc.returncode != 0 and "RUN_FAILURE" in proc.stderr, proc.stderr[-3000:]
    host = httpbin_server.url.removeprefix("http://")

    for endpoint, (encoding, flag) in ENCODINGS.items():
        report = proj.report("httpbin", endpoint.strip())
        assert report["status"] == "success", report.get("error")
        assert (report["fetched"], report["records"], report["pages"]) == (1, 1, 1)
        assert all(c["passed"] for c in report["checks"]), report["checks"]
        (entry,) = proj.manifest("httpbin", endpoint)
        assert entry["headers"]["content-encoding"] == encoding
        body: dict[str, Any] = proj.archived_body("httpbin", endpoint, entry)
        assert body[flag] is True and body["method"] == "GET" and body["headers"]["Host"] == host
        # the client asked for every encoding it decodes
        assert {"gzip", "deflate", "br"} <= set(body["headers"]["Accept-Encoding"].split(", "))
        assert_same_records(proj.table("httpbin", endpoint), [body], key=flag)

    slides = httpbin_server.get_json("/json")["slideshow"]["slides"]
    assert_same_records(proj.table("httpbin", "slides"), slides, key="title")
    slides_report = proj.report("httpbin", "slides")
    assert slides_report["status"] == "success" and slides_report["records"] == len(slides)

    for endpoint, causes in LOUD.items():
        report = proj.report("httpbin", endpoint)
        assert report["status"] == "failed", report
        assert "httpbin" in report["error"], report["error"]
        for cause in causes:
            assert cause in report["error"], report["error"]
        assert not (proj.data / "tables" / "httpbin" / endpoint).exists()
