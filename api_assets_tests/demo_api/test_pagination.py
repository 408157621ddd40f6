"""Every pagination endpoint, walked over real HTTP, yields exactly the ground-truth ids."""

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from api_assets.demo_api import DemoServer
from api_assets_tests.demo_api.helpers import (
    ids,
    walk_cursor,
    walk_cursor_header,
    walk_keyset,
    walk_link,
    walk_next_url,
    walk_offset,
    walk_pages,
)


def test_products_offset_total_in_body(demo_api: DemoServer, demo_client: httpx.Client) -> None:
    truth = demo_api.truth("products")
    assert truth["count"] == 500
    got = walk_offset(demo_client, "/v1/products", limit=70)
    assert ids(got) == truth["ids"]
    first = got[0]
    assert set(first) >= {
        "id",
        "sku",
        "name",
        "status",
        "price",
        "tags",
        "created_at",
        "updated_at",
    }
    assert isinstance(first["price"]["amount"], float) and first["price"]["currency"]
    assert first["created_at"].endswith("Z") and first["created_at"] <= first["updated_at"]


def test_products_status_filter(demo_api: DemoServer, demo_client: httpx.Client) -> None:
    active = demo_api.truth("products", status="active")
    archived = demo_api.truth("products", status="archived")
    assert 0 < archived["count"] < active["count"]
    assert active["count"] + archived["count"] == 500
    got = walk_offset(demo_client, "/v1/products", status="active")
    assert ids(got) == active["ids"] and {r["status"] for r in got} == {"active"}


def test_customers_offset_total_in_header(demo_api: DemoServer, demo_client: httpx.Client) -> None:
    r = demo_client.get("/v1/customers", params={"limit": 5})
    assert r.headers["X-Total-Count"] == "200" and set(r.json()) == {"data"}
    got = walk_offset(demo_client, "/v1/customers", limit=33)
    assert ids(got) == demo_api.truth("customers")["ids"]
    assert set(got[0]) >= {"id", "email", "name", "address", "created_at"}
    assert set(got[0]["address"]) == {"city", "country"}


def test_customers_page_number(demo_api: DemoServer, demo_client: httpx.Client) -> None:
    body = demo_client.get("/v1/customers/pages", params={"per_page": 30}).json()
    assert (body["page"], body["total_pages"], body["total"]) == (1, 7, 200)
    assert ids(walk_pages(demo_client, per_page=30)) == demo_api.truth("customers")["ids"]
    beyond = demo_client.get("/v1/customers/pages", params={"page": 99, "per_page": 30}).json()
    assert beyond["results"] == [] and beyond["total_pages"] == 7


def test_orders_cursor_sorted_by_updated_at(
    demo_api: DemoServer, demo_client: httpx.Client
) -> None:
    got = walk_cursor(demo_client, limit=64)
    truth = demo_api.truth("orders")
    assert sorted(ids(got)) == truth["ids"] and len(got) == truth["count"] == 1000
    keys = [(r["updated_at"], r["id"]) for r in got]
    assert keys == sorted(keys)
    assert set(got[0]) >= {
        "id",
        "customer_id",
        "status",
        "total",
        "items",
        "created_at",
        "updated_at",
    }


def test_orders_updated_since_is_inclusive(demo_api: DemoServer, demo_client: httpx.Client) -> None:
    everything = walk_cursor(demo_client)
    pivot = everything[600]["updated_at"]
    got = walk_cursor(demo_client, updated_since=pivot)
    assert all(r["updated_at"] >= pivot for r in got)
    assert sorted(ids(got)) == demo_api.truth("orders", updated_since=pivot)["ids"]
    assert ids(got) == [r["id"] for r in everything if r["updated_at"] >= pivot]


def test_orders_tombstones_and_moved_updates(
    demo_api: DemoServer, demo_client: httpx.Client
) -> None:
    before = walk_cursor(demo_client)
    watermark = max(r["updated_at"] for r in before)
    changed = demo_api.mutate("orders", inserts=2, updates=3, deletes=2)
    truth = demo_api.truth("orders")
    assert sorted(changed["deleted"]) == truth["tombstones"]
    after = walk_cursor(demo_client)
    live = [r for r in after if not r.get("deleted")]
    tombs = [r for r in after if r.get("deleted")]
    assert sorted(ids(live)) == truth["ids"]
    assert sorted(ids(tombs)) == truth["tombstones"]
    assert set(tombs[0]) == {"id", "deleted", "updated_at"}
    # an incremental fetch from the old watermark sees every change, tombstones included
    delta = walk_cursor(demo_client, updated_since=watermark)
    touched = set(changed["inserted"]) | set(changed["updated"]) | set(changed["deleted"])
    assert touched <= set(ids(delta))
    for r in delta:
        if r["id"] in changed["updated"]:
            assert truth["versions"][str(r["id"])] == 2


def test_orders_stream_cursor_in_header(demo_api: DemoServer, demo_client: httpx.Client) -> None:
    got = walk_cursor_header(demo_client, limit=90)
    assert sorted(ids(got)) == demo_api.truth("orders")["ids"]
    last = demo_client.get("/v1/orders/stream", params={"limit": 1000})
    assert "X-Next-Cursor" not in last.headers and len(last.json()) == 1000


