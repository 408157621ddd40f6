"""The benchmark suite stays runnable: the floor and the engine contenders move every record of a
small run through the benchmark's own page server. No timing is asserted here (benchmarks are
scripts: `uv run --group bench python -m benchmarks`)."""

from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from benchmarks import contenders
from benchmarks.servers import PageServer, page_body

RECORDS = 2_000


@pytest.fixture(scope="module")
def page_server() -> Iterator[PageServer]:
    with PageServer() as server:
        yield server


def test_page_body_is_the_offset_window() -> None:
    import orjson

    body = orjson.loads(page_body(250, 200, 100))
    assert body["total"] == 250
    assert [r["id"] for r in body["data"]] == list(range(201, 251))
    assert body["data"][0]["price"]["currency"] in ("USD", "EUR", "GBP")


def test_floor_moves_every_record(page_server: PageServer, tmp_path: Path) -> None:
    result = contenders.run_floor(page_server.url, RECORDS, tmp_path)
    assert result["records"] == RECORDS
    ids = pl.read_parquet(tmp_path / "floor.parquet")["id"]
    assert ids.n_unique() == RECORDS


def test_engine_moves_every_record(page_server: PageServer, tmp_path: Path) -> None:
    result = contenders.run_engine(page_server.url, RECORDS, tmp_path)
    assert result["records"] == RECORDS
    # every page once, plus one probe past the stated total (the last page was full)
    assert result["requests"] == RECORDS // contenders.PAGE_SIZE + 1
    assert result["throttled"] == 0
