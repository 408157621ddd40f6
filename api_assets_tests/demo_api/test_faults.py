"""Each fault profile is observable over HTTP, limited to its path, transient or persistent."""

import math
import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime

import httpx
import orjson
import pytest

from api_assets.demo_api import DemoServer
from api_assets.demo_api import faults as faults_module
from api_assets_tests.demo_api.helpers import ManualClock, ids, walk_cursor, walk_offset


def statuses(client: httpx.Client, path: str, n: int, **params: object) -> list[int]:
    return [client.get(path, params=params).status_code for _ in range(n)]  # type: ignore[arg-type]


def test_5xx_burst_after_n_then_recovers(demo_api: DemoServer, demo_client: httpx.Client) -> None:
    demo_api.set_faults("5xx_burst", path="/v1/products", after=2, count=3, status=[503, 500, 502])
    assert statuses(demo_client, "/v1/products", 7) == [200, 200, 503, 500, 502, 200, 200]
    assert demo_client.get("/v1/customers").status_code == 200  # other paths untouched
    log = demo_api.requests(path="/v1/products")
    assert [e["faults"] for e in log[2:5]] == [["5xx_burst"]] * 3
    assert demo_api.faults()[0]["fired"] == 3


def test_5xx_persistent(demo_api: DemoServer, demo_client: httpx.Client) -> None:
    demo_api.set_faults("5xx_burst", persistent=True)
    assert set(statuses(demo_client, "/v1/orders", 8)) == {503}
    demo_api.clear_faults()
    assert demo_client.get("/v1/orders").status_code == 200


def test_every_k_th(demo_api: DemoServer, demo_client: httpx.Client) -> None:
    demo_api.set_faults("5xx_burst", every=3, count=0)
    assert statuses(demo_client, "/v1/categories", 7) == [503, 200, 200, 503, 200, 200, 503]


def test_429_storm_seconds_and_http_date(demo_api: DemoServer, demo_client: httpx.Client) -> None:
    demo_api.set_faults("429_storm", count=2, retry_after=2)
    answers = [demo_client.get("/v1/products") for _ in range(3)]
    assert [r.status_code for r in answers] == [429, 429, 200]
    assert answers[0].headers["Retry-After"] == "2"
    assert [e["status"] for e in demo_api.requests()] == [429, 429, 200]
    demo_api.set_faults("429_storm", count=1, retry_after=3, format="http_date")
    # the date is the server's clock + 3 s, rounded up to the second: between the clock before
    # the request and after the answer, however long the request took
    before = time.time()
    r = demo_client.get("/v1/products")
    after = time.time()
    when = parsedate_to_datetime(r.headers["Retry-After"]).timestamp()
    assert r.status_code == 429 and math.ceil(before + 3) <= when <= math.ceil(after + 3)


def test_slow(demo_api_factory: Callable[..., DemoServer]) -> None:
    # a server of its own: the slow request still sleeps there when the test ends
    server = demo_api_factory()
    server.set_faults("slow", delay=1.0)
    with httpx.Client(base_url=server.url, headers={"X-API-Key": "demo-key-1"}) as client:
        with pytest.raises(httpx.ReadTimeout):  # no answer can come before 1 s
            client.get("/v1/products", timeout=0.3)
        assert client.get("/v1/products", timeout=30).status_code == 200
    # count=1: only the first request was slow. The server decides before it sleeps: the fault
    # saw both requests and fired on one, and the second was logged (it is answered at once)
    # with no fault
    [fault] = server.faults()
    assert (fault["seen"], fault["fired"]) == (2, 1)
    answered = [e["faults"] for e in server.requests("/v1/products")]
    assert answered in ([[]], [[], ["slow"]])  # the first is logged once its sleep is over


@pytest.mark.parametrize("mode", ["body", "headers"])
def test_drop(demo_api: DemoServer, mode: str) -> None:
    demo_api.set_faults("drop", mode=mode)
    with httpx.Client(base_url=demo_api.url, headers={"X-API-Key": "demo-key-1"}) as client:
        with pytest.raises(httpx.RemoteProtocolError):
            client.get("/v1/products")
        assert (
            client.get("/v1/products").status_code == 200
        )  # transient, and a new connection works
    assert demo_api.requests()[0]["faults"] == ["drop"]


def test_truncated_json(demo_api: DemoServer, demo_client: httpx.Client) -> None:
    demo_api.set_faults("truncated_json", keep=0.3)
    r = demo_client.get("/v1/products")
    assert r.status_code == 200
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(r.content)
    assert len(r.content) < 0.5 * len(demo_client.get("/v1/products").content)


def test_error_body(demo_api: DemoServer, demo_client: httpx.Client) -> None:
    demo_api.set_faults("error_body", message="upstream timeout")
    r = demo_client.get("/v1/orders")
    assert r.status_code == 200 and r.json() == {"error": {"message": "upstream timeout"}}
    assert "data" in demo_client.get("/v1/orders").json()


def test_empty_page_mid_stream(demo_api: DemoServer, demo_client: httpx.Client) -> None:
    demo_api.set_faults("empty_page", path="/v1/orders", after=1)
    pages = []
    cursor = None
    while True:
        body = demo_client.get(
            "/v1/orders", params={"limit": 200, **({"cursor": cursor} if cursor else {})}
        ).json()
        pages.append(len(body["data"]))
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == [200, 200, 0, 200, 200]  # the 2nd page after the first is empty; more follow


