"""The rate limiter: token accounting on a fake clock, header parsers, observe(), the
concurrency cap, and the process-shared bucket. Counts and injected clocks, never timings."""

import itertools
import json
import math
import multiprocessing
import threading
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from api_assets.config.models import RateLimitConfig
from api_assets.http.headers import (
    RateLimitState,
    parse_rate_limit,
    parse_refill_rate,
    parse_retry_after,
    reset_to_seconds,
)
from api_assets.http.ratelimit import RateLimiter, clear_limiters, get_limiter
from api_assets_tests.engine.conftest_policy import FakeClock, limiter_worker

NOW = 1_800_000_000.0  # an epoch "now" for the parsers


def max_in_window(starts: list[float], window: float) -> int:
    """The most starts in any closed window of length `window`."""
    starts = sorted(starts)
    best, j = 0, 0
    for i, t in enumerate(starts):
        while starts[j] < t - window - 1e-9:
            j += 1
        best = max(best, i - j + 1)
    return best


def assert_rate(starts: list[float], rate: float, burst: int) -> None:
    for window in (0.0, 0.05, 0.1, 0.5, 1.0, 2.0, 5.0):
        assert max_in_window(starts, window) <= burst + rate * window + 1e-6, window


# --- token accounting --------------------------------------------------------------------


def test_fake_clock_never_exceeds_rate_and_reaches_it() -> None:
    clock = FakeClock(0.0)
    limiter = RateLimiter(10, 5, 4, clock=clock, sleep=clock.sleep)
    starts = []
    for _ in range(100):
        with limiter.acquire():
            starts.append(clock())
    assert_rate(starts, 10, 5)
    assert starts[:5] == [0.0] * 5  # the burst
    # ... and it is not slower than the rate either: request k starts at (k - burst + 1) / R
    assert starts[99] == pytest.approx((99 - 4) / 10)
    assert max_in_window(starts, 1.0) == 15  # burst + 1 s of rate, not more


def test_idle_time_refills_only_up_to_burst() -> None:
    clock = FakeClock(0.0)
    limiter = RateLimiter(2, 3, 1, clock=clock, sleep=clock.sleep)
    for _ in range(3):
        with limiter.acquire():
            pass
    clock.advance(100)  # long idle: 200 tokens' worth of time, but the bucket holds 3
    starts = []
    for _ in range(10):
        with limiter.acquire() as waited:
            starts.append(clock())
    assert starts[:3] == [100.0] * 3 and waited > 0
    assert_rate(starts, 2, 3)


def test_threads_share_the_rate_in_arrival_order() -> None:
    # a frozen clock and a no-op sleep: each wait is exactly the start the bucket granted
    limiter = RateLimiter(20, 4, 8, clock=lambda: 0.0, sleep=lambda s: None)
    waits: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(25):
            with limiter.acquire() as waited, lock:
                waits.append(waited)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(waits) == 200
    assert_rate(waits, 20, 4)
    assert max(waits) == pytest.approx((200 - 4) / 20)


def test_concurrency_cap() -> None:
    limiter = RateLimiter(1e6, 1000, 3)
    active, peak = 0, 0
    lock = threading.Lock()
    release = threading.Event()
    entered = threading.Semaphore(0)

    def worker() -> None:
        nonlocal active, peak
        with limiter.acquire():
            with lock:
                active += 1
                peak = max(peak, active)
            entered.release()
            release.wait(10)
            with lock:
                active -= 1

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for _ in range(3):
        assert entered.acquire(timeout=10)
    assert not entered.acquire(timeout=0.2)  # a 4th cannot get in while 3 hold their slots
    release.set()
    for t in threads:
        t.join()
    assert peak == 3 and limiter.in_flight == 0


def test_acquire_releases_the_slot_on_error() -> None:
    limiter = RateLimiter(1e6, 10, 1)
    with pytest.raises(RuntimeError), limiter.acquire():
        raise RuntimeError("boom")
    with limiter.acquire():  # would block forever if the slot leaked
        pass
    assert limiter.in_flight == 0


