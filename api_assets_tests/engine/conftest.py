"""Helpers for the end-to-end engine tests over real HTTP against the demo API
(`test_client_http.py`, `test_engine_http.py`, `test_faults_http.py`, `test_auth_http.py`,
`test_tls_proxy.py`).

- `ENDPOINTS`: one endpoint per pagination style of the demo API, as sources-file dicts.
- `make_source(url, *endpoints, ...)`: a validated `SourceConfig` on a demo server.
- `clients` fixture: `clients(source)` opens a `SourceClient` with this process's limiter and
  token caches cleared (they are process-wide registries: without this, one test's limiter,
  pause or token would leak into the next), closed when the test ends.
- `fetch(client, endpoint)`: every page of one series and its `FetchStats`.
- `v1_log(server)`: the demo server's request log without the admin routes.
- `Recorder`: a foreign origin on another port that records what it receives.

Only the tests that ask for these fixtures use them: the unit tests in this folder are left alone.
"""

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from api_assets.config.models import EndpointConfig, SourceConfig
from api_assets.demo_api import DEMO_CREDENTIALS, DemoServer
from api_assets.http.auth import clear_token_caches
from api_assets.http.client import SourceClient
from api_assets.http.ratelimit import clear_limiters
from api_assets.pages import FetchStats, Page
from api_assets.pagination import series

KEY_1, KEY_2, KEY_3 = DEMO_CREDENTIALS["api_keys"]

# One endpoint per pagination style of the demo API (see api_assets/demo_api/app.py).
ENDPOINTS: dict[str, dict[str, Any]] = {
    "products": {  # offset, total in the body
        "name": "products",
        "path": "/v1/products",
        "params": {"status": "active"},
        "records_path": "data",
        "primary_key": "id",
        "paginator": {"type": "offset", "limit": 50, "total_path": "total"},
    },
    "customers": {  # offset, total in a header
        "name": "customers",
        "path": "/v1/customers",
        "records_path": "data",
        "primary_key": "id",
        "paginator": {"type": "offset", "limit": 30, "total_header": "X-Total-Count"},
    },
    "customer_pages": {  # page number, total pages in the body
        "name": "customer_pages",
        "path": "/v1/customers/pages",
        "records_path": "results",
        "primary_key": "id",
        "paginator": {
            "type": "page_number",
            "page_param": "page",
            "size_param": "per_page",
            "size": 30,
            "start": 1,
            "total_pages_path": "total_pages",
        },
    },
    "orders": {  # cursor in the body
        "name": "orders",
        "path": "/v1/orders",
        "records_path": "data",
        "primary_key": "id",
        "paginator": {
            "type": "cursor",
            "cursor_path": "next_cursor",
            "cursor_param": "cursor",
            "limit_param": "limit",
            "limit": 100,
        },
    },
    "orders_stream": {  # cursor in a header, bare-list body
        "name": "orders_stream",
        "path": "/v1/orders/stream",
        "primary_key": "id",
        "paginator": {
            "type": "cursor",
            "cursor_header": "X-Next-Cursor",
            "cursor_param": "cursor",
            "limit_param": "limit",
            "limit": 150,
        },
    },
    "products_feed": {  # next URL in the body
        "name": "products_feed",
        "path": "/v1/products/feed",
        "records_path": "data",
        "primary_key": "id",
        "paginator": {"type": "next_url", "next_path": "next", "params": {"limit": 120}},
    },
    "events": {  # RFC 8288 Link header, bare-list body
        "name": "events",
        "path": "/v1/events",
        "primary_key": "id",
        "paginator": {"type": "link_header", "params": {"per_page": 200}},
    },
    "customers_keyset": {  # keyset on id, bare-list body
        "name": "customers_keyset",
        "path": "/v1/customers/keyset",
        "primary_key": "id",
        "paginator": {
            "type": "keyset",
            "param": "since_id",
            "field": "id",
            "limit_param": "limit",
            "limit": 70,
        },
    },
    "categories": {  # one page, bare list
        "name": "categories",
        "path": "/v1/categories",
        "primary_key": "id",
    },
}

API_KEY_HEADER = {"type": "api_key", "name": "X-API-Key", "value": KEY_1, "location": "header"}
API_KEY_QUERY = {"type": "api_key", "name": "api_key", "value": KEY_2, "location": "query"}