def test_repeated_cursor_loops(demo_api: DemoServer, demo_client: httpx.Client) -> None:
    demo_api.set_faults("repeated_cursor")
    first = demo_client.get("/v1/orders", params={"limit": 10}).json()
    second = demo_client.get(
        "/v1/orders", params={"limit": 10, "cursor": first["next_cursor"]}
    ).json()
    assert second["next_cursor"] == first["next_cursor"]
    stream = demo_client.get(
        "/v1/orders/stream", params={"limit": 10, "cursor": first["next_cursor"]}
    )
    assert stream.headers["X-Next-Cursor"] == first["next_cursor"]
    feed1 = demo_client.get("/v1/products/feed", params={"limit": 10}).json()
    feed2 = demo_client.get(feed1["next"]).json()
    assert feed2["next"] == feed1["next"]
    events2 = demo_client.get("/v1/events", params={"page": 2, "per_page": 10})
    assert events2.links["next"]["url"] == str(events2.url)


def test_repeat_page(demo_api: DemoServer, demo_client: httpx.Client) -> None:
    demo_api.set_faults("repeat_page", path="/v1/products")
    got = walk_offset(demo_client, "/v1/products", limit=100)
    assert ids(got[100:200]) == ids(got[:100])  # page 2 repeats page 1
    assert len(got) == 500 and len(set(ids(got))) == 400


def test_schema_change_from_request_n(demo_api: DemoServer, demo_client: httpx.Client) -> None:
    demo_api.set_faults("schema_change", path="/v1/products", after=1, change="retype")
    before = demo_client.get("/v1/products", params={"limit": 3}).json()["data"]
    after = demo_client.get("/v1/products", params={"limit": 3}).json()["data"]
    assert isinstance(before[0]["price"]["amount"], float)
    assert isinstance(after[0]["price"]["amount"], str)
    demo_api.set_faults("schema_change", change="remove", field="tags")
    assert all("tags" not in r for r in demo_client.get("/v1/products").json()["data"])
    demo_api.set_faults("schema_change", change="add", field="loyalty", value=3)
    assert {r["loyalty"] for r in demo_client.get("/v1/customers/keyset").json()} == {3}


def test_schema_change_from_a_moment(
    demo_api: DemoServer, demo_client: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    demo_api.set_faults("schema_change", after_seconds=1.0, change="remove", field="email")
    # the faults' monotonic clock, stopped at the moment the fault was set, and moved by hand
    assert demo_api.app is not None
    [fault] = demo_api.app.faults.faults
    clock = ManualClock(fault.set_at)
    monkeypatch.setattr(faults_module, "time", clock)
    clock.now += 0.9  # dormant for its first second
    assert "email" in demo_client.get("/v1/customers").json()["data"][0]
    clock.now += 0.2
    assert "email" not in demo_client.get("/v1/customers").json()["data"][0]


def test_total_mismatch(demo_api: DemoServer, demo_client: httpx.Client) -> None:
    demo_api.set_faults("total_mismatch", delta=-4)
    assert demo_client.get("/v1/products").json()["total"] == 496
    assert demo_client.get("/v1/customers").headers["X-Total-Count"] == "196"
    assert (
        demo_client.get("/v1/customers/pages", params={"per_page": 49}).json()["total_pages"] == 4
    )
    assert demo_api.truth("products")["count"] == 500


def test_offset_drift_shifts_offsets(demo_api: DemoServer, demo_client: httpx.Client) -> None:
    demo_api.set_faults("offset_drift", path="/v1/products", deletes=2, inserts=1)
    got = walk_offset(demo_client, "/v1/products", limit=100)
    truth = demo_api.truth("products")
    assert truth["count"] == 500 - 2 * 4 + 4  # 4 pages after the first, each −2 +1
    missing = set(truth["ids"]) - set(ids(got))
    assert missing, "records shifted below the client's offset were never served"
    assert len(ids(got)) == len(set(ids(got)))


def test_ignore_filter(demo_api: DemoServer, demo_client: httpx.Client) -> None:
    pivot = walk_cursor(demo_client)[900]["updated_at"]
    assert len(walk_cursor(demo_client, updated_since=pivot)) < 200
    demo_api.set_faults("ignore_filter")
    assert len(walk_cursor(demo_client, updated_since=pivot)) == 1000
    today = time.strftime("%Y-%m-%dT00:00:00Z", time.gmtime())
    assert (
        len(demo_client.get("/v1/events", params={"since": today, "per_page": 1000}).json()) == 1000
    )


def test_faults_at_start_and_bad_specs(
    demo_api_factory: Callable[..., DemoServer], demo_api: DemoServer
) -> None:
    server = demo_api_factory(faults="5xx_burst:path=/v1/orders,count=1")
    url = f"{server.url}/v1/orders"
    codes = [httpx.get(url, headers={"X-API-Key": "demo-key-1"}).status_code for _ in range(2)]
    assert codes == [503, 200]
    with pytest.raises(ValueError, match="unknown fault profile"):
        demo_api.set_faults("meteor")
    with pytest.raises(ValueError, match="unknown option"):
        demo_api.set_faults("slow", dealy=3)


def test_oauth_token_path_can_fail(demo_api: DemoServer) -> None:
    demo_api.set_faults("5xx_burst", path="/oauth/token", count=1)
    form = {
        "grant_type": "client_credentials",
        "client_id": "demo-client",
        "client_secret": "demo-secret",
    }
    assert httpx.post(f"{demo_api.url}/oauth/token", data=form).status_code == 503
    assert httpx.post(f"{demo_api.url}/oauth/token", data=form).status_code == 200