# --- observe -----------------------------------------------------------------------------


def test_429_pauses_everyone_until_retry_after_then_no_burst() -> None:
    clock = FakeClock(0.0)
    limiter = RateLimiter(10, 5, 4, clock=clock, sleep=clock.sleep)
    limiter.observe(429, {"Retry-After": "5"})
    starts = []
    for _ in range(4):
        with limiter.acquire():
            starts.append(clock())
    assert starts[0] == pytest.approx(5.0)
    assert starts[1:] == pytest.approx([5.1, 5.2, 5.3])  # resumes at the rate, not in a burst


def test_429_without_retry_after_uses_the_reset_header() -> None:
    clock = FakeClock(0.0)
    limiter = RateLimiter(10, 5, 4, clock=clock, sleep=clock.sleep)
    limiter.observe(429, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "12"})
    with limiter.acquire() as waited:
        assert waited == pytest.approx(12.0)


def test_remaining_zero_pauses_until_reset() -> None:
    clock = FakeClock(0.0)
    limiter = RateLimiter(10, 5, 4, clock=clock, sleep=clock.sleep)
    limiter.observe(
        200, {"RateLimit-Limit": "100", "RateLimit-Remaining": "0", "RateLimit-Reset": "30"}
    )
    with limiter.acquire():
        assert clock() == pytest.approx(30.0)


def test_low_remaining_spreads_requests_over_the_reset_window() -> None:
    clock = FakeClock(0.0)
    limiter = RateLimiter(10, 5, 4, clock=clock, sleep=clock.sleep)
    # 4 left for the next 20 s: at 10/s they would be gone in 0.4 s, so one every 5 s
    limiter.observe(200, {"X-RateLimit-Remaining": "4", "X-RateLimit-Reset": "20"})
    starts = []
    for _ in range(4):
        with limiter.acquire():
            starts.append(clock())
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert all(g >= 5.0 - 1e-9 for g in gaps)
    assert starts[-1] <= 20.0  # spread over the window, not beyond it


def test_plenty_remaining_does_not_slow_down() -> None:
    clock = FakeClock(0.0)
    limiter = RateLimiter(10, 5, 4, clock=clock, sleep=clock.sleep)
    limiter.observe(200, {"X-RateLimit-Remaining": "4", "X-RateLimit-Reset": "20"})
    limiter.observe(200, {"X-RateLimit-Remaining": "5000", "X-RateLimit-Reset": "20"})
    for _ in range(5):
        with limiter.acquire():
            pass
    assert clock() == 0.0  # the whole burst went at once


def test_structured_ratelimit_header_and_epoch_reset() -> None:
    clock = FakeClock(0.0)
    limiter = RateLimiter(10, 5, 4, clock=clock, sleep=clock.sleep)
    limiter.observe(200, {"RateLimit": "limit=100, remaining=0, reset=8"})
    with limiter.acquire() as waited:
        assert waited == pytest.approx(8.0)


# --- a server that declares its window: follow its bucket ---------------------------------


def policy(remaining: int, limit: int = 10, window: int = 1, reset: int = 1) -> dict[str, str]:
    """Headers of a token-bucket server that declares `limit` per `window` seconds."""
    return {
        "RateLimit-Limit": str(limit),
        "RateLimit-Remaining": str(remaining),
        "RateLimit-Reset": str(reset),
        "RateLimit-Policy": f"{limit};w={window}",
    }


def test_spent_budget_that_refills_waits_one_request_not_the_reset() -> None:
    clock = FakeClock(0.0)
    limiter = RateLimiter(10, 5, 4, clock=clock, sleep=clock.sleep)
    # a token bucket of 10/s: its reset (1 s) is when it is full again, not when it has one
    limiter.observe(200, policy(remaining=0, reset=1))
    starts = []
    for _ in range(3):
        with limiter.acquire():
            starts.append(clock())
    assert starts == pytest.approx([0.1, 0.2, 0.3])


