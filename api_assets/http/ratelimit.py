"""The proactive rate limiter: a request starts only when the configured rate, the concurrency
cap and the server's own budget all allow it.

The rate is a GCRA token bucket (rate `requests_per_second`, depth `burst`) kept as one number,
the theoretical arrival time: `acquire()` reserves the next start time under a lock and sleeps
until then, so waiting threads are served in arrival order and the configured rate is never
exceeded over any window (at most `burst + rate·window` starts). `observe()` reads what the
server says about its budget (`X-RateLimit-*`, IETF `RateLimit-*` and the structured `RateLimit`
header) and slows down *before* the budget is spent. The budget an answer shows is its
`remaining` minus every request the server may have counted after it: those still on the wire
and those answered after it went out.

- A server that declares its window (`RateLimit-Policy: 50;w=1`, draft-08 `q=…;w=…`, or `;w=` in
  a `RateLimit-Limit` value) is taken to give its quota back evenly, `q / w` per second — a token
  bucket or a sliding window, whose reset is the time until it is *full* again, not until it has
  a request's worth. The limiter then follows the server's bucket as its newest answer describes
  it (a second GCRA: the budget now, `q / w` per second after): every request takes one of its
  requests right before it goes out, so it never runs slower than the server refills nor faster
  than it allows. The first 429 shows that assumption wrong for this limiter (a fixed window, or a
  budget others spend too): from then on the server is treated as one that declares no window.
- Otherwise `remaining` is all there is until the reset: when the budget runs low it is spread
  evenly over the time to the reset; at zero every caller pauses until the reset.
- On a 429, every caller pauses until `Retry-After` (or the reset). A pause also holds back the
  requests that were already waiting for a start time inside it.
- No wait the server asks for is longer than `max_pause_seconds` (`rate_limit.max_pause_seconds`):
  a longer `Retry-After`, reset or declared refill is not slept through; the next request of
  this process fails at once with `ServerWaitTooLong`, naming the header and the wait (the
  answer that asked for it is still used). Pacing spaces requests at most that far apart.

With `shared_path`, the bucket state lives in a small file updated under `fcntl.flock`, so that
several processes on one machine (parallel Dagster steps and runs of the same source) share one
budget. The concurrency cap, the requests on the wire and the picture of the server's bucket
stay per process.

The headers are read by `headers.py`.
"""

import fcntl
import hashlib
import math
import os
import re
import struct
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

from api_assets.config.models import RateLimitConfig
from api_assets.errors import ServerWaitTooLong
from api_assets.http.headers import (
    RateLimitState,
    header,
    parse_rate_limit,
    parse_refill_rate,
    parse_retry_after,
    reset_header,
)

DEFAULT_PAUSE_SECONDS = 1.0  # a 429 or an empty budget that does not say for how long


_STATE = struct.Struct("<5d")  # tat, pause_until, pace_interval, pace_until, clock_origin


@dataclass
class _Bucket:
    tat: float = -math.inf
    pause_until: float = -math.inf
    pace_interval: float = 0.0
    pace_until: float = -math.inf


class _SharedFile:
    """The bucket state in a file shared by processes, read and written under `flock`."""

    def __init__(self, path: Path, check_origin: bool):
        self.path = path
        self.check_origin = check_origin
        self._fd = -1
        self._pid = -1

    def _open(self) -> int:
        # flock belongs to the open file description: a forked child must open its own
        if self._pid != os.getpid():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            self._pid = os.getpid()
        return self._fd

    def update(self, change: Callable[[_Bucket], float]) -> float:
        fd = self._open()
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            data = os.pread(fd, _STATE.size, 0)
            # time.monotonic() is system-wide but restarts at boot: a file written before a
            # reboot has another origin (epoch time of monotonic zero) and is started afresh.
            origin = time.time() - time.monotonic() if self.check_origin else 0.0
            bucket = _Bucket()
            if len(data) == _STATE.size:
                tat, pause, pace, pace_until, stored_origin = _STATE.unpack(data)
                if not self.check_origin or abs(stored_origin - origin) < 5.0:
                    bucket = _Bucket(tat, pause, pace, pace_until)
            result = change(bucket)
            os.pwrite(
                fd,
                _STATE.pack(
                    bucket.tat, bucket.pause_until, bucket.pace_interval, bucket.pace_until, origin
                ),
                0,
            )
            return result
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)


# --- the limiter ---------------------------------------------------------------------------


class _Permit:
    """The context manager `acquire()` returns; its value is the seconds waited."""

    __slots__ = ("_limiter",)

    def __init__(self, limiter: "RateLimiter"):
        self._limiter = limiter

    def __enter__(self) -> float:
        return self._limiter._enter()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._limiter._exit()


