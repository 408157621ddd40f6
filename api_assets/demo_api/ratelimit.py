"""Server-side rate limits of the demo API: one token bucket per credential label.

A bucket holds up to `burst` tokens and refills at `rate` tokens per second; each accepted request
takes one. `take(key)` answers with everything the response headers need:

- `X-RateLimit-Limit` / `RateLimit-Limit`: the burst;
- `X-RateLimit-Remaining` / `RateLimit-Remaining`: whole tokens left after this request;
- `X-RateLimit-Reset`: epoch seconds (int, rounded up) when the bucket is full again;
  `RateLimit-Reset`: the same as a delta in seconds;
- on refusal, `Retry-After`: seconds (rounded up, at least 1) until one token is back, or that
  moment as an HTTP date.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from email.utils import formatdate


@dataclass
class Verdict:
    allowed: bool
    headers: dict[str, str]


class TokenBuckets:
    """Token buckets keyed by credential label. `rate <= 0` turns limiting off."""

    def __init__(
        self, rate: float, burst: float | None = None, retry_after_format: str = "seconds"
    ):
        self.rate = rate
        self.burst = float(burst if burst is not None else max(1.0, rate))
        self.retry_after_format = retry_after_format
        self.buckets: dict[str, tuple[float, float]] = {}  # key → (tokens, at monotonic time)

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def reset(self) -> None:
        self.buckets.clear()

    def take(self, key: str) -> Verdict:
        now = time.monotonic()
        tokens, at = self.buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        self.buckets[key] = (tokens, now)
        to_full = (self.burst - tokens) / self.rate
        wall = time.time()
        limit = str(int(self.burst))
        remaining = str(int(tokens))
        reset_delta = str(math.ceil(to_full))
        headers = {
            "X-RateLimit-Limit": limit,
            "X-RateLimit-Remaining": remaining,
            "X-RateLimit-Reset": str(math.ceil(wall + to_full)),
            "RateLimit-Limit": limit,
            "RateLimit-Remaining": remaining,
            "RateLimit-Reset": reset_delta,
            "RateLimit-Policy": f"{limit};w={max(1, math.ceil(self.burst / self.rate))}",
        }
        if not allowed:
            headers["Retry-After"] = retry_after_value(
                (1.0 - tokens) / self.rate, self.retry_after_format
            )
        return Verdict(allowed, headers)


def retry_after_value(delay: float, fmt: str) -> str:
    """`Retry-After` for a wait of `delay` seconds: whole seconds (at least 1), or an HTTP date
    no earlier than the moment the wait ends."""
    if fmt == "http_date":
        return formatdate(math.ceil(time.time() + max(delay, 0.0)), usegmt=True)
    return str(max(1, math.ceil(delay)))
