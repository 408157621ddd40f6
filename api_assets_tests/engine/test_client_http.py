"""`SourceClient` over real HTTP against the demo API: every paginator fetches exactly the truth,
stops on the API's own signal and sends exactly the requests it should (the server's request log
is the proof); known page sets are fetched concurrently yet yielded in order; the client keeps
under the server's rate limit; errors name what failed without a secret."""

from collections.abc import Callable
from typing import Any

import pytest

from api_assets.demo_api import DemoServer
from api_assets.errors import FetchError
from api_assets.http.client import SourceClient
from api_assets.pages import FetchStats
from api_assets.pagination.fanout import fetch_children
from api_assets_tests.engine.conftest import (
    API_KEY_QUERY,
    KEY_2,
    endpoint,
    fetch,
    ids_of,
    make_source,
    statuses,
    the_endpoint,
    truth_ids,
    v1_log,
)

Clients = Callable[..., SourceClient]

# endpoint, truth collection, truth filter, expected stop reason, params of the first request
PAGINATOR_CASES: list[tuple[str, str, dict[str, Any], str, dict[str, str]]] = [
    (
        "products",
        "products",
        {"status": "active"},
        "total_reached",
        {"status": "active", "offset": "0", "limit": "50"},
    ),
    ("customers", "customers", {}, "total_reached", {"offset": "0", "limit": "30"}),
    ("customer_pages", "customers", {}, "total_reached", {"page": "1", "per_page": "30"}),
    ("orders", "orders", {}, "signal", {"limit": "100"}),
    ("orders_stream", "orders", {}, "signal", {"limit": "150"}),
    ("products_feed", "products", {}, "signal", {"limit": "120"}),
    ("events", "events", {}, "signal", {"per_page": "200"}),
    # the demo's keyset signal is a short page; the client never stops on a short page alone
    # (a short page is not proof of the end), so it asks once more and stops on the empty one
    ("customers_keyset", "customers", {}, "empty_page", {"limit": "70"}),
    ("categories", "", {}, "single_page", {}),
]


@pytest.mark.parametrize(
    ("name", "collection", "filters", "stop", "first_params"),
    PAGINATOR_CASES,
    ids=[c[0] for c in PAGINATOR_CASES],
)
def test_every_paginator_fetches_exactly_the_truth(
    demo_api: DemoServer,
    clients: Clients,
    name: str,
    collection: str,
    filters: dict[str, Any],
    stop: str,
    first_params: dict[str, str],
) -> None:
    source = make_source(demo_api.url, name)
    pages, stats = fetch(clients(source), the_endpoint(source))

    got = ids_of(pages)
    assert len(got) == len(set(got)), "a record arrived twice"
    if collection:
        assert sorted(got) == truth_ids(demo_api, collection, **filters)
    else:
        assert len(got) == 12 and got == sorted(got)
    assert stats.stop_reason == stop
    assert stats.empty_pages == [] and stats.short_pages == []
    assert stats.fetched == len(got) and stats.pages == len(pages)

    log = v1_log(demo_api)
    # exactly one request per page: nothing re-read, nothing thrown away
    assert len(log) == len(pages) == stats.requests
    assert statuses(log) == [200] * len(log)
    assert {r["credential"] for r in log} == {"api_key#1"}
    # the endpoint's `params` and the paginator's `params` go on the first request
    assert log[0]["params"] == first_params
    assert [p.index for p in pages] == list(range(len(pages)))


def test_params_of_a_multi_page_series(demo_api: DemoServer, clients: Clients) -> None:
    """Endpoint params are sent on every page request; pages follow one another in order."""
    source = make_source(demo_api.url, "products")
    pages, _ = fetch(clients(source), the_endpoint(source))
    log = v1_log(demo_api)
    assert [r["params"]["status"] for r in log] == ["active"] * len(log)
    offsets = [int(r["params"]["offset"]) for r in log]
    assert sorted(offsets) == list(range(0, 50 * len(pages), 50))
    assert [int(p.params["offset"]) for p in pages] == sorted(offsets)


@pytest.mark.parametrize(
    ("name", "max_pages"),
    [("products", 3), ("orders", 4), ("events", 2), ("customer_pages", 1)],
)
def test_max_pages_stops_and_says_so(
    demo_api: DemoServer, clients: Clients, name: str, max_pages: int
) -> None:
    source = make_source(demo_api.url, endpoint(name, paginator={"max_pages": max_pages}))
    pages, stats = fetch(clients(source), the_endpoint(source))
    assert len(pages) == max_pages
    assert len(v1_log(demo_api)) == max_pages
    assert stats.stop_reason == "max_pages"


