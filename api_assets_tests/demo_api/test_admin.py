"""Admin routes: ground truth, the request log, mutations and reset."""

import time

import httpx
import pytest

from api_assets.demo_api import DemoServer


def test_request_log(demo_api: DemoServer, demo_client: httpx.Client) -> None:
    demo_client.get("/v1/products", params={"limit": 5, "status": "active"})
    httpx.get(f"{demo_api.url}/v1/orders", params={"api_key": "demo-key-2", "limit": 3})
    httpx.get(f"{demo_api.url}/v1/orders")
    httpx.get(f"{demo_api.url}/v1/health")  # not logged
    log = demo_api.requests()
    assert [(e["method"], e["path"], e["status"], e["credential"]) for e in log] == [
        ("GET", "/v1/products", 200, "api_key#1"),
        ("GET", "/v1/orders", 200, "api_key#2"),
        ("GET", "/v1/orders", 401, "none"),
    ]
    assert log[0]["params"] == {"limit": "5", "status": "active"}
    assert log[1]["params"] == {"api_key": "[redacted]", "limit": "3"}
    assert all(isinstance(e["ts"], float) and e["faults"] == [] for e in log)
    assert len(demo_api.requests(path="/v1/orders")) == 2
    demo_api.clear_requests()
    assert demo_api.requests() == []


@pytest.mark.parametrize("collection", ["products", "customers", "orders", "events"])
def test_mutate_changes_truth(demo_api: DemoServer, collection: str) -> None:
    before = demo_api.truth(collection)
    done = demo_api.mutate(collection, inserts=5, updates=3, deletes=2)
    after = demo_api.truth(collection)
    assert len(done["inserted"]) == 5 and len(done["updated"]) == 3 and len(done["deleted"]) == 2
    assert after["count"] == before["count"] + 3
    assert set(done["inserted"]) <= set(after["ids"]) and not set(done["deleted"]) & set(
        after["ids"]
    )
    assert all(
        after["versions"][str(i)] == 2 for i in done["updated"] if str(i) in after["versions"]
    )
    assert all(after["versions"][str(i)] == 1 for i in done["inserted"])
    assert after["ids"] == sorted(after["ids"])


def test_mutated_product_bumps_updated_at(demo_api: DemoServer, demo_client: httpx.Client) -> None:
    old = demo_client.get("/v1/products", params={"limit": 1}).json()["data"][0]
    demo_api.mutate("products", update_ids=[old["id"]])
    new = demo_client.get("/v1/products", params={"limit": 1}).json()["data"][0]
    assert new["updated_at"] > old["updated_at"] and new["status"] != old["status"]


def test_reset_restores_seeded_state(demo_api: DemoServer, demo_client: httpx.Client) -> None:
    seeded = demo_api.truth("orders")
    seeded_page = demo_client.get("/v1/orders").content
    demo_api.mutate("orders", inserts=3, deletes=3)
    demo_api.set_faults("5xx_burst", persistent=True)
    demo_api.reset()
    assert demo_api.truth("orders") == seeded and demo_api.faults() == []
    assert demo_client.get("/v1/orders").content == seeded_page
    demo_api.reset(seed=99)
    assert demo_client.get("/v1/orders").content != seeded_page
    demo_api.reset()  # back to the seed the server started with
    assert demo_client.get("/v1/orders").content == seeded_page


def test_bad_admin_requests(demo_api: DemoServer) -> None:
    with pytest.raises(ValueError, match="collection"):
        demo_api.mutate("widgets", inserts=1)
    r = httpx.post(f"{demo_api.url}/admin/faults", content=b"{not json")
    assert r.status_code == 400
    assert (
        httpx.get(f"{demo_api.url}/admin/truth/orders", params={"updated_since": "x"}).status_code
        == 400
    )


def test_request_in_flight_across_a_clear_is_not_logged(demo_api: DemoServer) -> None:
    demo_api.set_faults("slow", delay=0.5)
    with httpx.Client(base_url=demo_api.url, headers={"X-API-Key": "demo-key-1"}) as client:
        with pytest.raises(httpx.ReadTimeout):
            client.get("/v1/products", timeout=0.1)
        demo_api.clear_requests()  # the slow request is still sleeping on the server
        time.sleep(0.6)
        client.get("/v1/customers")
    assert [e["path"] for e in demo_api.requests()] == ["/v1/customers"]