def test_low_budget_that_refills_runs_at_the_refill_rate() -> None:
    clock = FakeClock(0.0)
    limiter = RateLimiter(10, 5, 4, clock=clock, sleep=clock.sleep)
    # 4 left, 10/s back: no spreading of the 4 over the reset as if nothing came back
    limiter.observe(200, policy(remaining=4, reset=1))
    starts = []
    for _ in range(8):
        with limiter.acquire():
            starts.append(clock())
    assert starts == pytest.approx([0.0] * 4 + [0.1, 0.2, 0.3, 0.4])


def test_a_declared_rate_below_the_configured_one_is_followed() -> None:
    clock = FakeClock(0.0)
    limiter = RateLimiter(10, 5, 4, clock=clock, sleep=clock.sleep)
    limiter.observe(200, policy(remaining=2, limit=2, window=1))  # the server allows 2/s
    starts = []
    for _ in range(5):
        with limiter.acquire():
            starts.append(clock())
    assert starts == pytest.approx([0.0, 0.0, 0.5, 1.0, 1.5])
    assert_rate(starts, 10, 5)  # ... and ours still holds


def test_requests_on_the_wire_are_not_in_remaining() -> None:
    clock = FakeClock(0.0)
    limiter = RateLimiter(10, 5, 4, clock=clock, sleep=clock.sleep)
    with limiter.acquire():
        # one request is out: the server's 1 left may be the one it is about to take
        limiter.observe(200, policy(remaining=1))
        with limiter.acquire():
            assert clock() == pytest.approx(0.1)


def test_requests_answered_after_it_went_out_may_be_missing_from_remaining() -> None:
    clock = FakeClock(0.0)
    limiter = RateLimiter(10, 5, 4, clock=clock, sleep=clock.sleep)
    a_out, b_done = threading.Event(), threading.Event()

    def first() -> None:  # goes out first, is answered last: the server counted b after it
        with limiter.acquire():
            a_out.set()
            assert b_done.wait(10)
        limiter.observe(200, policy(remaining=1))

    def second() -> None:
        assert a_out.wait(10)
        with limiter.acquire():
            pass
        b_done.set()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with limiter.acquire():
        assert clock() == pytest.approx(0.1)  # 1 left minus b: none now, one 0.1 s later


def test_a_429_despite_following_the_refill_falls_back_to_remaining_only() -> None:
    clock = FakeClock(0.0)
    limiter = RateLimiter(10, 5, 4, clock=clock, sleep=clock.sleep)
    with limiter.acquire():
        pass
    limiter.observe(200, policy(remaining=1, reset=1))
    with limiter.acquire():  # followed the server's bucket (a fixed window in disguise) ...
        pass
    limiter.observe(429, {**policy(remaining=0, reset=2), "Retry-After": "2"})
    with limiter.acquire():
        assert clock() == pytest.approx(2.0)
    # ... so its window is no longer trusted to refill: at zero, everyone waits for the reset
    limiter.observe(200, policy(remaining=0, reset=1))
    with limiter.acquire():
        assert clock() == pytest.approx(3.0)


def test_a_429_before_any_budget_was_seen_keeps_following_the_refill() -> None:
    clock = FakeClock(0.0)
    limiter = RateLimiter(10, 5, 4, clock=clock, sleep=clock.sleep)
    with limiter.acquire():  # sent blind: the configured burst was more than the server had
        pass
    limiter.observe(429, {**policy(remaining=0), "Retry-After": "1"})
    with limiter.acquire():
        assert clock() == pytest.approx(1.0)
    limiter.observe(200, policy(remaining=0, reset=1))
    with limiter.acquire():
        assert clock() == pytest.approx(1.1)


