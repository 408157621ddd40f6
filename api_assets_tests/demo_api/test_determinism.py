"""Same seed and clock anchor ⇒ same bytes; another seed ⇒ other data."""

from collections.abc import Callable

import httpx

from api_assets.demo_api import DemoConfig, DemoServer
from api_assets.demo_api.data import Shop

NOW = "2026-11-28T13:37:00Z"
PATHS = [
    "/v1/products?limit=50&offset=20",
    "/v1/customers?limit=50",
    "/v1/customers/pages?page=2",
    "/v1/orders?limit=50",
    "/v1/orders/stream?limit=50",
    "/v1/events?per_page=50&page=3",
    "/v1/customers/keyset?since_id=40",
    "/v1/categories",
    "/v1/orders/17/lines",
    "/v1/customers/17/addresses",
]


def bodies(server: DemoServer) -> list[bytes]:
    with httpx.Client(base_url=server.url, headers={"X-API-Key": "demo-key-1"}) as client:
        return [client.get(p).content for p in PATHS]


def test_same_seed_same_bytes(demo_api_factory: Callable[..., DemoServer]) -> None:
    a, b = demo_api_factory(seed=7, now=NOW), demo_api_factory(seed=7, now=NOW)
    assert bodies(a) == bodies(b)
    assert a.truth("orders") == b.truth("orders")


def test_other_seed_other_data(demo_api_factory: Callable[..., DemoServer]) -> None:
    a, c = demo_api_factory(seed=7, now=NOW), demo_api_factory(seed=8, now=NOW)
    differing = [p for p, x, y in zip(PATHS, bodies(a), bodies(c), strict=True) if x != y]
    assert set(differing) == set(PATHS) - {"/v1/categories"}


def test_anchor_bounds_every_timestamp() -> None:
    shop = Shop(DemoConfig.small(now=NOW))
    assert max(o["updated_at"] for o in shop.orders.records.values()) <= NOW
    assert max(p["updated_at"] for p in shop.products.records.values()) <= NOW
    occurred = [e["occurred_at"] for e in shop.events.records.values()]
    assert max(occurred) <= NOW and min(occurred) >= "2026-11-22T00:00:00Z"
    assert sum(o >= "2026-11-28T00:00:00Z" for o in occurred) > 0


def test_today_has_events_even_just_after_midnight() -> None:
    shop = Shop(DemoConfig.small(now="2026-11-28T00:00:30Z"))
    assert any(e["occurred_at"] >= "2026-11-28T00:00:00Z" for e in shop.events.records.values())


def test_mutations_are_seeded_and_stamped_now(demo_api_factory: Callable[..., DemoServer]) -> None:
    a, b = demo_api_factory(seed=3, now=NOW), demo_api_factory(seed=3, now=NOW)
    assert a.mutate("products", 2, 3, 4) == b.mutate("products", 2, 3, 4)
    with httpx.Client(base_url=a.url, headers={"X-API-Key": "demo-key-1"}) as client:
        updated = client.get("/v1/orders", params={"limit": 1}).json()["data"][0]
        a.mutate("orders", update_ids=[updated["id"]])
        stream = client.get("/v1/orders/stream", params={"limit": 1000}).json()
    assert stream[-1]["id"] == updated["id"] and stream[-1]["updated_at"] > NOW
