"""A server cannot hold a run for ever.

- A body trickled a byte at a time, each read well inside `timeout_seconds`, fails at
  `request_deadline_seconds` with an error that says so, and is retried like a timeout.
- A wait the server asks for past `rate_limit.max_pause_seconds` (`Retry-After`, a rate-limit
  reset, a declared refill) fails at once, naming the header and the wait, instead of sleeping:
  on the retry policy's path and on the rate limiter's.

Real servers on 127.0.0.1 (uvicorn) where a server can show it; sleeps are recorded (the
limiter's and the retry policy's are injectable), never timed.
"""

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from api_assets.errors import FetchError, ServerWaitTooLong
from api_assets.http.client import SourceClient
from api_assets.http.ratelimit import RateLimiter
from api_assets.http.retry import RetryPolicy
from api_assets.pages import FetchStats
from api_assets.pagination import series
from api_assets_tests.engine.conftest import make_source, the_endpoint
from api_assets_tests.engine.conftest_policy import FakeClock, serve

Clients = Callable[..., SourceClient]

TRICKLE_GAP = 0.05  # seconds between two bytes: far inside the 5 s read timeout
TRICKLE_BYTES = 100  # 5 s of body: far past the 1 s deadline


class SlowApi:
    """`/trickle` sends a valid page a byte at a time; `/throttled` answers 429 with
    `Retry-After: 7200`; `/spent` answers two cursor pages, each saying the budget is spent
    until a reset two hours away. `paths` records every request."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.lock = threading.Lock()

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/trickle", self.trickle),
                Route("/throttled", self.throttled),
                Route("/spent", self.spent),
            ]
        )

    def seen(self, request: Request) -> None:
        with self.lock:
            self.paths.append(request.url.path)

    async def trickle(self, request: Request) -> Response:
        self.seen(request)

        async def body() -> AsyncIterator[bytes]:
            yield b'{"data": [{"id": 1}'
            for _ in range(TRICKLE_BYTES):
                await asyncio.sleep(TRICKLE_GAP)
                yield b" "
            yield b"]}"

        return StreamingResponse(body(), media_type="application/json")

    async def throttled(self, request: Request) -> Response:
        self.seen(request)
        return JSONResponse(
            {"error": "slow down"}, status_code=429, headers={"Retry-After": "7200"}
        )

    async def spent(self, request: Request) -> Response:
        self.seen(request)
        last = request.query_params.get("cursor") is not None
        body = {"data": [{"id": 2 if last else 1}], "next": None if last else "b"}
        budget = {"X-RateLimit-Limit": "100", "X-RateLimit-Remaining": "0"}
        return JSONResponse(body, headers={**budget, "X-RateLimit-Reset": "7200"})


@pytest.fixture
def slow_api() -> Iterator[tuple[SlowApi, str]]:
    api = SlowApi()
    with serve(api.app()) as url:
        yield api, url


def test_a_trickled_body_fails_at_the_deadline_and_is_retried_like_a_timeout(
    slow_api: tuple[SlowApi, str], clients: Clients
) -> None:
    api, url = slow_api
    source = make_source(
        url,
        {"name": "slow", "path": "/trickle", "records_path": "data"},
        timeout_seconds=5,
        request_deadline_seconds=1,
        retry={"max_attempts": 2, "max_backoff_seconds": 0.1},
    )
    stats = FetchStats()
    with pytest.raises(FetchError) as caught:
        list(series.fetch(clients(source), the_endpoint(source), stats))
    message = str(caught.value)
    assert "source `shop`, endpoint `slow`" in message
    assert "gave up after 2 attempts: ResponseTooSlow" in message
    assert "the response was still arriving after `request_deadline_seconds` (1 s;" in message
    assert api.paths == ["/trickle", "/trickle"]  # retried once, like a timeout
    assert stats.retries == 1 and stats.pages == 0


def test_a_retry_after_past_max_pause_fails_at_once_without_sleeping(
    slow_api: tuple[SlowApi, str], clients: Clients, monkeypatch: pytest.MonkeyPatch
) -> None:
    api, url = slow_api
    source = make_source(url, {"name": "hot", "path": "/throttled"})
    client = clients(source)
    limiter_sleeps: list[float] = []
    monkeypatch.setattr(client.limiter, "_sleep", limiter_sleeps.append)
    stats = FetchStats()
    with pytest.raises(ServerWaitTooLong) as caught:
        list(series.fetch(client, the_endpoint(source), stats))
    message = str(caught.value)
    assert "source `shop`, endpoint `hot`" in message
    assert "the server asked every request to wait 7200 s (Retry-After: 7200)" in message
    assert "longer than `rate_limit.max_pause_seconds` (300 s)" in message
    assert "raise `rate_limit.max_pause_seconds`" in message
    assert caught.value.status == 429
    assert api.paths == ["/throttled"], "one request: no retry"
    assert limiter_sleeps == []
    assert (stats.requests, stats.retries, stats.throttled) == (1, 0, 1)


def test_a_reset_past_max_pause_fails_the_next_request_not_the_page_in_hand(
    slow_api: tuple[SlowApi, str], clients: Clients, monkeypatch: pytest.MonkeyPatch
) -> None:
    api, url = slow_api
    paginator = {"type": "cursor", "cursor_path": "next", "cursor_param": "cursor"}
    source = make_source(
        url, {"name": "pages", "path": "/spent", "records_path": "data", "paginator": paginator}
    )
    client = clients(source)
    limiter_sleeps: list[float] = []
    monkeypatch.setattr(client.limiter, "_sleep", limiter_sleeps.append)
    stats = FetchStats()
    with pytest.raises(ServerWaitTooLong) as caught:
        list(series.fetch(client, the_endpoint(source), stats))
    message = str(caught.value)
    assert "source `shop`, endpoint `pages`" in message
    assert "the server asked every request to wait 7200 s (X-RateLimit-Reset)" in message
    assert "`rate_limit.max_pause_seconds` (300 s)" in message
    assert api.paths == ["/spent"], "the second page is never asked for"
    assert limiter_sleeps == []
    assert stats.pages == 1


def test_a_declared_refill_slower_than_max_pause_fails_instead_of_holding() -> None:
    clock = FakeClock()
    limiter = RateLimiter(100, 10, 4, clock=clock, sleep=clock.sleep, max_pause_seconds=300)
    with limiter.acquire():
        pass
    # ten requests a day, none left: the next one would wait 8640 s for the server's refill
    limiter.observe(
        200,
        {"RateLimit-Policy": "10;w=86400", "RateLimit-Limit": "10", "RateLimit-Remaining": "0"},
    )
    refused = pytest.raises(
        ServerWaitTooLong, match=r"wait 8640 s \(the refill its RateLimit-Policy"
    )
    with refused, limiter.acquire():
        pass
    assert clock.sleeps == []
    assert limiter.in_flight == 0


def test_pacing_never_spaces_requests_further_apart_than_max_pause() -> None:
    clock = FakeClock()
    limiter = RateLimiter(100, 10, 4, clock=clock, sleep=clock.sleep, max_pause_seconds=300)
    with limiter.acquire():
        pass
    # two requests left for the next hour: 1800 s apart, were it not for the cap
    limiter.observe(
        200,
        {"X-RateLimit-Limit": "5000", "X-RateLimit-Remaining": "2", "X-RateLimit-Reset": "3600"},
    )
    for _ in range(2):
        with limiter.acquire():
            pass
    assert clock.sleeps and max(clock.sleeps) == pytest.approx(300)


def answering(*responses: httpx.Response) -> Callable[[], httpx.Response]:
    """A `send` that answers `responses` in order."""
    queue = list(responses)
    http = httpx.Client(transport=httpx.MockTransport(lambda request: queue.pop(0)))
    return lambda: http.get("http://api.test/v1/orders")


def in_two_hours() -> str:
    return format_datetime(datetime.now(UTC) + timedelta(hours=2), usegmt=True)


@pytest.mark.parametrize(
    ("status", "headers", "named"),
    [
        (429, {"Retry-After": "7200"}, "wait 7200 s (Retry-After: 7200)"),
        (503, {"Retry-After": "<date>"}, "(Retry-After: "),
        (429, {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "7200"}, "(X-RateLimit-Reset)"),
    ],
    ids=["retry-after-seconds", "retry-after-date", "reset"],
)
def test_the_retry_policy_never_waits_past_max_pause(
    status: int, headers: dict[str, str], named: str
) -> None:
    sleeps: list[float] = []
    if headers.get("Retry-After") == "<date>":
        headers = {"Retry-After": in_two_hours()}
    policy = RetryPolicy(6, 3600, sleep=sleeps.append, max_pause_seconds=300)
    send = answering(httpx.Response(status, headers=headers), httpx.Response(200, json=[]))
    with pytest.raises(ServerWaitTooLong, match="max_pause_seconds") as caught:
        policy.call(send)
    assert named in str(caught.value)
    assert caught.value.status == status
    assert sleeps == []


def test_a_wait_within_max_pause_is_still_honoured() -> None:
    sleeps: list[float] = []
    policy = RetryPolicy(6, 600, sleep=sleeps.append, max_pause_seconds=300)
    send = answering(
        httpx.Response(429, headers={"Retry-After": "300"}), httpx.Response(200, json=[])
    )
    response, attempts = policy.call(send)
    assert (response.status_code, attempts, sleeps) == (200, 2, [300.0])