class RateLimiter:
    """Blocks each request until the rate, the concurrency cap and the server's budget allow it.

    `with limiter.acquire() as waited:` send one request; then `limiter.observe(status, headers)`.
    `clock` and `sleep` are injectable (tests use a fake clock); with `shared_path` the clock must
    be one all processes share (`time.monotonic` is, on one machine).
    """

    def __init__(
        self,
        requests_per_second: float,
        burst: int,
        max_concurrency: int,
        *,
        shared_path: Path | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        max_pause_seconds: float = 300.0,
    ):
        if requests_per_second <= 0 or burst < 1 or max_concurrency < 1:
            raise ValueError("requests_per_second > 0, burst >= 1 and max_concurrency >= 1")
        self.requests_per_second = float(requests_per_second)
        self.burst = int(burst)
        self.max_concurrency = int(max_concurrency)
        self.shared_path = shared_path
        self.max_pause_seconds = max_pause_seconds
        self._interval = 1.0 / self.requests_per_second
        self._tau = (self.burst - 1) * self._interval  # how far ahead of the rate a start may be
        self._clock = clock
        self._sleep = sleep
        self._slots = threading.BoundedSemaphore(self.max_concurrency)
        self._lock = threading.Lock()
        self._bucket = _Bucket()
        self._shared = (
            _SharedFile(shared_path, check_origin=clock is time.monotonic)
            if shared_path is not None
            else None
        )
        self._permit = _Permit(self)
        self._in_flight = 0  # requests on the wire
        self._answered = 0  # requests answered (off the wire) so far
        # .sent, then .answered: (`_answered` when this thread's request went out, whether it
        # followed the server's bucket), for observe()
        self._local = threading.local()
        # the last pause this process announced: requests already given a start inside it wait
        self._pause_seen = -math.inf
        # The server's own bucket as its newest answer described it (a second GCRA: `budget`
        # requests now, one more every `_server_interval` s, at most `capacity`), followed when
        # the server declares its window; `_server_interval` 0: not followed. Per process.
        self._server_tat = -math.inf
        self._server_tau = 0.0
        self._server_interval = 0.0
        # False once a 429 showed that a declared window does not refill evenly
        self._trust_refill = True
        # a wait the server asked for past `max_pause_seconds`: (what asked, seconds, until)
        self._refusal: tuple[str, float, float] | None = None

    def __repr__(self) -> str:
        mode = f", shared={self.shared_path}" if self.shared_path else ""
        return (
            f"RateLimiter({self.requests_per_second}/s, burst={self.burst}, "
            f"max_concurrency={self.max_concurrency}{mode})"
        )

    @property
    def in_flight(self) -> int:
        """Requests on the wire (started, not yet answered) in this process."""
        return self._in_flight

    # --- acquire -----------------------------------------------------------------------------

    def acquire(self) -> _Permit:
        """A context manager: blocks until a concurrency slot and a start time are granted;
        its value is the number of seconds waited (for both)."""
        return self._permit

    def _enter(self) -> float:
        t0 = self._clock()
        self._slots.acquire()
        try:
            while True:
                with self._lock:
                    now = self._clock()
                    self._check_refusal(now)
                    start = self._reserve_start(now)
                wait = start - now
                if wait > 0:
                    self._sleep(wait)
                with self._lock:
                    # A pause announced while this request slept (the budget ran out, a 429)
                    # covers it too: it asks for a new start, after the pause (or fails, when
                    # the server asked for longer than `max_pause_seconds`).
                    if self._pause_seen > start or self._refusal is not None:
                        continue
                    # Last, right before it goes out: one of the requests the server's bucket
                    # holds, as its newest answer counted them (those on the wire took theirs).
                    hold = self._take_server_token(self._clock())
                    if hold <= 0:
                        self._in_flight += 1
                        sent = (self._answered, self._server_interval > 0.0)
                        break
                # Not yet: wait for the server, then ask our own bucket again (the start it
                # granted goes back unused), so that our rate and burst hold at the real start.
                self._give_back()
                if hold > self.max_pause_seconds:
                    what = "the refill its RateLimit-Policy declares"
                    raise wait_too_long(hold, what, self.max_pause_seconds)
                self._sleep(hold)
            self._local.sent = sent
            return max(0.0, now - t0) + max(0.0, wait)
        except BaseException:
            self._slots.release()
            raise

    def _reserve_start(self, now: float) -> float:
        """Under the lock: reserve a start time in this process's or the shared bucket."""
        if self._shared is None:
            return self._reserve(self._bucket, now)
        return self._shared.update(lambda b: self._reserve(b, now))

    def _give_back(self) -> None:
        """Return one reserved start that was not used (GCRA: one interval less debt)."""

        def change(b: _Bucket) -> float:
            b.tat -= self._interval
            return 0.0

        self._update(change)

    def _check_refusal(self, now: float) -> None:
        """Under the lock: raise while a wait the server asked for past `max_pause_seconds`
        lasts (nothing was reserved yet)."""
        if self._refusal is None:
            return
        asked_by, seconds, until = self._refusal
        if now >= until:
            self._refusal = None
            return
        raise wait_too_long(seconds, asked_by, self.max_pause_seconds, left=until - now)

    def _take_server_token(self, now: float) -> float:
        """Under the lock: 0 after taking one request of the server's bucket (when it is
        followed), else the seconds until it holds one."""
        if self._server_interval <= 0.0:
            return 0.0
        ready = self._server_tat - self._server_tau
        if ready > now:
            return ready - now
        self._server_tat = max(self._server_tat, now) + self._server_interval
        return 0.0

    def _exit(self) -> None:
        local = self._local.__dict__
        with self._lock:
            self._in_flight -= 1
            self._answered += 1
            local["answered"] = local.pop("sent", None)
        self._slots.release()

    def _reserve(self, b: _Bucket, now: float) -> float:
        """GCRA: the start time of one request, reserved now (FIFO, no busy waiting)."""
        interval, tau = self._interval, self._tau
        if now < b.pace_until and b.pace_interval > interval:
            interval, tau = b.pace_interval, 0.0  # the server's budget is tight: no bursts
        tat = b.tat if b.tat > now else now
        start = tat - tau
        if start < now:
            start = now
        if start < b.pause_until:
            start = b.pause_until
        b.tat = (tat if tat > start else start) + interval
        return start

    # --- observe -------------------------------------------------------------------------

    def observe(self, status: int, headers: Mapping[str, str]) -> None:
        """Adjust to what a response says about the server's budget (call after every response)."""
        # this thread's last request (None: observe() called without acquire())
        sent: tuple[int, bool] | None = self._local.__dict__.pop("answered", None)
        if status != 429 and not _mentions_budget(headers):
            return  # the common case costs one scan of the header names
        state = parse_rate_limit(headers, time.time())
        if status == 429:
            pause, asked_by = _asked_wait(headers, state)
            if sent is None or sent[1]:
                # Refused although it followed the server's bucket as announced: a fixed
                # window, or a budget others spend too. Trust only `remaining` from now on.
                with self._lock:
                    self._trust_refill = False
            wait = DEFAULT_PAUSE_SECONDS if pause is None else pause
            self._pause(wait, forget_server=True, asked_by=asked_by)
            return
        if state is None or state.remaining is None:
            return
        with self._lock:
            # A request the server counted after this one is still on the wire, or was answered
            # after this one went out (it reached the server later; one sent earlier can too,
            # when its thread waited for the GIL): `remaining` may miss all of those.
            uncounted = self._in_flight
            if sent is not None:
                uncounted += self._answered - sent[0] - 1  # not this one
        budget = state.remaining - uncounted
        reset = state.reset_after_seconds
        refill = parse_refill_rate(headers, state.limit) if self._trust_refill else None
        if refill is not None and refill > 0:
            # The budget comes back at `refill`/s (a token bucket, a sliding window): follow the
            # server's bucket as this answer describes it, `budget` now and `refill`/s after —
            # neither slower (its reset is when it is full again, not when it has a request's
            # worth) nor faster.
            capacity = max(state.limit or 0, state.remaining, 1)
            self._follow_server(budget, refill, capacity)
            return
        # Pace only when the budget runs low: a server that refills continuously (a token
        # bucket) announces a reset that is not a hard window end, and spreading a large
        # remaining budget over it would run below the configured rate for nothing.
        low = max(2 * self.max_concurrency, 0.1 * (state.limit or 0))
        if budget <= 0:
            asked_by = None if reset is None else reset_header(headers)
            self._pause(DEFAULT_PAUSE_SECONDS if reset is None else reset, asked_by=asked_by)
        elif reset is not None and reset > 0 and budget <= low:
            self._pace(reset / budget, reset)
        elif reset is not None and reset > 0:
            self._pace(self._interval, 0.0)  # plenty left: stop any earlier pacing

    def _update(self, change: Callable[[_Bucket], float]) -> None:
        with self._lock:
            if self._shared is None:
                change(self._bucket)
            else:
                self._shared.update(change)

    def _pause(
        self, seconds: float, *, forget_server: bool = False, asked_by: str | None = None
    ) -> None:
        """Nobody starts for `seconds`; then requests resume at the rate, without a burst.
        `forget_server`: stop following the server's bucket (its refill was not what it said).
        `asked_by`: the header that asked for it; over `max_pause_seconds`, nobody waits: the
        next request fails instead (`_check_refusal`)."""
        seconds = max(0.0, seconds)
        if asked_by is not None and seconds > self.max_pause_seconds:
            with self._lock:
                self._refusal = (asked_by, seconds, self._clock() + seconds)
                if forget_server:
                    self._server_interval = 0.0
            return
        seconds = min(seconds, self.max_pause_seconds)
        until = self._clock() + seconds
        with self._lock:
            if until > self._pause_seen:
                self._pause_seen = until

        def change(b: _Bucket) -> float:
            if until > b.pause_until:
                b.pause_until = until
            b.tat = max(b.tat, until + self._tau)
            return 0.0

        self._update(change)
        if forget_server:
            with self._lock:
                self._server_interval = 0.0

    def _follow_server(self, budget: int, refill: float, capacity: int) -> None:
        """From now on, start requests no faster than a bucket of `capacity` that holds `budget`
        now and refills at `refill`/s allows (the server's, as its newest answer describes it:
        a lower bound, since `budget` leaves out every request the answer may not count)."""
        interval = 1.0 / refill
        tau = (capacity - 1) * interval
        with self._lock:
            if not self._trust_refill:
                return  # a 429 arrived meanwhile
            self._server_tat = self._clock() + tau - (budget - 1) * interval
            self._server_tau, self._server_interval = tau, interval

    def _pace(self, interval: float, seconds: float) -> None:
        """Space requests `interval` apart for `seconds` (or stop pacing if our rate is slower)."""
        now = self._clock()
        interval = min(interval, self.max_pause_seconds)  # no single wait longer than that
        pacing = interval > self._interval

        def change(b: _Bucket) -> float:
            if pacing:
                b.pace_interval, b.pace_until = interval, now + min(seconds, self.max_pause_seconds)
            elif b.pace_until > now:
                b.pace_until = now
            return 0.0

        self._update(change)


