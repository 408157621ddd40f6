"""The retry policy: which failures are tried again, how long to wait, when to give up.

Built from tenacity's pieces and written the same way, as tiny composable strategies:

    retry:  retry_if_status({429, 500, 502, 503, 504}) | retry_if_transient_error()
            | retry_body_once()                     (a usable-looking 200 with a bad body)
    wait:   wait_clamped(wait_server_hint(wait_full_jitter(base, cap)), floor, cap)
    stop:   stop_after_attempt(max_attempts)

`RetryPolicy.call(send)` runs `send` under those rules and returns `(response, attempts)`. A
non-retryable answer (a 404, a 401) is returned as it is, for the caller to explain; exhausted
attempts raise `RetriesExhausted` (a `FetchError`) with the status and the redacted URL.
"""

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from tenacity import RetryCallState, RetryError, Retrying, stop_after_attempt
from tenacity.retry import retry_base, retry_if_exception
from tenacity.wait import wait_base

from api_assets.errors import ConnectionSetupError, FetchError, ResponseTooSlow
from api_assets.http.connection import disconnect_hint, refusal
from api_assets.http.headers import header, parse_rate_limit, parse_retry_after, reset_header
from api_assets.http.ratelimit import wait_too_long
from api_assets.http.redact import Redactor

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})

# Transport failures worth another try: timeouts (and a response past its deadline),
# refused/reset connections, a connection the server dropped mid-response. Not
# UnsupportedProtocol or LocalProtocolError (our own mistakes), nor a `connection.refusal` (a
# certificate not verified, a client certificate refused, a 407).
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    httpx.TimeoutException,
    ResponseTooSlow,
    httpx.NetworkError,
    httpx.RemoteProtocolError,
    httpx.ProxyError,
)

# Transport failures that prove the request never reached the server: no connection was made,
# so nothing was sent. What a request that spends something (a rotating refresh token) may retry.
UNSENT_ERRORS: tuple[type[Exception], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
)


class RetryableBody(FetchError):
    """Raised by the caller's `send` for a 200 whose body cannot be used as it is: not JSON, an
    error object, or without the records path. Retried at most once per call."""


class RetriesExhausted(FetchError):
    """Every attempt failed with a retryable status or error."""

    def __init__(
        self, message: str, *, status: int | None = None, url: str | None = None, attempts: int = 0
    ):
        super().__init__(message, status=status, url=url)
        self.attempts = attempts


@dataclass(frozen=True)
class RetryEvent:
    """One retry about to happen: attempt `attempt` failed and the next starts after `wait` s."""

    attempt: int
    wait: float
    status: int | None = None
    exception: BaseException | None = None
    url: str | None = None  # redacted

    @property
    def throttled(self) -> bool:
        return self.status == 429


def _response_of(retry_state: RetryCallState) -> httpx.Response | None:
    outcome = retry_state.outcome
    if outcome is None:
        return None
    if outcome.failed:
        response = getattr(outcome.exception(), "response", None)
        return response if isinstance(response, httpx.Response) else None
    result = outcome.result()
    return result if isinstance(result, httpx.Response) else None


# --- retry: what is retried ----------------------------------------------------------------


class retry_if_status(retry_base):
    """Retry a response whose status is in `statuses`."""

    def __init__(self, statuses: frozenset[int] = RETRY_STATUSES):
        self.statuses = statuses

    def __call__(self, retry_state: RetryCallState) -> bool:
        outcome = retry_state.outcome
        if outcome is None or outcome.failed:
            return False
        result = outcome.result()
        return isinstance(result, httpx.Response) and result.status_code in self.statuses


def retry_if_transient_error(
    errors: tuple[type[Exception], ...] = TRANSIENT_ERRORS,
) -> retry_base:
    """Retry timeouts, connection errors and dropped connections (`errors`), but not a refusal
    by TLS or the proxy: the same certificate is refused again."""
    return retry_if_exception(lambda exc: isinstance(exc, errors) and not refusal(exc))