def test_max_pages_equal_to_the_page_count_is_not_a_cap(
    demo_api: DemoServer, clients: Clients
) -> None:
    """A cap that the series ends exactly on is not hit: the API's signal ended it."""
    n = len(truth_ids(demo_api, "orders"))
    pages_needed = -(-n // 100)
    source = make_source(demo_api.url, endpoint("orders", paginator={"max_pages": pages_needed}))
    pages, stats = fetch(clients(source), the_endpoint(source))
    assert len(pages) == pages_needed
    assert stats.stop_reason == "signal"


# --- concurrency of known page sets ----------------------------------------------------------


def _max_overlap(rows: list[dict[str, Any]]) -> int:
    """The most requests the server was handling at once, from the log's start and duration."""
    events = []
    for r in rows:
        start = float(r["ts"])
        events.append((start, 1))
        events.append((start + float(r["duration_ms"]) / 1000.0, -1))
    # an end at the same instant as a start is counted first: touching is not overlapping
    events.sort(key=lambda e: (e[0], e[1]))
    current = best = 0
    for _, delta in events:
        current += delta
        best = max(best, current)
    return best


@pytest.mark.parametrize("max_concurrency", [1, 4])
def test_known_page_set_fetched_concurrently_each_once_and_yielded_in_order(
    demo_api_factory: Callable[..., DemoServer], clients: Clients, max_concurrency: int
) -> None:
    # 30 ms per request keeps several in flight at once when the client allows it
    server = demo_api_factory(latency_ms=30)
    limit = 20
    source = make_source(
        server.url,
        endpoint("products", params={}, paginator={"limit": limit}),
        rate_limit={"requests_per_second": 2000, "burst": 200, "max_concurrency": max_concurrency},
    )
    pages, stats = fetch(clients(source), the_endpoint(source))

    truth = truth_ids(server, "products")
    # a full last page is followed by one probe past the stated total (it comes back empty)
    n_pages = len(truth) // limit + 1
    log = v1_log(server)
    offsets = [int(r["params"]["offset"]) for r in log]
    # every offset of the known page set requested exactly once
    assert sorted(offsets) == [i * limit for i in range(n_pages)]
    assert len(log) == n_pages == len(pages)
    # yielded in order whatever order they completed in
    assert [p.index for p in pages] == list(range(n_pages))
    assert [int(p.params["offset"]) for p in pages] == [i * limit for i in range(n_pages)]
    assert ids_of(pages) == truth
    assert stats.stop_reason == "total_reached"
    assert (len(pages[-1].records) == 0) == (len(truth) % limit == 0)

    overlap = _max_overlap(log)
    assert overlap <= max_concurrency
    if max_concurrency == 1:
        assert overlap == 1  # strictly one after the other
    else:
        assert overlap >= 2  # some pages really were in flight together
    # 30 ms of waiting against about a millisecond of work per page: the in-flight window
    # (`InFlight`) opens to the whole configured concurrency
    assert stats.concurrency == max_concurrency


# --- child fan-out ---------------------------------------------------------------------------


def test_child_requests_one_per_parent_and_404_skipped(
    demo_api: DemoServer, clients: Clients
) -> None:
    lines = {
        "name": "order_lines",
        "path": "/v1/orders/{order_id}/lines",
        "parent": {"endpoint": "orders", "fields": {"order_id": "id"}},
        "records_path": "lines",
        "primary_key": ["order_id", "line_no"],
    }
    source = make_source(demo_api.url, "orders", lines)
    order_ids = truth_ids(demo_api, "orders")[:12]
    parents = [{"order_id": i} for i in order_ids] + [{"order_id": 99_999_999}]
    stats = FetchStats()
    client = clients(source)
    pages = list(fetch_children(client, the_endpoint(source, "order_lines"), parents, stats))

    log = v1_log(demo_api)
    assert sorted(r["path"] for r in log) == sorted(
        f"/v1/orders/{p['order_id']}/lines" for p in parents
    )
    assert [p.parent for p in pages] == [{"order_id": i} for i in order_ids]
    assert [p.index for p in pages] == list(range(len(order_ids)))
    assert all(p.records for p in pages)
    assert stats.not_found == [{"order_id": 99_999_999}]
    assert stats.requests == len(parents)


# --- rate limit ------------------------------------------------------------------------------


def test_client_at_the_server_rate_gets_no_429(
    demo_api_factory: Callable[..., DemoServer], clients: Clients
) -> None:
    rate = 10
    server = demo_api_factory(rate_limit_rps=rate)
    # ~3·R requests: 500 products at 17 per page = 30 pages
    source = make_source(
        server.url,
        endpoint("products", params={}, paginator={"limit": 17}),
        rate_limit={"requests_per_second": rate, "burst": rate, "max_concurrency": 4},
        retry={"max_attempts": 6, "max_backoff_seconds": 5},
    )
    pages, stats = fetch(clients(source), the_endpoint(source))
    log = v1_log(server)
    assert len(pages) == 30 and len(log) == 30
    assert statuses(log).count(429) == 0
    assert stats.throttled == 0 and stats.retries == 0
    assert sorted(ids_of(pages)) == truth_ids(server, "products")


# --- errors and redaction --------------------------------------------------------------------


def test_malformed_param_is_a_fetch_error_naming_where_without_the_secret(
    demo_api: DemoServer, clients: Clients
) -> None:
    source = make_source(
        demo_api.url, endpoint("products", params={"status": "bogus"}), auth=API_KEY_QUERY
    )
    with pytest.raises(FetchError) as info:
        fetch(clients(source), the_endpoint(source))
    err = info.value
    text = str(err)
    assert err.status == 400
    assert "HTTP 400" in text
    assert "source `shop`" in text and "endpoint `products`" in text
    assert f"{demo_api.url}/v1/products" in text
    assert "status=bogus" in text  # which request: the URL with its (redacted) query
    assert KEY_2 not in text and KEY_2 not in str(err.url)
    assert "api_key=***" in text
    # not retried: a 400 is the caller's mistake
    assert statuses(v1_log(demo_api)) == [400]


def test_api_key_in_the_query_never_in_page_url_or_params(
    demo_api: DemoServer, clients: Clients
) -> None:
    source = make_source(demo_api.url, "products", "products_feed", auth=API_KEY_QUERY)
    client = clients(source)
    pages: list[Any] = []
    for name in ("products", "products_feed"):
        pages += fetch(client, the_endpoint(source, name))[0]
    log = v1_log(demo_api)
    assert {r["credential"] for r in log} == {"api_key#2"}  # the key was sent on every request
    for page in pages:
        assert KEY_2 not in page.url
        assert KEY_2 not in repr(page.params)
        assert "?" not in page.url
        assert page.params.get("api_key") == "***"