# Fast enough for tests, never the bottleneck unless a test says so.
FAST = {"requests_per_second": 2000, "burst": 200, "max_concurrency": 4}
# Retries that do not wait long (Retry-After is still honoured by the limiter's pause).
QUICK_RETRY = {"max_attempts": 4, "max_backoff_seconds": 0.2}


def endpoint(name: str, **changes: Any) -> dict[str, Any]:
    """A copy of `ENDPOINTS[name]` with top-level keys replaced (`paginator=` merges)."""
    out = {**ENDPOINTS[name]}
    if "paginator" in changes:
        out["paginator"] = {**out.get("paginator", {}), **changes.pop("paginator")}
    out.update(changes)
    return out


def make_source(
    url: str,
    *endpoints: dict[str, Any] | str,
    name: str = "shop",
    auth: dict[str, Any] | None = None,
    rate_limit: dict[str, Any] | None = None,
    retry: dict[str, Any] | None = None,
    timeout_seconds: float = 10.0,
    **extra: Any,
) -> SourceConfig:
    """A source on the demo server at `url` (endpoints by name or as dicts)."""
    eps = [ENDPOINTS[e] if isinstance(e, str) else e for e in endpoints]
    return SourceConfig.model_validate(
        {
            "name": name,
            "base_url": url,
            "auth": auth or API_KEY_HEADER,
            "rate_limit": rate_limit or FAST,
            "retry": retry or QUICK_RETRY,
            "timeout_seconds": timeout_seconds,
            "endpoints": eps,
            **extra,
        }
    )


def the_endpoint(source: SourceConfig, name: str | None = None) -> EndpointConfig:
    if name is None:
        return source.endpoints[0]
    return next(e for e in source.endpoints if e.name == name)


def fetch(client: SourceClient, ep: EndpointConfig, **kwargs: Any) -> tuple[list[Page], FetchStats]:
    stats = FetchStats()
    pages = list(series.fetch(client, ep, stats, **kwargs))
    return pages, stats


def ids_of(pages: list[Page], key: str = "id") -> list[Any]:
    return [r[key] for p in pages for r in p.records]


def truth_ids(server: DemoServer, collection: str, **params: Any) -> list[Any]:
    """The ids of the live records, sorted (ints, or strings such as `evt_00000001`)."""
    return sorted(server.truth(collection, **params)["ids"])


def v1_log(server: DemoServer, path: str | None = None) -> list[dict[str, Any]]:
    """The request log of the API routes (`/v1...`, `/oauth/token`), oldest first."""
    rows = server.requests()
    rows = [r for r in rows if r["path"].startswith(("/v1", "/oauth"))]
    if path is not None:
        rows = [r for r in rows if r["path"] == path]
    return rows


def statuses(rows: list[dict[str, Any]]) -> list[int]:
    return [int(r["status"]) for r in rows]


@pytest.fixture
def clients(tmp_path: Path) -> Iterator[Callable[..., SourceClient]]:
    """`clients(source, **kw)` → a SourceClient on fresh process-wide limiter/token state."""
    opened: list[SourceClient] = []
    clear_limiters()
    clear_token_caches()

    def make(source: SourceConfig, **kwargs: Any) -> SourceClient:
        kwargs.setdefault("credential_dir", tmp_path / "credentials")
        client = SourceClient(source, **kwargs)
        opened.append(client)
        return client

    yield make
    for client in opened:
        client.close()
    clear_limiters()
    clear_token_caches()


class Recorder:
    """A foreign origin: answers every GET with an empty last page and records the path, the
    headers (lower-case names) and the query of each request."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []

    def app(self) -> Starlette:
        async def any_path(request: Request) -> Response:
            self.seen.append(
                {
                    "path": request.url.path,
                    "headers": {k.lower(): v for k, v in request.headers.items()},
                    "query": dict(request.query_params),
                }
            )
            # an empty last page in both shapes the demo uses: a bare list for /v1/events,
            # `{"data": [], "next": null}` elsewhere
            body: Any = [] if request.url.path == "/v1/events" else {"data": [], "next": None}
            return Response(orjson.dumps(body), media_type="application/json")

        return Starlette(routes=[Route("/{path:path}", any_path)])
