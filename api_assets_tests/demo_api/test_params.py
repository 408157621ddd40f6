"""Malformed parameters are answered 400 with `{"error": {"param", "message"}}`."""

import httpx
import pytest

from api_assets.demo_api import DemoServer


@pytest.mark.parametrize(
    ("path", "params", "param"),
    [
        ("/v1/products", {"limit": "ten"}, "limit"),
        ("/v1/products", {"limit": "0"}, "limit"),
        ("/v1/products", {"limit": "1001"}, "limit"),
        ("/v1/products", {"limit": ""}, "limit"),
        ("/v1/products", {"offset": "-1"}, "offset"),
        ("/v1/products", {"status": "deleted"}, "status"),
        ("/v1/customers", {"limit": "1.5"}, "limit"),
        ("/v1/customers/pages", {"page": "0"}, "page"),
        ("/v1/customers/pages", {"per_page": "x"}, "per_page"),
        ("/v1/customers/keyset", {"since_id": "abc"}, "since_id"),
        ("/v1/orders", {"cursor": "not-a-cursor"}, "cursor"),
        ("/v1/orders", {"cursor": "bzE6eDp5"}, "cursor"),  # base64 of "o1:x:y"
        ("/v1/orders", {"updated_since": "last tuesday"}, "updated_since"),
        ("/v1/orders/stream", {"limit": "-5"}, "limit"),
        ("/v1/products/feed", {"after": "x"}, "after"),
        ("/v1/events", {"since": "2026-13-45"}, "since"),
        ("/v1/events", {"until": "soon"}, "until"),
    ],
)
def test_malformed_param_is_400(
    demo_client: httpx.Client, path: str, params: dict[str, str], param: str
) -> None:
    r = demo_client.get(path, params=params)
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["param"] == param and param in error["message"]


@pytest.mark.parametrize(
    "value",
    [
        "2026-01-01T00:00:00Z",
        "2026-01-01T00:00:00+00:00",
        "2026-01-01T01:00:00.123+01:00",
        "2026-01-01",
        "1767225600",
        "1767225600000",
    ],
)
def test_timestamp_forms_accepted(
    demo_api: DemoServer, demo_client: httpx.Client, value: str
) -> None:
    r = demo_client.get("/v1/orders", params={"updated_since": value, "limit": 1000})
    assert r.status_code == 200
    assert all(o["updated_at"] >= "2026-01-01T00:00:00Z" for o in r.json()["data"])


def test_limit_bounds_accepted(demo_client: httpx.Client) -> None:
    assert len(demo_client.get("/v1/products", params={"limit": 1}).json()["data"]) == 1
    assert len(demo_client.get("/v1/products", params={"limit": 1000}).json()["data"]) == 500


def test_unknown_route_and_method(demo_api: DemoServer, demo_client: httpx.Client) -> None:
    r = demo_client.get("/v1/nothing")
    assert r.status_code == 404 and "error" in r.json()
    assert demo_client.get("/oauth/token").status_code == 405
    assert httpx.get(f"{demo_api.url}/admin/truth/widgets").status_code == 404
