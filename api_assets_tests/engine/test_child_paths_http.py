"""A child endpoint's parent values go into its path as one escaped segment each
(`pagination/series.py`, `fill_path`), over real HTTP: a hostile value (`../../admin`,
`a?b=c`, `a/b`, `..`) never reaches another path or adds a query, and the table keeps the raw
values. The server records the raw request target (`raw_path`, before any decoding)."""

from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from api_assets.http.client import SourceClient
from api_assets.pipeline.ingest import ingest
from api_assets.storage.layout import DataLayout
from api_assets_tests.engine.conftest import make_source, the_endpoint
from api_assets_tests.engine.conftest_policy import serve

Clients = Callable[..., SourceClient]

# each hostile parent value and the one path segment it must become
SEGMENTS = {
    "../../admin": "..%2F..%2Fadmin",
    "a?b=c": "a%3Fb%3Dc",
    "a/b": "a%2Fb",
    ".": "%2E",
    "..": "%2E%2E",
    "50%": "50%25",
    "%2F": "%252F",
    "x#y": "x%23y",
    " sp": "%20sp",
    "ü": "%C3%BC",
    "plain-7": "plain-7",
}


class RawRecorder:
    """Records the raw path and query of every request; answers one line per request."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def app(self) -> Starlette:
        async def any_path(request: Request) -> Response:
            raw = request.scope["raw_path"].decode("ascii")
            self.seen.append((raw, request.scope["query_string"].decode("ascii")))
            body = {"lines": [{"line_no": 1, "sku": "s-1"}]}
            return Response(orjson.dumps(body), media_type="application/json")

        return Starlette(routes=[Route("/{path:path}", any_path)])


def test_hostile_parent_values_stay_one_path_segment_each(clients: Clients, tmp_path: Path) -> None:
    lines = {
        "name": "order_lines",
        "path": "/v1/orders/{order_id}/lines",
        "parent": {"endpoint": "orders", "fields": {"order_id": "id"}},
        "records_path": "lines",
        "primary_key": ["order_id", "line_no"],
    }
    orders = {"name": "orders", "path": "/v1/orders", "records_path": "data", "primary_key": "id"}
    recorder = RawRecorder()
    with serve(recorder.app()) as url:
        source = make_source(url, orders, lines, auth={"type": "none"})
        parent_rows: list[dict[str, Any]] = [{"order_id": value} for value in SEGMENTS]
        result = ingest(
            source,
            the_endpoint(source, "order_lines"),
            "2026-11-28",
            layout=DataLayout(tmp_path / "data"),
            client=clients(source),
            parent_rows=parent_rows,
        )

    expected = sorted(f"/v1/orders/{segment}/lines" for segment in SEGMENTS.values())
    assert sorted(path for path, _ in recorder.seen) == expected
    assert all(query == "" for _, query in recorder.seen), recorder.seen
    assert all(len(path.split("/")) == 5 for path, _ in recorder.seen)
    # the table keeps the values as the parent had them
    assert sorted(result.table.df["order_id"].to_list()) == sorted(SEGMENTS)
    assert result.report.status == "success"