def test_a_pause_holds_requests_already_waiting_for_their_start() -> None:
    clock = FakeClock(0.0)
    observed = []

    def sleep(seconds: float) -> None:
        if not observed:  # a 429 arrives while this request sleeps until its start
            clock.advance(0.5)
            observed.append(True)
            limiter.observe(429, {"Retry-After": "5"})
            seconds -= 0.5
        clock.sleep(seconds)

    limiter = RateLimiter(1, 1, 2, clock=clock, sleep=sleep)
    with limiter.acquire():
        pass
    with limiter.acquire():  # granted a start at 1.0, before the pause was known
        assert clock() == pytest.approx(5.5)


# --- simulated servers on the fake clock --------------------------------------------------------


class TokenBucketServer:
    """A token bucket like the benchmark's: `rate`/s, depth `burst`, demo-API headers."""

    def __init__(self, clock: FakeClock, rate: float, burst: float, *, declare: bool = True):
        self.clock, self.rate, self.burst, self.declare = clock, rate, burst, declare
        self.tokens, self.at = burst, clock()
        self.accepted: list[float] = []
        self.refused = 0

    def answer(self) -> tuple[int, dict[str, str]]:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        ok = self.tokens >= 1.0
        if ok:
            self.tokens -= 1.0
            self.accepted.append(now)
        else:
            self.refused += 1
        headers = {
            "RateLimit-Limit": str(int(self.rate)),
            "RateLimit-Remaining": str(int(self.tokens)),
            "RateLimit-Reset": str(math.ceil((self.burst - self.tokens) / self.rate)),
        }
        if self.declare:
            headers["RateLimit-Policy"] = f"{int(self.rate)};w=1"
        if not ok:
            headers["Retry-After"] = str(max(1, math.ceil((1.0 - self.tokens) / self.rate)))
        return (200 if ok else 429), headers


class FixedWindowServer(TokenBucketServer):
    """`limit` per aligned window of `window` seconds; declares that window when `declare`."""

    def __init__(self, clock: FakeClock, limit: int, window: float, *, declare: bool = True):
        super().__init__(clock, limit / window, limit, declare=declare)
        self.limit, self.window = limit, window
        self.index, self.count = -1, 0

    def answer(self) -> tuple[int, dict[str, str]]:
        now = self.clock()
        index = math.floor(now / self.window)
        if index != self.index:
            self.index, self.count = index, 0
        ok = self.count < self.limit
        if ok:
            self.count += 1
            self.accepted.append(now)
        else:
            self.refused += 1
        left = (index + 1) * self.window - now
        headers = {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.limit - self.count),
            "RateLimit-Reset": str(math.ceil(left)),
        }
        if self.declare:
            headers["RateLimit-Policy"] = f"{self.limit};w={self.window:g}"
        if not ok:
            headers["Retry-After"] = str(max(1, math.ceil(left)))
        return (200 if ok else 429), headers


def ask(server: TokenBucketServer, limiter: RateLimiter) -> None:
    """One request: it reaches the server 0.5 ms after its start, the answer 0.5 ms later."""
    with limiter.acquire():
        server.clock.advance(0.0005)
        status, headers = server.answer()
        server.clock.advance(0.0005)
    limiter.observe(status, headers)


def run_against(server: TokenBucketServer, limiter: RateLimiter, requests: int) -> None:
    while len(server.accepted) < requests:
        ask(server, limiter)


def sustained(accepted: list[float], burst: int) -> float:
    """The benchmark's measure: the rate from the burst-th accepted request to the last."""
    return (len(accepted) - 1 - burst) / (accepted[-1] - accepted[burst])


@pytest.mark.parametrize("concurrency", [4, 8])
def test_configured_like_the_server_runs_at_its_rate_without_a_429(concurrency: int) -> None:
    clock = FakeClock(0.0)
    server = TokenBucketServer(clock, 50, 50)
    limiter = RateLimiter(50, 50, concurrency, clock=clock, sleep=clock.sleep)
    run_against(server, limiter, 300)
    assert server.refused == 0
    assert sustained(server.accepted, 50) >= 0.99 * 50
    assert server.accepted[-1] == pytest.approx((300 - 50) / 50, abs=0.05)


