"""The live run and a rebuild from the archive find records by one rule (`records.records_in`):
for every body shape, served over HTTP, the table a run commits and the table rebuilt from its
archive alone hold the same rows, and a body the rule refuses fails the run (nothing archived
for a rebuild to disagree with)."""

from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from polars.testing import assert_frame_equal
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from api_assets.errors import FetchError
from api_assets.http.client import SourceClient
from api_assets.pipeline.ingest import ingest
from api_assets.pipeline.rebuild import rebuild_table
from api_assets.storage.layout import DataLayout
from api_assets_tests.engine.conftest import make_source, the_endpoint
from api_assets_tests.engine.conftest_policy import serve

PARTITION = "2026-11-28"

# (records_path, body) pairs a run accepts
ACCEPTED: list[tuple[str | None, Any]] = [
    (None, [{"id": 1, "a": {"b": 2}}, {"id": 2, "a": {"b": 3}, "tags": ["x"]}]),
    (None, {"id": 7, "name": "one object is one record"}),
    ("data", {"data": [{"id": 1}, {"id": 2, "extra": None}], "total": 2}),
    ("data.items", {"data": {"items": [{"id": 1, "list": [{"k": 1}]}]}}),
    ("pages.0.rows", {"pages": [{"rows": [{"id": 3}]}]}),
    ("data", {"data": {"id": 9}}),
    ("data", {"data": []}),
]
# bodies the rule refuses
REFUSED: list[tuple[str | None, Any]] = [
    ("data", {"data": None}),
    ("data", {"data": [1, "x"]}),
    ("data", {"other": []}),
    ("data", {"error": {"message": "nope"}}),
    (None, [{"id": 1}, 2]),
    (None, 5),
]


def body_server(body: Any) -> Starlette:
    async def page(request: Request) -> Response:
        return Response(orjson.dumps(body), media_type="application/json")

    return Starlette(routes=[Route("/items", page)])


def one_page_source(url: str, records_path: str | None) -> Any:
    endpoint: dict[str, Any] = {"name": "items", "path": "/items", "primary_key": "id"}
    if records_path is not None:
        endpoint["records_path"] = records_path
    return make_source(url, endpoint, auth={"type": "none"})


@pytest.mark.parametrize(("records_path", "body"), ACCEPTED)
def test_a_rebuild_finds_the_records_the_run_found(
    clients: Callable[..., SourceClient], tmp_path: Path, records_path: str | None, body: Any
) -> None:
    layout = DataLayout(tmp_path / "data")
    with serve(body_server(body)) as url:
        source = one_page_source(url, records_path)
        endpoint = the_endpoint(source)
        live = ingest(source, endpoint, PARTITION, layout=layout, client=clients(source))
    rebuilt = rebuild_table(source, endpoint, PARTITION, layout=layout)
    columns = [c for c in live.table.df.columns if c != "_ingested_at"]
    assert rebuilt.records == live.table.records
    assert_frame_equal(rebuilt.df.select(columns), live.table.df.select(columns))


@pytest.mark.parametrize(("records_path", "body"), REFUSED)
def test_a_body_the_rule_refuses_fails_the_run_and_archives_nothing(
    clients: Callable[..., SourceClient], tmp_path: Path, records_path: str | None, body: Any
) -> None:
    layout = DataLayout(tmp_path / "data")
    with serve(body_server(body)) as url:
        source = one_page_source(url, records_path)
        with pytest.raises(FetchError):
            ingest(source, the_endpoint(source), PARTITION, layout=layout, client=clients(source))
    assert not layout.raw_dir(source.name, "items", PARTITION).exists()