def test_products_feed_next_url(demo_api: DemoServer, demo_client: httpx.Client) -> None:
    body = demo_client.get("/v1/products/feed", params={"limit": 10}).json()
    assert body["next"].startswith(demo_api.url + "/v1/products/feed?")
    assert ids(walk_next_url(demo_client, limit=45)) == demo_api.truth("products")["ids"]


def test_next_url_never_carries_the_api_key(demo_api: DemoServer) -> None:
    r = httpx.get(f"{demo_api.url}/v1/products/feed", params={"api_key": "demo-key-2", "limit": 5})
    assert r.status_code == 200 and "demo-key" not in r.json()["next"]
    r = httpx.get(f"{demo_api.url}/v1/events", params={"api_key": "demo-key-2", "per_page": 5})
    assert "demo-key" not in r.headers["Link"]


def test_events_link_header(demo_api: DemoServer, demo_client: httpx.Client) -> None:
    r = demo_client.get("/v1/events", params={"per_page": 100})
    assert r.links["next"]["url"].endswith("page=2") and "last" in r.links
    assert 'rel="next"' in r.headers["Link"]
    got = walk_link(demo_client, per_page=100)
    assert ids(got) == demo_api.truth("events")["ids"] and len(got) == 1500


def test_events_window_since_inclusive_until_exclusive(
    demo_api: DemoServer, demo_client: httpx.Client
) -> None:
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    since = (today - timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    until = (today - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    got = walk_link(demo_client, per_page=50, since=since, until=until)
    assert got and all(since <= r["occurred_at"] < until for r in got)
    assert ids(got) == demo_api.truth("events", since=since, until=until)["ids"]
    # the exact bounds: an event at `since` is in, an event at `until` is out
    one = got[0]["occurred_at"]
    edge = walk_link(demo_client, since=one, until=one)
    assert edge == []
    assert walk_link(demo_client, since=one, until=got[-1]["occurred_at"])[0]["occurred_at"] == one


def test_events_today_has_events(demo_api: DemoServer, demo_client: httpx.Client) -> None:
    """Today by the server's clock: the UTC day of its anchor (the wall clock when it started).
    Not the wall clock's today: once midnight passes, a server started before it (this
    session's) has no data after its anchor, and so nothing in the new day."""
    anchor = datetime.fromtimestamp(demo_client.get("/admin/config").json()["anchor"], UTC)
    day = anchor.replace(hour=0, minute=0, second=0, microsecond=0)
    today = day.strftime("%Y-%m-%dT%H:%M:%SZ")
    got = walk_link(demo_client, since=today)
    assert got, "today's UTC partition must have events"
    assert demo_api.truth("events", since=today)["count"] == len(got)
    assert got[-1]["occurred_at"] <= anchor.strftime("%Y-%m-%dT%H:%M:%SZ")
    # the events fill the 7 UTC days up to the anchor: from the 6th day before today's midnight
    first_day = walk_link(demo_client)[0]["occurred_at"]
    assert first_day >= (day - timedelta(days=6)).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_customers_keyset(demo_api: DemoServer, demo_client: httpx.Client) -> None:
    got = walk_keyset(demo_client, limit=40)
    assert ids(got) == demo_api.truth("customers")["ids"]
    page = demo_client.get("/v1/customers/keyset", params={"since_id": 10, "limit": 3}).json()
    assert ids(page) == [11, 12, 13]


def test_categories_single_page(demo_api: DemoServer, demo_client: httpx.Client) -> None:
    body = demo_client.get("/v1/categories").json()
    assert isinstance(body, list) and ids(body) == demo_api.truth("categories")["ids"]


def test_order_lines_child(demo_api: DemoServer, demo_client: httpx.Client) -> None:
    order = demo_client.get("/v1/orders", params={"limit": 1}).json()["data"][0]
    body = demo_client.get(f"/v1/orders/{order['id']}/lines").json()
    assert body["order_id"] == order["id"]
    assert [line["line_no"] for line in body["lines"]] == list(range(1, len(order["items"]) + 1))
    assert [(x["product_id"], x["qty"]) for x in body["lines"]] == [
        (i["product_id"], i["qty"]) for i in order["items"]
    ]
    assert sum(x["qty"] * x["unit_price"] for x in body["lines"]) == pytest.approx(
        order["total"]["amount"]
    )
    missing = demo_client.get("/v1/orders/999999/lines")
    assert missing.status_code == 404 and "error" in missing.json()
    assert demo_client.get("/v1/orders/abc/lines").status_code == 404


def test_customer_addresses_child(demo_api: DemoServer, demo_client: httpx.Client) -> None:
    truth = demo_api.truth("customer_addresses")
    got = []
    for cid in demo_api.truth("customers")["ids"][:25]:
        body = demo_client.get(f"/v1/customers/{cid}/addresses").json()
        assert 1 <= len(body) <= 3
        got += [[cid, a["address_id"]] for a in body]
    assert got == [pair for pair in truth["ids"] if pair[0] <= 25]
    assert demo_client.get("/v1/customers/0/addresses").status_code == 404


def test_deleted_parent_is_404(demo_api: DemoServer, demo_client: httpx.Client) -> None:
    done = demo_api.mutate("orders", delete_ids=[5])
    assert done["deleted"] == [5]
    assert demo_client.get("/v1/orders/5/lines").status_code == 404
    demo_api.mutate("customers", delete_ids=[7])
    assert demo_client.get("/v1/customers/7/addresses").status_code == 404
