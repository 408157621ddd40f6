"""What response headers say about time and budget: `Retry-After` (seconds or an HTTP date), the
rate-limit families (`X-RateLimit-*`, IETF `RateLimit-*`, the structured `RateLimit` header)
and a declared window (`RateLimit-Policy: 50;w=1`). Pure functions, read by the rate limiter,
the retry policy and the auth flows.
"""

import email.utils
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

# A reset value above this is an epoch timestamp, not a number of seconds (1e9 s ≈ 31 years).
EPOCH_THRESHOLD = 1e9
# ... and above this, an epoch in milliseconds.
EPOCH_MS_THRESHOLD = 1e12


# --- header parsers ------------------------------------------------------------------------


@dataclass(frozen=True)
class RateLimitState:
    """What a response said about the server's budget; any field may be unknown."""

    limit: int | None
    remaining: int | None
    reset_after_seconds: float | None


def parse_retry_after(value: str, now: datetime) -> float | None:
    """Seconds to wait from a `Retry-After` value: delta-seconds or an HTTP-date (relative to
    `now`, never negative). `0` is 0: callers apply their own minimum wait. None if unreadable."""
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def reset_to_seconds(value: float, now_epoch: float) -> float:
    """A reset value as seconds from now: epoch seconds (or ms) when it is that large, else a
    delta. Never negative."""
    if value > EPOCH_MS_THRESHOLD:
        value = value / 1000.0 - now_epoch
    elif value > EPOCH_THRESHOLD:
        value = value - now_epoch
    return max(0.0, value)


_NUMBER = re.compile(r"^\s*(-?\d+(?:\.\d+)?)")
_ITEM = re.compile(r"(?:^|[,;\s])([A-Za-z-]+)\s*=\s*\"?(-?\d+(?:\.\d+)?)")

# header families, most specific first: (limit, remaining, reset)
_FAMILIES = (
    ("ratelimit-limit", "ratelimit-remaining", "ratelimit-reset"),
    ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"),
    ("x-rate-limit-limit", "x-rate-limit-remaining", "x-rate-limit-reset"),
)


def _first_number(value: str | None) -> float | None:
    if value is None:
        return None
    match = _NUMBER.match(value)
    if match is None:
        return None
    number = float(match.group(1))
    return number if math.isfinite(number) else None


def _reset_seconds(value: str | None, now_epoch: float) -> float | None:
    number = _first_number(value)
    if number is not None:
        return reset_to_seconds(number, now_epoch)
    if value:  # some servers send an HTTP-date
        return parse_retry_after(value, datetime.fromtimestamp(now_epoch, UTC))
    return None


def _as_int(number: float | None) -> int | None:
    return None if number is None else max(0, int(number))


def parse_rate_limit(headers: Mapping[str, str], now_epoch: float) -> RateLimitState | None:
    """The budget a response announces, from the structured IETF `RateLimit` header
    (`limit=…, remaining=…, reset=…` or draft-08 `"policy";r=…;t=…` with `RateLimit-Policy`'s
    `q=`), or from the `RateLimit-*`, `X-RateLimit-*` and `X-Rate-Limit-*` families. A reset
    above 1e9 is an epoch timestamp (1e12: milliseconds), else seconds. None when absent."""
    lower = {k.lower(): v for k, v in headers.items()}
    structured = lower.get("ratelimit")
    if structured:
        items = {k.lower(): float(v) for k, v in _ITEM.findall(structured)}
        remaining = items.get("remaining", items.get("r"))
        reset = items.get("reset", items.get("t"))
        limit = items.get("limit")
        if limit is None and (policy := lower.get("ratelimit-policy")):
            limit = {k.lower(): float(v) for k, v in _ITEM.findall(policy)}.get("q")
        if remaining is not None or reset is not None or limit is not None:
            return RateLimitState(
                _as_int(limit),
                _as_int(remaining),
                None if reset is None else reset_to_seconds(reset, now_epoch),
            )
    for limit_h, remaining_h, reset_h in _FAMILIES:
        limit_v, remaining_v, reset_v = (
            lower.get(limit_h),
            lower.get(remaining_h),
            lower.get(reset_h),
        )
        if limit_v is None and remaining_v is None and reset_v is None:
            continue
        reset = _reset_seconds(reset_v, now_epoch)
        if reset is None:  # Discord-style X-RateLimit-Reset-After
            after = _first_number(lower.get(remaining_h[: -len("remaining")] + "reset-after"))
            reset = None if after is None else max(0.0, after)
        return RateLimitState(
            _as_int(_first_number(limit_v)), _as_int(_first_number(remaining_v)), reset
        )
    return None


_RESET_HEADERS = {
    "ratelimit": "RateLimit",
    "ratelimit-reset": "RateLimit-Reset",
    "x-ratelimit-reset": "X-RateLimit-Reset",
    "x-rate-limit-reset": "X-Rate-Limit-Reset",
    "x-ratelimit-reset-after": "X-RateLimit-Reset-After",
    "x-rate-limit-reset-after": "X-Rate-Limit-Reset-After",
}


def reset_header(headers: Mapping[str, str]) -> str:
    """The name of the header a reset came from, for a message (`X-RateLimit-Reset`)."""
    present = {k.lower() for k in headers}
    for name, shown in _RESET_HEADERS.items():
        if name in present:
            return shown
    return "the rate-limit reset"


_WINDOW = re.compile(r"(?:^|;)\s*w\s*=\s*\"?(\d+(?:\.\d+)?)", re.IGNORECASE)
_QUOTA = re.compile(r"(?:^|;)\s*q\s*=\s*\"?(\d+(?:\.\d+)?)", re.IGNORECASE)


def parse_refill_rate(headers: Mapping[str, str], limit: int | None = None) -> float | None:
    """Requests per second the server's declared policy gives back: quota / window, from
    `RateLimit-Policy` (`100;w=60`, draft-08 `"name";q=100;w=60`) or a `RateLimit-Limit` /
    `X-RateLimit-Limit` value with policies (`100, 100;w=60`); the quota defaults to `limit`.
    The lowest of several policies; None when no window is declared."""
    lower = {k.lower(): v for k, v in headers.items()}
    best: float | None = None
    for name in ("ratelimit-policy", "ratelimit-limit", "x-ratelimit-limit"):
        value = lower.get(name)
        if not value or "w" not in value.lower():
            continue
        for item in value.split(","):
            window_m = _WINDOW.search(item)
            if window_m is None:
                continue
            window = float(window_m.group(1))
            quota_m = _QUOTA.search(item)
            quota = float(quota_m.group(1)) if quota_m else _first_number(item)
            if quota is None:
                quota = None if limit is None else float(limit)
            if quota is None or not window > 0 or not math.isfinite(quota / window):
                continue
            rate = quota / window
            best = rate if best is None else min(best, rate)
        if best is not None:
            return best
    return best


# --- bucket state ----------------------------------------------------------------------------

# tat: theoretical arrival time of the next request; pause_until: no start before this;
# pace_interval/pace_until: the server's budget asks for at least this spacing until then.


def header(headers: Mapping[str, str], name: str) -> str | None:
    """A header value by case-insensitive name, from httpx.Headers or a plain dict."""
    value = headers.get(name)
    if value is None and not hasattr(headers, "get_list"):  # httpx.Headers is case-insensitive
        for key, v in headers.items():
            if key.lower() == name:
                return v
    return value
