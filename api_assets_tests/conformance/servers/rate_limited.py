"""A FastAPI app behind slowapi, a real rate limiter: over `--limit` (e.g. `10/second`, fixed
window, per client address) it answers 429. Like many APIs it announces no budget on the answers
that pass (no `X-RateLimit-*`), so a client cannot slow down before it is refused: the 429 carries
`Retry-After`, the seconds until slowapi's window resets. Pages come from fastapi-pagination
(`Page`: `page`/`size`, `total` and `pages` in the body).

`/_stats` (not limited) counts the requests served and refused (429); `/_truth` returns every
record.

Run: `python -m api_assets_tests.conformance.servers.rate_limited --port N --limit 10/second`.
"""

import argparse
import math
import threading
import time
from typing import Any

import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi_pagination import Page, add_pagination, paginate
from fastapi_pagination.utils import disable_installed_extensions_check
from slowapi import Limiter
from slowapi.errors import RateLimitExceeded
from slowapi.extension import _rate_limit_exceeded_handler
from slowapi.util import get_remote_address

from api_assets_tests.conformance.servers.seed import make_records


def create_app(count: int, limit: str) -> FastAPI:
    disable_installed_extensions_check()  # a plain list here, not SQLAlchemy
    records = make_records(count, seed=11)
    limiter = Limiter(key_func=get_remote_address)
    app = FastAPI()
    app.state.limiter = limiter
    lock = threading.Lock()
    stats = {"throttled": 0, "served": 0}

    def on_rate_limited(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RateLimitExceeded)
        with lock:
            stats["throttled"] += 1
        response = _rate_limit_exceeded_handler(request, exc)
        # slowapi's own window: (reset epoch, remaining) for the limit this request broke
        item, identifiers = request.state.view_rate_limit
        reset_epoch, _ = limiter.limiter.get_window_stats(item, *identifiers)
        response.headers["Retry-After"] = str(max(1, math.ceil(reset_epoch - time.time())))
        return response

    app.add_exception_handler(RateLimitExceeded, on_rate_limited)

    @app.get("/_stats")
    def get_stats() -> dict[str, int]:
        with lock:
            return dict(stats)

    @app.get("/_truth")
    def truth() -> list[dict[str, Any]]:
        return records

    @app.get("/readings")
    @limiter.limit(limit)
    def readings(request: Request) -> Page[Any]:
        with lock:
            stats["served"] += 1
        return paginate(records)

    add_pagination(app)
    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--limit", default="10/second")
    args = parser.parse_args()
    app = create_app(args.count, args.limit)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
