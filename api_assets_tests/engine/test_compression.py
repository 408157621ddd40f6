"""Compressed answers end to end, against the demo API (which compresses like production APIs).

Every coding a real API sends (gzip, deflate, br, zstd) decodes exactly once and the table holds
every record; the archive keeps the decoded body and the manifest names the coding it came in.
A decompression bomb stops at `max_page_bytes` with bounded memory and is not retried; the bytes
read off the wire have their own cap; a body that does not hold its declared Content-Encoding is
a `FetchError` naming the coding, retried like any broken body."""

import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from api_assets.config.models import SourceConfig
from api_assets.demo_api import DemoConfig, DemoServer
from api_assets.demo_api.compression import bomb
from api_assets.errors import FetchError
from api_assets.http.client import PageTooLarge, SourceClient
from api_assets.pipeline.ingest import ingest
from api_assets.storage.archive import ArchiveReader
from api_assets.storage.layout import DataLayout
from api_assets_tests.engine.conftest import (
    endpoint,
    fetch,
    ids_of,
    make_source,
    the_endpoint,
    truth_ids,
    v1_log,
)

Clients = Callable[..., SourceClient]
PARTITION = "2026-11-28"
CODINGS = ["gzip", "deflate", "br", "zstd"]


@pytest.fixture(scope="module")
def module_server() -> Iterator[DemoServer]:
    with DemoServer(DemoConfig.small()) as server:
        yield server


@pytest.fixture
def server(module_server: DemoServer) -> DemoServer:
    module_server.reset()
    module_server.clear_faults()
    return module_server


def accepting(coding: str, url: str, *endpoints: Any, **extra: Any) -> SourceConfig:
    return make_source(url, *endpoints, headers={"Accept-Encoding": coding}, **extra)


@pytest.mark.parametrize("coding", CODINGS)
def test_every_coding_decodes_once_into_a_complete_table(
    server: DemoServer, clients: Clients, tmp_path: Path, coding: str
) -> None:
    source = accepting(coding, server.url, "products")
    layout = DataLayout(tmp_path / "data")
    result = ingest(source, the_endpoint(source), PARTITION, layout=layout, client=clients(source))
    assert sorted(result.table.df["id"].to_list()) == truth_ids(server, "products", status="active")
    assert result.stats.pages > 1
    pages = list(ArchiveReader(layout, "shop", "products", PARTITION).iter_pages())
    assert len(pages) == result.stats.pages
    for entry, body in pages:
        assert entry["headers"]["content-encoding"] == coding
        # the archive holds what the engine parsed: the decoded JSON, not the wire bytes
        assert isinstance(orjson.loads(body)["data"], list)
        assert entry["bytes"] == len(body)


def test_an_ordinary_client_gets_gzip_and_small_bodies_go_plain(
    server: DemoServer, clients: Clients
) -> None:
    tiny = {**endpoint("products", paginator={"limit": 1, "max_pages": 1}), "name": "tiny"}
    source = make_source(server.url, "products", tiny)
    client = clients(source)
    pages, _ = fetch(client, the_endpoint(source, "products"))
    assert {p.headers.get("content-encoding") for p in pages} == {"gzip"}
    (small,), _ = fetch(client, the_endpoint(source, "tiny"))
    assert len(small.body) < DemoConfig.compress_min_bytes
    assert "content-encoding" not in small.headers
    assert ids_of(pages) == truth_ids(server, "products", status="active")


@pytest.mark.parametrize("coding", ["gzip", "br", "zstd"])
def test_a_decompression_bomb_stops_at_the_cap_in_bounded_memory(
    server: DemoServer, clients: Clients, coding: str
) -> None:
    cap = 1 << 20
    size = 256 << 20
    bomb(coding, size)  # built before measuring: the server runs in this process
    server.set_faults("bomb", path="/v1/products", encoding=coding, size=size, after=0)
    source = make_source(server.url, "products", max_page_bytes=cap)
    client = clients(source)
    tracemalloc.start()
    try:
        with pytest.raises(PageTooLarge) as caught:
            fetch(client, the_endpoint(source))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    message = str(caught.value)
    assert f"decoded from {coding}" in message and "max_page_bytes" in message
    # one decoding step past the cap at most, never the bomb's 256 MiB (or a 64 MiB chunk)
    assert peak < 8 * cap, f"peak {peak} bytes"
    assert len(v1_log(server, "/v1/products")) == 1, "a page over the cap is never retried"


def test_the_bytes_on_the_wire_have_their_own_cap(server: DemoServer, clients: Clients) -> None:
    source = make_source(server.url, "products", max_page_bytes=1 << 24, max_wire_page_bytes=1024)
    with pytest.raises(PageTooLarge) as caught:
        fetch(clients(source), the_endpoint(source))
    assert "before decoding" in str(caught.value)
    assert "max_wire_page_bytes" in str(caught.value)


def test_the_decoded_size_is_capped_even_when_the_wire_size_is_small(
    server: DemoServer, clients: Clients
) -> None:
    source = make_source(server.url, "products", max_page_bytes=4096)
    with pytest.raises(PageTooLarge) as caught:
        fetch(clients(source), the_endpoint(source))
    assert "decoded from gzip" in str(caught.value)
    sent = v1_log(server, "/v1/products")
    assert len(sent) == 1


@pytest.mark.parametrize("mode", ["plain", "garbled"])
def test_one_answer_with_a_false_encoding_is_retried(
    server: DemoServer, clients: Clients, tmp_path: Path, mode: str
) -> None:
    server.set_faults("wrong_encoding", path="/v1/products", mode=mode, encoding="gzip", count=1)
    source = make_source(server.url, "products")
    result = ingest(
        source,
        the_endpoint(source),
        PARTITION,
        layout=DataLayout(tmp_path / "data"),
        client=clients(source),
    )
    assert result.stats.retries == 1
    assert sorted(result.table.df["id"].to_list()) == truth_ids(server, "products", status="active")


@pytest.mark.parametrize("coding", ["gzip", "br", "zstd"])
def test_a_body_that_never_holds_its_encoding_fails_naming_it(
    server: DemoServer, clients: Clients, tmp_path: Path, coding: str
) -> None:
    server.set_faults(
        "wrong_encoding", path="/v1/products", mode="garbled", encoding=coding, persistent=True
    )
    source = make_source(server.url, endpoint("products"))
    layout = DataLayout(tmp_path / "data")
    with pytest.raises(FetchError) as caught:
        ingest(source, the_endpoint(source), PARTITION, layout=layout, client=clients(source))
    message = str(caught.value)
    assert f"Content-Encoding: {coding}" in message
    assert "source `shop`, endpoint `products`" in message
    assert len(v1_log(server, "/v1/products")) == 2, "retried once, like any broken body"
    assert not layout.table_path("shop", "products", PARTITION).exists()


def test_a_plain_body_labelled_gzip_is_not_taken_as_it_is(
    server: DemoServer, clients: Clients
) -> None:
    server.set_faults("wrong_encoding", path="/v1/products", persistent=True)
    source = make_source(server.url, "products")
    with pytest.raises(FetchError, match="Content-Encoding: gzip"):
        fetch(clients(source), the_endpoint(source))


def test_a_client_that_accepts_only_identity_gets_plain_bodies(
    server: DemoServer, clients: Clients
) -> None:
    source = accepting("identity", server.url, "products")
    pages, _ = fetch(clients(source), the_endpoint(source))
    assert {p.headers.get("content-encoding") for p in pages} == {None}
    assert ids_of(pages) == truth_ids(server, "products", status="active")