def _asked_wait(
    headers: Mapping[str, str], state: RateLimitState | None
) -> tuple[float | None, str | None]:
    """The wait a 429 asks for and the header that asks: `Retry-After`, else the reset."""
    retry_after = header(headers, "retry-after")
    pause = parse_retry_after(retry_after, datetime.now(UTC)) if retry_after else None
    if retry_after and pause is not None:
        return pause, f"Retry-After: {retry_after.strip()[:40]}"
    if state is not None and state.reset_after_seconds is not None:
        return state.reset_after_seconds, reset_header(headers)
    return None, None


def wait_too_long(
    seconds: float, asked_by: str, limit: float, left: float | None = None
) -> ServerWaitTooLong:
    """The error for a wait the server asked for past `rate_limit.max_pause_seconds`."""
    still = "" if left is None else f", {left:.0f} s of it still to go"
    return ServerWaitTooLong(
        f"the server asked every request to wait {seconds:.0f} s ({asked_by}){still}, longer "
        f"than `rate_limit.max_pause_seconds` ({limit:g} s): failing now instead of sleeping; "
        "run again once the wait is over, or raise `rate_limit.max_pause_seconds` to wait it out"
    )


def _mentions_budget(headers: Mapping[str, str]) -> bool:
    for name in headers:
        n = name.lower()
        if "ratelimit" in n or "rate-limit" in n:
            return True
    return False