def test_a_server_slower_than_configured_is_followed_without_a_429() -> None:
    clock = FakeClock(0.0)
    server = TokenBucketServer(clock, 20, 5)
    limiter = RateLimiter(50, 50, 4, clock=clock, sleep=clock.sleep)
    run_against(server, limiter, 200)
    assert server.refused == 0
    assert sustained(server.accepted, 5) >= 0.99 * 20


def test_a_fixed_window_that_declares_its_window_costs_one_429() -> None:
    clock = FakeClock(0.0)
    server = FixedWindowServer(clock, 50, 1.0)
    limiter = RateLimiter(50, 50, 4, clock=clock, sleep=clock.sleep)
    run_against(server, limiter, 300)
    assert server.refused == 1  # then the window is no longer trusted to refill


def test_a_fixed_window_that_declares_nothing_costs_no_429() -> None:
    clock = FakeClock(0.0)
    server = FixedWindowServer(clock, 50, 1.0, declare=False)
    limiter = RateLimiter(50, 50, 4, clock=clock, sleep=clock.sleep)
    run_against(server, limiter, 300)
    assert server.refused == 0


# --- parsers -------------------------------------------------------------------------------


@given(st.integers(min_value=0, max_value=10**8))
def test_reset_delta_seconds(delta: int) -> None:
    assert reset_to_seconds(delta, NOW) == delta


@given(st.floats(min_value=0, max_value=10**7, allow_nan=False))
def test_reset_epoch_seconds_and_millis(ahead: float) -> None:
    assert reset_to_seconds(NOW + ahead, NOW) == pytest.approx(ahead, abs=1e-3)
    assert reset_to_seconds((NOW + ahead) * 1000, NOW) == pytest.approx(ahead, abs=1e-3)


@given(st.floats(min_value=1, max_value=10**6, allow_nan=False))
def test_reset_in_the_past_is_zero(ago: float) -> None:
    assert reset_to_seconds(NOW - ago, NOW) == 0.0


@given(
    st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
    ),
    st.integers(min_value=0, max_value=10**7),
)
def test_retry_after_http_date_round_trip(now: datetime, ahead: int) -> None:
    now = now.replace(microsecond=0)
    value = format_datetime(now + timedelta(seconds=ahead), usegmt=True)
    assert parse_retry_after(value, now) == ahead
    assert parse_retry_after(format_datetime(now - timedelta(seconds=ahead), usegmt=True), now) == 0


@given(st.integers(min_value=0, max_value=10**9))
def test_retry_after_delta_seconds(seconds: int) -> None:
    assert parse_retry_after(str(seconds), datetime.now(UTC)) == seconds


