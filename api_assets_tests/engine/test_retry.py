"""The retry policy over sequences of responses (httpx.MockTransport); sleeps are recorded by an
injected fake, never waited."""

import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest
import time_machine

from api_assets.errors import AuthError, FetchError
from api_assets.http.redact import Redactor
from api_assets.http.retry import RetriesExhausted, RetryableBody, RetryEvent, RetryPolicy

URL = "https://api.example.com/v1/items?api_key=sekrit-key-42&page=2"
Step = int | httpx.Response | Exception


def sequence(*steps: Step) -> tuple[Callable[[], httpx.Response], list[int]]:
    """A `send` that answers `steps` in order through a MockTransport (a status, a response,
    or an exception to raise), and the list of statuses it served."""
    queue = list(steps)
    served: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        step = queue.pop(0)
        if isinstance(step, Exception):
            raise step
        response = (
            step if isinstance(step, httpx.Response) else httpx.Response(step, json={"ok": step})
        )
        served.append(response.status_code)
        return response

    client = httpx.Client(transport=httpx.MockTransport(handler))
    return (lambda: client.get(URL)), served


def policy(
    max_attempts: int = 6, cap: float = 60.0, **kw: object
) -> tuple[RetryPolicy, list[float], list[RetryEvent]]:
    sleeps: list[float] = []
    events: list[RetryEvent] = []
    p = RetryPolicy(
        max_attempts,
        cap,
        sleep=sleeps.append,
        on_retry=events.append,
        rng=random.Random(7),
        **kw,  # type: ignore[arg-type]
    )
    return p, sleeps, events


def test_503_503_200_takes_three_attempts() -> None:
    send, served = sequence(503, 503, 200)
    p, sleeps, events = policy()
    response, attempts = p.call(send)
    assert response.status_code == 200 and attempts == 3
    assert served == [503, 503, 200]
    assert [e.status for e in events] == [503, 503] and [e.attempt for e in events] == [1, 2]
    assert [e.wait for e in events] == sleeps and len(sleeps) == 2
    assert all("sekrit" not in (e.url or "") for e in events)


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_each_retryable_status(status: int) -> None:
    send, served = sequence(status, 200)
    p, _, _ = policy()
    assert p.call(send)[1] == 2
    assert served == [status, 200]


def test_429_retry_after_seconds_and_http_date() -> None:
    # the clock stopped on a whole second (time-machine): the date is read against the same
    # "now" it was written from, however long the calls in between take
    now = datetime(2026, 11, 28, 3, 0, 0, tzinfo=UTC)
    with time_machine.travel(now, tick=False):
        date = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
        send, _ = sequence(
            httpx.Response(429, headers={"Retry-After": "7"}),
            httpx.Response(429, headers={"Retry-After": date}),
            200,
        )
        p, sleeps, events = policy()
        response, attempts = p.call(send)
    assert attempts == 3 and response.status_code == 200
    assert sleeps == [7.0, 30.0]
    assert [e.throttled for e in events] == [True, True]


def test_retry_after_zero_never_storms_and_is_capped() -> None:
    send, _ = sequence(
        httpx.Response(503, headers={"Retry-After": "0"}),
        httpx.Response(429, headers={"Retry-After": "86400"}),
        200,
    )
    p, sleeps, _ = policy(cap=120.0)
    p.call(send)
    assert sleeps == [0.05, 120.0]