# --- one limiter per key per process -----------------------------------------------------

_REGISTRY: dict[tuple[int, str], RateLimiter] = {}
_REGISTRY_LOCK = threading.Lock()


def shared_file(shared_dir: Path, key: str) -> Path:
    """The state file of a key: a readable stem plus a hash, safe as a file name."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", key)[:60]
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return shared_dir / f"{stem}-{digest}.bucket"


def get_limiter(key: str, config: RateLimitConfig, shared_dir: Path | None) -> RateLimiter:
    """The one limiter of `key` in this process (created on first use from `config`); with
    `shared_dir`, its budget is shared with every process that uses the same key and folder."""
    registry_key = (os.getpid(), key)
    limiter = _REGISTRY.get(registry_key)
    if limiter is not None:
        return limiter
    with _REGISTRY_LOCK:
        limiter = _REGISTRY.get(registry_key)
        if limiter is None:
            limiter = RateLimiter(
                config.requests_per_second,
                config.burst,
                config.max_concurrency,
                shared_path=None if shared_dir is None else shared_file(shared_dir, key),
                max_pause_seconds=config.max_pause_seconds,
            )
            _REGISTRY[registry_key] = limiter
        return limiter


def clear_limiters() -> None:
    """Forget every limiter of this process (tests)."""
    with _REGISTRY_LOCK:
        _REGISTRY.clear()