class retry_body_once(retry_base):
    """Retry a `RetryableBody` once: a second one in the same call is what the API answers."""

    def __init__(self) -> None:
        self.seen = 0

    def __call__(self, retry_state: RetryCallState) -> bool:
        outcome = retry_state.outcome
        if outcome is None or not outcome.failed:
            return False
        if not isinstance(outcome.exception(), RetryableBody):
            return False
        self.seen += 1
        return self.seen <= 1


# --- wait: how long --------------------------------------------------------------------------


class wait_full_jitter(wait_base):
    """Exponential backoff with full jitter: uniform(0, min(cap, base·2^n)), n = retries so far."""

    def __init__(self, base: float, cap: float, rng: random.Random | None = None):
        self.base = base
        self.cap = cap
        self.rng = rng or random.Random()

    def __call__(self, retry_state: RetryCallState) -> float:
        n = min(retry_state.attempt_number - 1, 60)  # 2**60 · base is past any cap
        return self.rng.uniform(0.0, min(self.cap, self.base * 2.0**n))


class wait_server_hint(wait_base):
    """What the server asked for (`Retry-After`, seconds or HTTP-date; on a 429 without it, the
    rate-limit reset), else `fallback`. A hint over `max_seconds` is not waited for: it raises
    `ServerWaitTooLong` naming the header (`rate_limit.max_pause_seconds`)."""

    def __init__(
        self,
        fallback: wait_base,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        max_seconds: float | None = None,
    ):
        self.fallback = fallback
        self.now = now
        self.max_seconds = max_seconds

    def __call__(self, retry_state: RetryCallState) -> float:
        response = _response_of(retry_state)
        hint = self.hint(response)
        if hint is None:
            return self.fallback(retry_state)
        if self.max_seconds is not None and hint > self.max_seconds and response is not None:
            retry_after = header(response.headers, "retry-after")
            asked_by = (
                f"Retry-After: {retry_after.strip()[:40]}"
                if retry_after is not None
                and parse_retry_after(retry_after, self.now()) is not None
                else reset_header(response.headers)
            )
            error = wait_too_long(hint, asked_by, self.max_seconds)
            error.status = response.status_code
            raise error
        return hint

    def hint(self, response: httpx.Response | None) -> float | None:
        if response is None:
            return None
        value = header(response.headers, "retry-after")
        if value is not None:
            seconds = parse_retry_after(value, self.now())
            if seconds is not None:
                return seconds
        if response.status_code == 429:
            state = parse_rate_limit(response.headers, self.now().timestamp())
            if state is not None and state.reset_after_seconds is not None:
                return state.reset_after_seconds
        return None


class wait_clamped(wait_base):
    """`inner`, but at least `floor` (a `Retry-After: 0` must not storm) and at most `cap`."""

    def __init__(self, inner: wait_base, floor: float, cap: float):
        self.inner = inner
        self.floor = floor
        self.cap = cap

    def __call__(self, retry_state: RetryCallState) -> float:
        return min(self.cap, max(self.floor, self.inner(retry_state)))


# --- the policy --------------------------------------------------------------------------