def test_429_without_retry_after_waits_for_the_reset() -> None:
    send, _ = sequence(
        httpx.Response(429, headers={"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "9"}), 200
    )
    p, sleeps, _ = policy()
    p.call(send)
    assert sleeps == [9.0]


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_non_retryable_status_is_returned_at_once(status: int) -> None:
    send, served = sequence(status, 200)
    p, sleeps, events = policy()
    response, attempts = p.call(send)
    assert response.status_code == status and attempts == 1
    assert served == [status] and sleeps == [] and events == []


def test_exhausted_raises_fetch_error_with_status_and_redacted_url() -> None:
    send, served = sequence(*[503] * 4)
    redactor = Redactor()
    redactor.add_param_name("api_key")
    p, sleeps, _ = policy(max_attempts=4, redactor=redactor)
    with pytest.raises(FetchError) as info:
        p.call(send)
    err = info.value
    assert isinstance(err, RetriesExhausted) and err.attempts == 4
    assert err.status == 503 and served == [503] * 4 and len(sleeps) == 3
    assert err.url is not None and "sekrit" not in err.url and "api_key=***" in err.url
    assert "sekrit" not in str(err) and "503" in str(err) and "4 attempts" in str(err)
    # the engine re-raises errors with its own context as `type(exc)(message)`
    assert str(type(err)("context: " + str(err))).startswith("context: ")


def test_transport_errors_are_retried() -> None:
    request = httpx.Request("GET", URL)
    send, served = sequence(
        httpx.ConnectError("refused", request=request),
        httpx.ReadTimeout("slow", request=request),
        httpx.RemoteProtocolError("peer closed connection", request=request),
        200,
    )
    p, sleeps, events = policy()
    response, attempts = p.call(send)
    assert attempts == 4 and served == [200] and response.status_code == 200
    assert len(sleeps) == 3
    assert [type(e.exception).__name__ for e in events] == [
        "ConnectError",
        "ReadTimeout",
        "RemoteProtocolError",
    ]
    assert all(e.status is None for e in events)


def test_transport_errors_exhausted() -> None:
    request = httpx.Request("GET", URL)
    send, _ = sequence(*[httpx.ConnectError("refused", request=request)] * 3)
    p, _, _ = policy(max_attempts=3, redactor=Redactor())
    with pytest.raises(RetriesExhausted, match="3 attempts: ConnectError") as info:
        p.call(send)
    assert info.value.status is None


def test_our_own_mistakes_are_not_retried() -> None:
    send, _ = sequence(httpx.UnsupportedProtocol("ftp?"), 200)
    p, sleeps, _ = policy()
    with pytest.raises(httpx.UnsupportedProtocol):
        p.call(send)
    assert sleeps == []


def test_retryable_body_retried_once_only() -> None:
    calls = 0

    def send_bad_twice() -> httpx.Response:
        nonlocal calls
        calls += 1
        raise RetryableBody("the body is not JSON")

    p, sleeps, events = policy(max_attempts=6)
    with pytest.raises(RetryableBody, match="not JSON"):
        p.call(send_bad_twice)
    assert calls == 2 and len(sleeps) == 1
    assert isinstance(events[0].exception, RetryableBody)

    answers = iter([RetryableBody("error object"), None])

    def send_bad_once() -> httpx.Response:
        exc = next(answers)
        if exc is not None:
            raise exc
        return httpx.Response(200)

    assert policy()[0].call(send_bad_once)[1] == 2


def test_retryable_body_once_per_call_not_once_per_policy() -> None:
    p, _, _ = policy()
    for _ in range(3):
        answers = iter([RetryableBody("bad"), None])

        def send() -> httpx.Response:
            exc = next(answers)  # noqa: B023
            if exc is not None:
                raise exc
            return httpx.Response(200)

        assert p.call(send)[1] == 2


def test_auth_error_is_not_retried() -> None:
    def send() -> httpx.Response:
        raise AuthError("refused")

    p, sleeps, _ = policy()
    with pytest.raises(AuthError):
        p.call(send)
    assert sleeps == []


def test_full_jitter_bounded_by_cap_and_growing_window() -> None:
    base, cap = 0.5, 3.0
    send, _ = sequence(*[500] * 40)
    p, sleeps, _ = policy(max_attempts=40, cap=cap, base_seconds=base, min_wait_seconds=0.0)
    with pytest.raises(RetriesExhausted):
        p.call(send)
    assert len(sleeps) == 39
    for n, s in enumerate(sleeps):
        assert 0.0 <= s <= min(cap, base * 2**n)
    assert len(set(sleeps)) == len(sleeps)  # jittered, not a fixed ladder
    assert max(sleeps[5:]) > cap / 2  # and the window really reaches the cap


def test_zero_backoff_for_tests() -> None:
    send, _ = sequence(503, 503, 200)
    p, sleeps, _ = policy(cap=0.0)
    assert p.call(send)[1] == 3
    assert sleeps == [0.0, 0.0]