@pytest.mark.parametrize("value", ["", "soon", "-3", "nan", "Mon, 99 Foo 2026"])
def test_retry_after_unreadable(value: str) -> None:
    assert parse_retry_after(value, datetime.now(UTC)) is None


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        (
            {
                "X-RateLimit-Limit": "5000",
                "X-RateLimit-Remaining": "4999",
                "X-RateLimit-Reset": str(int(NOW) + 60),
            },
            RateLimitState(5000, 4999, 60.0),
        ),
        (
            {"RateLimit-Limit": "100", "RateLimit-Remaining": "7", "RateLimit-Reset": "30"},
            RateLimitState(100, 7, 30.0),
        ),
        (
            {"ratelimit-limit": "100, 100;w=60", "ratelimit-remaining": "3"},
            RateLimitState(100, 3, None),
        ),
        ({"RateLimit": "limit=10, remaining=2, reset=5"}, RateLimitState(10, 2, 5.0)),
        (
            {"RateLimit": '"default";r=2;t=5', "RateLimit-Policy": '"default";q=10;w=60'},
            RateLimitState(10, 2, 5.0),
        ),
        (
            {"x-rate-limit-remaining": "1", "x-rate-limit-reset": str(int(NOW * 1000) + 2000)},
            RateLimitState(None, 1, 2.0),
        ),
        (
            {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset-After": "1.5"},
            RateLimitState(None, 0, 1.5),
        ),
        ({"Content-Type": "application/json"}, None),
    ],
)
def test_parse_rate_limit(headers: dict[str, str], expected: RateLimitState | None) -> None:
    assert parse_rate_limit(headers, NOW) == expected


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"RateLimit-Policy": "50;w=1"}, 50.0),
        ({"RateLimit-Policy": '"default";q=100;w=60'}, 100 / 60),
        ({"ratelimit-limit": "100, 100;w=60"}, 100 / 60),
        ({"RateLimit-Policy": "10;w=1, 1000;w=3600"}, 1000 / 3600),  # the tighter one
        ({"RateLimit-Policy": '"burst";w=10'}, 2.0),  # no quota: the limit, 20
        ({"RateLimit-Policy": "10;w=0"}, None),
        ({"X-RateLimit-Limit": "5000", "X-RateLimit-Remaining": "7"}, None),  # no window
    ],
)
def test_parse_refill_rate(headers: dict[str, str], expected: float | None) -> None:
    rate = parse_refill_rate(headers, 20)
    assert rate == (None if expected is None else pytest.approx(expected))


# --- registry and the process-shared bucket ------------------------------------------------


def test_get_limiter_is_one_per_key(tmp_path: Path) -> None:
    clear_limiters()
    config = RateLimitConfig(requests_per_second=5, burst=2, max_concurrency=2)
    a = get_limiter("shop:oauth", config, tmp_path)
    assert get_limiter("shop:oauth", config, tmp_path) is a
    assert get_limiter("other", config, None) is not a
    assert a.shared_path is not None and a.shared_path.parent == tmp_path
    with a.acquire():
        pass
    assert a.shared_path.exists()
    clear_limiters()


def test_shared_bucket_between_two_limiters_in_one_process(tmp_path: Path) -> None:
    path = tmp_path / "b.bucket"
    kw = {"shared_path": path, "clock": lambda: 0.0, "sleep": lambda s: None}
    a, b = RateLimiter(10, 3, 4, **kw), RateLimiter(10, 3, 4, **kw)  # type: ignore[arg-type]
    waits = []
    for i in range(40):
        with (a if i % 2 else b).acquire() as waited:
            waits.append(waited)
    assert_rate(waits, 10, 3)


def run_workers(path: Path, n: int) -> list[float]:
    """`n` acquires in this process and `n` in a spawned child, on one shared bucket."""
    ctx = multiprocessing.get_context("spawn")
    start, results = ctx.Barrier(2), ctx.Queue()
    child = ctx.Process(target=limiter_worker, args=(str(path), n, start, results))
    child.start()
    here = threading.Thread(target=limiter_worker, args=(str(path), n, start, results))
    here.start()
    waits = [w for _ in range(2) for w in json.loads(results.get(timeout=120))]
    here.join(30)
    child.join(30)
    return waits


def test_shared_mode_two_processes_keep_the_combined_rate(tmp_path: Path) -> None:
    waits = run_workers(tmp_path / "shared.bucket", 3000)
    assert len(waits) == 6000
    assert_rate(waits, 10, 3)  # the limit of one limiter, for both processes together
    assert max(waits) == pytest.approx((6000 - 3) / 10)


def test_max_in_window_detects_an_excess() -> None:
    # the check used above does fail on two unshared buckets' schedules
    one = [0.0, 0.0, 0.0] + [k / 10 for k in range(1, 58)]
    with pytest.raises(AssertionError):
        assert_rate(one + one, 10, 3)
