"""The bundled demo API: a seeded shop REST API that the demo, the tests and the benchmarks use.

    from api_assets.demo_api import DemoConfig, DemoServer, DEMO_CREDENTIALS

    with DemoServer(DemoConfig(seed=42, orders=1000)) as server:
        server.url                                  # http://127.0.0.1:PORT
        server.truth("orders")                      # ground truth, as GET /admin/truth/orders

Modules: `data` (the seeded records and their indexes), `app` (the routes), `auth` (credentials
and the OAuth token endpoint), `ratelimit` (token buckets), `faults` (fault profiles and their
options), `server` (the uvicorn runner, `DemoServer` and the CLI), `webhook_sender` (signed
webhook deliveries).
"""

from dataclasses import dataclass
from typing import Any

from api_assets.demo_api.auth import DEMO_CREDENTIALS

SMALL_SIZES = {"products": 500, "customers": 200, "orders": 1000, "events": 1500}


@dataclass
class DemoConfig:
    """How one demo server is seeded and how it behaves. Every field has a default.

    `now` anchors the clock (ISO-8601 or epoch seconds; default: the wall clock at start,
    floored to the minute): seeded timestamps lie at or before it and events fill the
    `event_days` UTC days up to it. Same `seed` and same `now` ⇒ same bytes.
    `faults` is a profile name, `NAME:key=value,...`, a dict `{"profile": ..., "path": ...,
    options...}` or a list of those, in force from the start (see `faults.py`).
    `rate_limit_rps` > 0 turns on per-credential token buckets of `rate_limit_burst` (default:
    the rate, at least 1). `retry_after_format` is `seconds` or `http_date`.
    `compression` answers in the coding the client accepts (gzip first; br, zstd, deflate when
    asked) for bodies of at least `compress_min_bytes`, as production APIs do.
    """

    seed: int = 42
    products: int = 5000
    customers: int = 2000
    orders: int = 20000
    events: int = 24000
    event_days: int = 7
    token_lifetime: float = 3600.0
    rate_limit_rps: float = 0.0
    rate_limit_burst: float | None = None
    retry_after_format: str = "seconds"
    latency_ms: float = 0.0
    faults: Any = None
    now: str | None = None
    request_log_size: int = 1_000_000
    compression: bool = True  # answer in the coding the client accepts, as real APIs do
    compress_min_bytes: int = 500  # bodies smaller than this go uncompressed

    @classmethod
    def small(cls, **overrides: Any) -> "DemoConfig":
        """The sizes the test suite uses (500 products, 200 customers, 1000 orders, 1500
        events): big enough for many pages, small enough to start in tens of milliseconds."""
        return cls(**{**SMALL_SIZES, **overrides})

    def __post_init__(self) -> None:
        if self.retry_after_format not in ("seconds", "http_date"):
            raise ValueError("retry_after_format is `seconds` or `http_date`")
        for name in ("products", "customers", "orders", "events"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        if self.event_days < 1:
            raise ValueError("event_days must be >= 1")
        if self.token_lifetime <= 0:
            raise ValueError("token_lifetime must be > 0")


from api_assets.demo_api.server import DemoServer  # noqa: E402  (needs DemoConfig)

__all__ = ["DEMO_CREDENTIALS", "SMALL_SIZES", "DemoConfig", "DemoServer"]