class RetryPolicy:
    """Retries 429, 500, 502, 503, 504, transport errors and (once) `RetryableBody`, with
    full-jitter exponential backoff that yields to the server's `Retry-After`. `retry_statuses`
    and `retry_errors` narrow that (a request that must not reach the server twice: 429 and
    `UNSENT_ERRORS` only). With `max_pause_seconds`, a wait the server asks for past it is not
    waited for: `ServerWaitTooLong` (not retried) names the header and the wait.

    `on_retry(event: RetryEvent)` is called before each wait (count retries and 429s there).
    Thread-safe: every `call` builds its own tenacity controller.
    """

    def __init__(
        self,
        max_attempts: int,
        max_backoff_seconds: float,
        *,
        base_seconds: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
        on_retry: Callable[[RetryEvent], Any] | None = None,
        min_wait_seconds: float = 0.05,
        retry_statuses: frozenset[int] = RETRY_STATUSES,
        retry_errors: tuple[type[Exception], ...] = TRANSIENT_ERRORS,
        redactor: Redactor | None = None,
        rng: random.Random | None = None,
        max_pause_seconds: float | None = None,
    ):
        self.max_attempts = max(1, int(max_attempts))
        self.max_backoff_seconds = float(max_backoff_seconds)
        self.on_retry = on_retry
        self._sleep = sleep
        self._redactor = redactor or Redactor()
        self.stop = stop_after_attempt(self.max_attempts)
        self.wait = wait_clamped(
            wait_server_hint(
                wait_full_jitter(base_seconds, self.max_backoff_seconds, rng),
                max_seconds=max_pause_seconds,
            ),
            floor=min_wait_seconds,
            cap=self.max_backoff_seconds,
        )
        self.retry: retry_base = retry_if_status(retry_statuses) | retry_if_transient_error(
            retry_errors
        )

    def __repr__(self) -> str:
        return f"RetryPolicy(max_attempts={self.max_attempts}, max_backoff={self.max_backoff_seconds}s)"

    def call(self, send: Callable[[], httpx.Response]) -> tuple[httpx.Response, int]:
        """Send until a non-retryable answer; return it and the number of attempts."""
        attempts = 0

        def attempt() -> httpx.Response:
            nonlocal attempts
            attempts += 1
            return send()

        retrying = Retrying(
            stop=self.stop,
            wait=self.wait,
            retry=self.retry | retry_body_once(),
            sleep=self._sleep,
            before_sleep=self._before_sleep,
            reraise=False,
        )
        try:
            response = retrying(attempt)
        except RetryError as exc:
            raise self._exhausted(exc, attempts) from None
        except httpx.TransportError as exc:
            reason = refusal(exc)
            if reason is None:
                raise
            url = self._url(None, exc)
            raise ConnectionSetupError(
                self._redactor.text(reason) + (f" ({url})" if url else ""), url=url
            ) from None
        except RetryableBody as exc:
            if attempts < 2:
                raise
            raise RetryableBody(
                f"{exc} (the same after a retry)", status=exc.status, url=exc.url
            ) from None
        return response, attempts

    def _url(self, response: httpx.Response | None, exc: BaseException | None) -> str | None:
        try:
            if response is not None:
                request = response.request
            elif isinstance(exc, httpx.RequestError):
                request = exc.request
            else:
                return None
        except RuntimeError:  # built without a request (tests, hand-made responses)
            return None
        return self._redactor.url(str(request.url))

    def _before_sleep(self, retry_state: RetryCallState) -> None:
        outcome = retry_state.outcome
        assert outcome is not None
        response = None if outcome.failed else outcome.result()
        exc = outcome.exception() if outcome.failed else None
        if isinstance(response, httpx.Response):
            response.close()  # the connection goes back to the pool before we wait
        if self.on_retry is not None:
            self.on_retry(
                RetryEvent(
                    attempt=retry_state.attempt_number,
                    wait=retry_state.upcoming_sleep,
                    status=response.status_code if isinstance(response, httpx.Response) else None,
                    exception=exc,
                    url=self._url(response if isinstance(response, httpx.Response) else None, exc),
                )
            )

    def _exhausted(self, error: RetryError, attempts: int) -> RetriesExhausted:
        last = error.last_attempt
        if last.failed:
            exc = last.exception()
            url = self._url(None, exc)
            what = self._redactor.text(f"{type(exc).__name__}: {exc}")
            hint = disconnect_hint(exc) if exc is not None else None
            return RetriesExhausted(
                f"gave up after {attempts} attempts: {what}"
                + (f" ({url})" if url else "")
                + (f"; {hint}" if hint else ""),
                url=url,
                attempts=attempts,
            )
        response: httpx.Response = last.result()
        url = self._url(response, None)
        try:
            excerpt = self._redactor.text(response.text[:200])
        except (httpx.ResponseNotRead, httpx.StreamError, UnicodeDecodeError):
            excerpt = ""
        return RetriesExhausted(
            f"gave up after {attempts} attempts: HTTP {response.status_code} from {url}"
            + (f": {excerpt!r}" if excerpt else ""),
            status=response.status_code,
            url=url,
            attempts=attempts,
        )
