"""Server-side rate limits: headers on every /v1 answer, 429 with Retry-After in both formats.

The buckets run on a clock the test moves by hand (`ManualClock` in place of the rate-limit
module's `time`): refills, reset times and Retry-After are then exact, however long the requests
take on a loaded machine."""

from collections.abc import Callable
from email.utils import parsedate_to_datetime

import httpx
import pytest

from api_assets.demo_api import DemoServer
from api_assets.demo_api import ratelimit as ratelimit_module
from api_assets_tests.demo_api.helpers import ManualClock

KEY1 = {"X-API-Key": "demo-key-1"}
KEY2 = {"X-API-Key": "demo-key-2"}
WALL = 1_800_000_000.0  # the clock's epoch seconds when the test starts


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> ManualClock:
    manual = ManualClock(wall=WALL)
    monkeypatch.setattr(ratelimit_module, "time", manual)
    return manual


def test_no_headers_when_off(demo_api: DemoServer, demo_client: httpx.Client) -> None:
    r = demo_client.get("/v1/categories")
    assert "X-RateLimit-Limit" not in r.headers and "RateLimit-Limit" not in r.headers


def test_headers_and_429_in_seconds(
    demo_api_factory: Callable[..., DemoServer], clock: ManualClock
) -> None:
    # one token per 2 s, and the clock stopped: no refill between the four requests
    server = demo_api_factory(rate_limit_rps=0.5, rate_limit_burst=3)
    with httpx.Client(base_url=server.url, headers=KEY1) as client:
        answers = [client.get("/v1/categories") for _ in range(4)]
    assert [r.status_code for r in answers] == [200, 200, 200, 429]
    first, last = answers[0], answers[-1]
    assert first.headers["X-RateLimit-Limit"] == first.headers["RateLimit-Limit"] == "3"
    assert [r.headers["X-RateLimit-Remaining"] for r in answers] == ["2", "1", "0", "0"]
    assert [r.headers["RateLimit-Remaining"] for r in answers] == ["2", "1", "0", "0"]
    # full again in 2 s after the first request (one token short), 6 s after the last (three)
    assert first.headers["X-RateLimit-Reset"] == str(int(WALL) + 2)
    assert first.headers["RateLimit-Reset"] == "2"
    assert last.headers["X-RateLimit-Reset"] == str(int(WALL) + 6)
    assert last.headers["RateLimit-Reset"] == "6"
    assert last.headers["Retry-After"] == "2"
    # the 429 is in the request log, for that credential
    log = server.requests()
    assert [e["status"] for e in log] == [200, 200, 200, 429]
    assert {e["credential"] for e in log} == {"api_key#1"}


def test_buckets_are_per_credential_and_refill(
    demo_api_factory: Callable[..., DemoServer], clock: ManualClock
) -> None:
    server = demo_api_factory(rate_limit_rps=1.0, rate_limit_burst=1)
    url = f"{server.url}/v1/categories"
    assert httpx.get(url, headers=KEY1).status_code == 200
    assert httpx.get(url, headers=KEY1).status_code == 429
    assert httpx.get(url, headers=KEY2).status_code == 200  # another key, another bucket
    clock.now += 0.5  # half a token back: still refused
    assert httpx.get(url, headers=KEY1).status_code == 429
    clock.now += 0.5  # one token back
    assert httpx.get(url, headers=KEY1).status_code == 200
    assert httpx.get(url, headers=KEY1).status_code == 429


def test_retry_after_as_http_date(
    demo_api_factory: Callable[..., DemoServer], clock: ManualClock
) -> None:
    server = demo_api_factory(rate_limit_rps=1.0, retry_after_format="http_date")
    url = f"{server.url}/v1/categories"
    assert httpx.get(url, headers=KEY1).status_code == 200
    r = httpx.get(url, headers=KEY1)
    assert r.status_code == 429
    when = parsedate_to_datetime(r.headers["Retry-After"]).timestamp()
    assert when == WALL + 1  # one token at 1/s: the moment it is back
    clock.now += when - clock.time()  # the client waits until then
    assert httpx.get(url, headers=KEY1).status_code == 200


def test_unauthenticated_requests_take_no_token(
    demo_api_factory: Callable[..., DemoServer],
) -> None:
    server = demo_api_factory(rate_limit_rps=1.0)
    url = f"{server.url}/v1/categories"
    for _ in range(3):
        assert httpx.get(url).status_code == 401
    assert httpx.get(url, headers=KEY1).status_code == 200
