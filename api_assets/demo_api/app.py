"""The demo API's routes: a Starlette app over one `Shop`, with auth, rate limits and faults.

Every `/v1` route (but `/v1/health`) goes through `DemoApp._v1`, which in this order: waits
`latency_ms`, identifies the credential (401 without one), takes a rate-limit token (429 when the
bucket is empty), lets the faults in force decide, runs the route's handler, renders the page
(applying page faults), applies body faults, logs the request and answers. A handler is a plain
function of a `Call` that returns a `Reply`; a page reply names its records by id, and the
bytes come from the collection's ready-made serializations.

The pagination styles, one route each, all sorted by id unless said otherwise:

| route | style | next-page signal |
| --- | --- | --- |
| `/v1/products?offset&limit&status` | offset | `total` in the body |
| `/v1/customers?offset&limit` | offset | `X-Total-Count` header |
| `/v1/customers/pages?page&per_page` | page number (from 1) | `total_pages`, `total` in body |
| `/v1/orders?cursor&limit&updated_since` | cursor, by (updated_at, id) | `next_cursor` in body |
| `/v1/orders/stream?cursor&limit&updated_since` | cursor, bare list | `X-Next-Cursor` header |
| `/v1/products/feed?after&limit` | next URL | `next` (absolute URL) in body |
| `/v1/events?since&until&page&per_page` | RFC 8288 Link | `Link: <…>; rel="next"` |
| `/v1/customers/keyset?since_id&limit` | keyset | a page shorter than `limit` |
| `/v1/categories` | single page | — |
| `/v1/orders/{id}/lines`, `/v1/customers/{id}/addresses` | child, single page | — |
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import math
import time
from bisect import bisect_right
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from api_assets.demo_api.auth import DemoAuth, TokenError
from api_assets.demo_api.compression import bomb, choose, compress
from api_assets.demo_api.data import CHILD_COLLECTIONS, COLLECTIONS, Collection, Shop, parse_time
from api_assets.demo_api.faults import (
    SCHEMA_FIELDS,
    Effects,
    FaultError,
    FaultSet,
    change_record,
    make_fault,
    parse_fault_spec,
)
from api_assets.demo_api.ratelimit import TokenBuckets

if TYPE_CHECKING:
    from api_assets.demo_api import DemoConfig

JSON = "application/json"
MAX_LIMIT = 1000
SECRET_PARAMS = frozenset({"api_key"})


class DropConnection(Exception):
    """Raised after a partial response to make uvicorn close the connection (the `drop` fault)."""


class _QuietDrops(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, DropConnection)


logging.getLogger("uvicorn.error").addFilter(_QuietDrops())


class BadParam(Exception):
    """A malformed request parameter: answered 400 `{"error": {"param", "message"}}`."""

    def __init__(self, param: str, message: str):
        self.param, self.message = param, message
        super().__init__(message)


def json_error(status: int, message: str, **extra: Any) -> bytes:
    return orjson.dumps({"error": {"message": message, "status": status, **extra}})


# --- parameters ------------------------------------------------------------------------------


def int_param(q: Any, name: str, default: int, lo: int, hi: int | None = None) -> int:
    raw = q.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadParam(name, f"`{name}` must be an integer, got {raw!r}") from None
    if value < lo or (hi is not None and value > hi):
        bounds = f"between {lo} and {hi}" if hi is not None else f">= {lo}"
        raise BadParam(name, f"`{name}` must be {bounds}, got {value}")
    return value


def time_param(q: Any, name: str) -> float | None:
    raw = q.get(name)
    if raw is None or raw == "":
        return None
    try:
        return parse_time(raw)
    except (ValueError, OverflowError):
        raise BadParam(
            name, f"`{name}` must be an ISO-8601 timestamp or epoch seconds, got {raw!r}"
        ) from None


def encode_cursor(ts: int, oid: int) -> str:
    return base64.urlsafe_b64encode(f"o1:{ts}:{oid}".encode()).rstrip(b"=").decode()


def decode_cursor(raw: str) -> tuple[int, int]:
    try:
        text = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
        tag, ts, oid = text.split(":")
        if tag != "o1":
            raise ValueError(tag)
        return int(ts), int(oid)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise BadParam("cursor", f"`cursor` is not a cursor this API issued: {raw!r}") from None


# --- handler plumbing ------------------------------------------------------------------------


@dataclass
class Call:
    """One /v1 request as a handler sees it."""

    request: Request
    q: Any  # the query params
    fx: Effects

    def url_with(self, **params: Any) -> str:
        """This request's absolute URL with some params replaced (None drops one); the API key
        never goes into a URL the server hands out."""
        merged = {k: v for k, v in self.q.items() if k not in SECRET_PARAMS}
        for k, v in params.items():
            if v is None:
                merged.pop(k, None)
            else:
                merged[k] = str(v)
        url = self.request.url
        return f"{url.scheme}://{url.netloc}{url.path}" + (
            f"?{urlencode(merged)}" if merged else ""
        )


@dataclass
class Reply:
    """A handler's answer: a ready body, or a page of records of `coll` named by `ids` plus
    `wrap`, which puts the rendered `[...]` list into the envelope."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    coll: Collection | None = None
    ids: list[Any] | None = None
    wrap: Callable[[bytes], bytes] | None = None


def bare(data: bytes) -> bytes:
    return data


class DemoApp:
    """The ASGI app of one demo server and all of its state."""

    def __init__(self, config: DemoConfig):
        self.config = self.start_config = config
        self.start_faults = fault_specs(config.faults)  # validated before the data is made
        self.shop = Shop(config)
        self.dirty = False  # data changed since it was generated
        self.auth = DemoAuth(config.token_lifetime)
        self.limits = TokenBuckets(
            config.rate_limit_rps, config.rate_limit_burst, config.retry_after_format
        )
        self.faults = FaultSet(config.retry_after_format)
        self._set_start_faults()
        self.log: deque[tuple[Any, ...]] = deque(maxlen=config.request_log_size)
        # bumped by a reset or a clear of the log: a request that arrived before it (say, one
        # still sleeping in a `slow` fault) is not logged into the next test's log
        self.log_epoch = 0
        self.last_page: dict[str, list[Any]] = {}  # path → ids of the last page served
        self.latency = config.latency_ms / 1000.0
        v1 = self._v1
        routes = [
            Route("/v1/health", self.health),
            Route("/v1/products", v1(self.products)),
            Route("/v1/products/feed", v1(self.products_feed)),
            Route("/v1/customers", v1(self.customers)),
            Route("/v1/customers/pages", v1(self.customers_pages)),
            Route("/v1/customers/keyset", v1(self.customers_keyset)),
            Route("/v1/customers/{customer_id}/addresses", v1(self.addresses)),
            Route("/v1/orders", v1(self.orders)),
            Route("/v1/orders/stream", v1(self.orders_stream)),
            Route("/v1/orders/{order_id}/lines", v1(self.order_lines)),
            Route("/v1/events", v1(self.events)),
            Route("/v1/categories", v1(self.categories)),
            Route("/oauth/token", self.token, methods=["POST"]),
            Route("/admin/truth/{collection}", self.admin_truth),
            Route("/admin/requests", self.admin_requests, methods=["GET", "DELETE"]),
            Route("/admin/faults", self.admin_faults, methods=["GET", "POST", "DELETE"]),
            Route("/admin/mutate", self.admin_mutate, methods=["POST"]),
            Route("/admin/reset", self.admin_reset, methods=["POST"]),
            Route("/admin/consent", self.admin_consent, methods=["POST"]),
            Route("/admin/revoke", self.admin_revoke, methods=["POST"]),
            Route("/admin/config", self.admin_config),
            Route("/admin/webhooks/send", self.admin_webhooks_send, methods=["POST"]),
        ]
        self.starlette = Starlette(
            routes=routes,
            exception_handlers={
                404: self._not_found,
                405: self._not_allowed,
                orjson.JSONDecodeError: self._bad_json,
            },
        )

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.starlette(scope, receive, send)

    def _set_start_faults(self) -> None:
        """The faults of `DemoConfig.faults`, fresh (their counters at zero)."""
        self.faults.clear()
        for fault in self.start_faults:
            self.faults.set(replace(fault, seen=0, fired=0, set_at=time.monotonic()), add=True)

    async def _not_found(self, request: Request, exc: Exception) -> Response:
        return Response(json_error(404, f"no route {request.scope['path']}"), 404, media_type=JSON)

    async def _bad_json(self, request: Request, exc: Exception) -> Response:
        return Response(
            json_error(400, f"the request body is not JSON: {exc}"), 400, media_type=JSON
        )

    async def _not_allowed(self, request: Request, exc: Exception) -> Response:
        return Response(
            json_error(405, f"{request.method} not allowed on {request.scope['path']}"),
            405,
            media_type=JSON,
        )

    # --- the /v1 pipeline -----------------------------------------------------------------

    def _v1(self, handler: Callable[[Call], Reply]) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            started = time.time()
            request.state.log_epoch = self.log_epoch
            q = request.query_params
            h = request.headers
            if self.latency:
                await asyncio.sleep(self.latency)
            label = self.auth.identify(
                h.get("authorization"), h.get("x-api-key") or q.get("api_key")
            )
            if label is None:
                body = orjson.dumps(
                    {
                        "error": "invalid_token",
                        "error_description": "a valid API key, token or Basic credential is required",
                    }
                )
                return self._finish(
                    request,
                    started,
                    401,
                    body,
                    {"WWW-Authenticate": 'Bearer error="invalid_token"'},
                    None,
                    "none",
                )
            headers: dict[str, str] = {}
            if self.limits.enabled:
                verdict = self.limits.take(label)
                headers = verdict.headers
                if not verdict.allowed:
                    return self._finish(
                        request,
                        started,
                        429,
                        json_error(429, "rate limit exceeded"),
                        headers,
                        None,
                        label,
                    )
            fx = self.faults.decide(request.scope["path"], q) if self.faults else _NO_EFFECTS
            if fx.slow:
                await asyncio.sleep(fx.slow)
            if fx.status is not None:
                if fx.retry_after is not None:
                    headers = {**headers, "Retry-After": fx.retry_after}
                return self._finish(
                    request,
                    started,
                    fx.status,
                    json_error(fx.status, "injected fault"),
                    headers,
                    fx,
                    label,
                )
            try:
                reply = handler(Call(request, q, fx))
            except BadParam as e:
                body = orjson.dumps({"error": {"param": e.param, "message": e.message}})
                return self._finish(request, started, 400, body, headers, fx, label)
            body = self._render(request.scope["path"], reply, fx) if reply.wrap else reply.body
            if reply.headers:
                headers = {**headers, **reply.headers}
            return self._finish(request, started, reply.status, body, headers, fx, label)

        return endpoint

    def _render(self, key: str, reply: Reply, fx: Effects) -> bytes:
        """The page body, with the page faults applied."""
        coll, ids, wrap = reply.coll, reply.ids, reply.wrap
        assert coll is not None and ids is not None and wrap is not None
        served = ids
        if fx is not _NO_EFFECTS:
            if fx.repeat_page:
                served = [i for i in self.last_page.get(key, ids) if i in coll.blobs]
            if fx.empty_page:
                served = []
            if fx.schema_change is not None:
                change, fieldpath, value = fx.schema_change
                fieldpath = fieldpath or (
                    "loyalty_tier" if change == "add" else SCHEMA_FIELDS[coll.name]
                )
                self.last_page[key] = ids
                return wrap(
                    orjson.dumps(
                        [change_record(coll.record(i), change, fieldpath, value) for i in served]
                    )
                )
        self.last_page[key] = ids
        return wrap(coll.page_bytes(served))

    def _finish(
        self,
        request: Request,
        started: float,
        status: int,
        body: bytes,
        headers: dict[str, str],
        fx: Effects | None,
        label: str,
    ) -> Response:
        fired: list[str] = fx.fired if fx is not None else []
        drop = None
        if fx is not None and fired:
            if fx.error_body is not None:
                status, body = (
                    fx.error_body[0],
                    orjson.dumps({"error": {"message": fx.error_body[1]}}),
                )
            if fx.keep is not None:
                body = body[: int(len(body) * fx.keep)]
            drop = fx.drop
        # a flat tuple of immutables: the cyclic GC stops tracking it, which keeps a log of
        # a million requests from slowing every collection; /admin/requests makes the dicts
        scope = request.scope
        if getattr(request.state, "log_epoch", self.log_epoch) == self.log_epoch:
            self.log.append(
                (
                    started,
                    scope["method"],
                    scope["path"],
                    scope["query_string"],
                    label,
                    status,
                    tuple(fired),
                    time.time() - started,
                )
            )
        body, headers = self._encode(request, body, headers, fx)
        if drop is not None:
            return _DroppedResponse(body, status, headers, media_type=JSON, mode=drop)
        return Response(body, status, headers, media_type=JSON)

    def _encode(
        self, request: Request, body: bytes, headers: dict[str, str], fx: Effects | None
    ) -> tuple[bytes, dict[str, str]]:
        """The body compressed in the coding the client accepts (see `compression.py`), or as
        the `wrong_encoding` fault garbles it."""
        if fx is not None and fx.bomb is not None:
            coding, size = fx.bomb
            return bomb(coding, size), {**headers, "Content-Encoding": coding}
        if fx is not None and fx.wrong_encoding is not None:
            coding, mode = fx.wrong_encoding
            if mode == "garbled":
                packed = bytearray(compress(body, coding))
                for i in range(len(packed) // 3, len(packed) * 2 // 3):
                    packed[i] ^= 0x5A
                body = bytes(packed)
            return body, {**headers, "Content-Encoding": coding, "Vary": "Accept-Encoding"}
        if not self.config.compression or len(body) < self.config.compress_min_bytes:
            return body, headers
        accepted = choose(request.headers.get("accept-encoding"))
        if accepted is None:
            return body, headers
        return compress(body, accepted), {
            **headers,
            "Content-Encoding": accepted,
            "Vary": "Accept-Encoding",
        }

    def _drift(self, name: str, before: list[Any], fx: Effects) -> None:
        """The offset_drift fault: delete records that sort before the client's offset and
        insert new ones, so the client's next offsets point past records it never saw."""
        assert fx.drift is not None
        inserts, deletes = fx.drift
        rng = self.shop.mutation_rng
        victims = rng.rng.sample(before, min(deletes, len(before)))
        self.shop.mutate(name, inserts=inserts, delete_ids=victims, update_ids=[])
        self.dirty = True

    # --- /v1 handlers ---------------------------------------------------------------------

    async def health(self, request: Request) -> Response:
        return Response(b'{"status":"ok"}', media_type=JSON)

    def products(self, c: Call) -> Reply:
        offset = int_param(c.q, "offset", 0, 0)
        limit = int_param(c.q, "limit", 100, 1, MAX_LIMIT)
        status = c.q.get("status")
        if status is not None and status not in ("active", "archived"):
            raise BadParam("status", f"`status` is `active` or `archived`, got {status!r}")
        if c.fx.drift:
            self._drift("products", self.shop.products_with_status(status)[:offset], c.fx)
        pool = self.shop.products_with_status(status)
        tail = b',"total":%d}' % (len(pool) + c.fx.total_delta)
        return Reply(
            coll=self.shop.products,
            ids=pool[offset : offset + limit],
            wrap=lambda data: b'{"data":' + data + tail,
        )

    def products_feed(self, c: Call) -> Reply:
        after = int_param(c.q, "after", 0, 0)
        limit = int_param(c.q, "limit", 100, 1, MAX_LIMIT)
        order = self.shop.products.order
        pos = bisect_right(order, after)
        ids = order[pos : pos + limit]
        nxt: str | None = None
        if c.fx.repeated_cursor:
            nxt = c.url_with(after=after, limit=limit)
        elif pos + limit < len(order):
            nxt = c.url_with(after=ids[-1], limit=limit)
        tail = b',"next":' + orjson.dumps(nxt) + b"}"
        return Reply(coll=self.shop.products, ids=ids, wrap=lambda data: b'{"data":' + data + tail)

    def customers(self, c: Call) -> Reply:
        offset = int_param(c.q, "offset", 0, 0)
        limit = int_param(c.q, "limit", 100, 1, MAX_LIMIT)
        if c.fx.drift:
            self._drift("customers", self.shop.customers.order[:offset], c.fx)
        order = self.shop.customers.order
        return Reply(
            coll=self.shop.customers,
            ids=order[offset : offset + limit],
            headers={"X-Total-Count": str(len(order) + c.fx.total_delta)},
            wrap=lambda data: b'{"data":' + data + b"}",
        )

    def customers_pages(self, c: Call) -> Reply:
        page = int_param(c.q, "page", 1, 1)
        per_page = int_param(c.q, "per_page", 30, 1, MAX_LIMIT)
        start = (page - 1) * per_page
        if c.fx.drift:
            self._drift("customers", self.shop.customers.order[:start], c.fx)
        order = self.shop.customers.order
        total = len(order) + c.fx.total_delta
        pages = math.ceil(total / per_page)
        tail = b',"page":%d,"total_pages":%d,"total":%d}' % (page, pages, total)
        return Reply(
            coll=self.shop.customers,
            ids=order[start : start + per_page],
            wrap=lambda data: b'{"results":' + data + tail,
        )

    def customers_keyset(self, c: Call) -> Reply:
        since_id = int_param(c.q, "since_id", 0, 0)
        limit = int_param(c.q, "limit", 100, 1, MAX_LIMIT)
        order = self.shop.customers.order
        pos = bisect_right(order, since_id)
        return Reply(coll=self.shop.customers, ids=order[pos : pos + limit], wrap=bare)

    def _orders_page(self, c: Call) -> tuple[list[int], str | None]:
        """Ids of one page of the (updated_at, id) stream, tombstones included, and the next
        cursor (None on the last page)."""
        limit = int_param(c.q, "limit", 100, 1, MAX_LIMIT)
        raw_cursor = c.q.get("cursor") or None
        since = time_param(c.q, "updated_since")
        stream = self.shop.stream
        if raw_cursor is not None:
            pos = bisect_right(stream, decode_cursor(raw_cursor))
        else:
            pos = self.shop.stream_start(None if c.fx.ignore_filter else since)
        chunk = stream[pos : pos + limit]
        nxt: str | None = None
        if c.fx.repeated_cursor and raw_cursor is not None:
            nxt = raw_cursor
        elif pos + limit < len(stream):
            nxt = encode_cursor(*chunk[-1])
        return [oid for _, oid in chunk], nxt

    def orders(self, c: Call) -> Reply:
        ids, nxt = self._orders_page(c)
        tail = b',"next_cursor":' + orjson.dumps(nxt) + b"}"
        return Reply(coll=self.shop.orders, ids=ids, wrap=lambda data: b'{"data":' + data + tail)

    def orders_stream(self, c: Call) -> Reply:
        ids, nxt = self._orders_page(c)
        headers = {"X-Next-Cursor": nxt} if nxt else {}
        return Reply(coll=self.shop.orders, ids=ids, wrap=bare, headers=headers)

    def events(self, c: Call) -> Reply:
        page = int_param(c.q, "page", 1, 1)
        per_page = int_param(c.q, "per_page", 30, 1, MAX_LIMIT)
        since = time_param(c.q, "since")
        until = time_param(c.q, "until")
        if c.fx.ignore_filter:
            since = until = None
        lo, hi = self.shop.events_window(since, until)
        last = max(1, math.ceil((hi - lo) / per_page))
        start = lo + (page - 1) * per_page
        ids = self.shop.events.order[start : min(hi, start + per_page)] if start < hi else []
        links = []
        if page < last:
            nxt = page if c.fx.repeated_cursor else page + 1
            links.append(f'<{c.url_with(page=nxt, per_page=per_page)}>; rel="next"')
            links.append(f'<{c.url_with(page=last, per_page=per_page)}>; rel="last"')
        if page > 1:
            links.append(f'<{c.url_with(page=1, per_page=per_page)}>; rel="first"')
            links.append(f'<{c.url_with(page=min(page - 1, last), per_page=per_page)}>; rel="prev"')
        headers = {"Link": ", ".join(links)} if links else {}
        return Reply(coll=self.shop.events, ids=ids, wrap=bare, headers=headers)

    def categories(self, c: Call) -> Reply:
        return Reply(body=self.shop.categories_bytes)

    def order_lines(self, c: Call) -> Reply:
        raw = c.request.path_params["order_id"]
        lines = self.shop.lines.get(int(raw)) if raw.isdigit() else None
        if lines is None:
            return Reply(404, json_error(404, f"order {raw} not found"))
        return Reply(body=orjson.dumps({"order_id": int(raw), "lines": lines}))

    def addresses(self, c: Call) -> Reply:
        raw = c.request.path_params["customer_id"]
        addresses = self.shop.addresses.get(int(raw)) if raw.isdigit() else None
        if addresses is None:
            return Reply(404, json_error(404, f"customer {raw} not found"))
        return Reply(body=orjson.dumps(addresses))

    # --- OAuth ----------------------------------------------------------------------------

    async def token(self, request: Request) -> Response:
        started = time.time()
        request.state.log_epoch = self.log_epoch
        # application/x-www-form-urlencoded, parsed here: Starlette's form() needs an extra package
        form = dict(
            parse_qsl((await request.body()).decode("utf-8", "replace"), keep_blank_values=True)
        )
        fx = (
            self.faults.decide(request.scope["path"], request.query_params)
            if self.faults
            else _NO_EFFECTS
        )
        if fx.slow:
            await asyncio.sleep(fx.slow)
        label = "none"
        if fx.status is not None:
            headers = {"Retry-After": fx.retry_after} if fx.retry_after else {}
            return self._finish(
                request,
                started,
                fx.status,
                json_error(fx.status, "injected fault"),
                headers,
                fx,
                label,
            )
        try:
            answer = self.auth.token(form, request.headers.get("authorization"))
        except TokenError as e:
            headers = {"WWW-Authenticate": 'Basic realm="demo"'} if e.status == 401 else {}
            return self._finish(
                request, started, e.status, orjson.dumps(e.body()), headers, fx, label
            )
        grant = self.auth.access[answer["access_token"]]
        body = orjson.dumps(answer)
        return self._finish(
            request,
            started,
            200,
            body,
            {"Cache-Control": "no-store", "Pragma": "no-cache"},
            fx,
            grant.label,
        )

    # --- admin ----------------------------------------------------------------------------

    async def admin_truth(self, request: Request) -> Response:
        name = request.path_params["collection"]
        try:
            truth = self.shop.truth(name, dict(request.query_params))
        except KeyError:
            known = ", ".join(COLLECTIONS + CHILD_COLLECTIONS)
            return _json(
                {"error": {"message": f"unknown collection {name!r}; known: {known}"}}, 404
            )
        except ValueError as e:
            return _json({"error": {"message": str(e)}}, 400)
        return _json(truth)

    async def admin_requests(self, request: Request) -> Response:
        if request.method == "DELETE":
            self.log.clear()
            self.log_epoch += 1
            return _json({"cleared": True})
        prefix = request.query_params.get("path")
        entries = [log_entry(e) for e in self.log if not prefix or e[2].startswith(prefix)]
        return _json(entries)

    async def admin_faults(self, request: Request) -> Response:
        if request.method == "DELETE":
            self.faults.clear()
            return _json({"faults": []})
        if request.method == "POST":
            spec = await _body(request)
            add = bool(spec.pop("add", False))
            try:
                fault = make_fault(str(spec.pop("profile", "")), spec.pop("path", None), **spec)
            except FaultError as e:
                return _json({"error": {"message": str(e)}}, 400)
            self.faults.set(fault, add=add)
        return _json({"faults": self.faults.describe()})

    async def admin_mutate(self, request: Request) -> Response:
        spec = await _body(request)
        name = spec.get("collection")
        if name not in COLLECTIONS:
            return _json({"error": {"message": f"collection is one of {list(COLLECTIONS)}"}}, 400)
        try:
            done = self.shop.mutate(
                name,
                int(spec.get("inserts", 0)),
                int(spec.get("updates", 0)),
                int(spec.get("deletes", 0)),
                update_ids=spec.get("update_ids"),
                delete_ids=spec.get("delete_ids"),
            )
        except (TypeError, ValueError) as e:
            return _json({"error": {"message": str(e)}}, 400)
        self.dirty = True
        return _json(done)

    async def admin_reset(self, request: Request) -> Response:
        """Back to the start: the data seeded with `seed` (default: the seed the server started
        with), the start faults, an empty request log, full rate-limit buckets, no tokens."""
        spec = await _body(request)
        seed = int(spec.get("seed", self.start_config.seed))
        if seed != self.config.seed:
            self.config = replace(self.config, seed=seed)
            self.dirty = True
        if self.dirty:
            self.shop = Shop(self.config, anchor=self.shop.anchor)
            self.dirty = False
        self._set_start_faults()
        self.log.clear()
        self.log_epoch += 1
        self.limits.reset()
        self.auth.reset()
        self.last_page.clear()
        return _json({"reset": True, "seed": self.config.seed})

    async def admin_consent(self, request: Request) -> Response:
        spec = await _body(request)
        try:
            token = self.auth.consent(
                str(spec.get("client_id", "")), str(spec.get("scope", "read"))
            )
        except TokenError as e:
            return _json(e.body(), e.status)
        return _json({"client_id": spec["client_id"], "refresh_token": token})

    async def admin_revoke(self, request: Request) -> Response:
        spec = await _body(request)
        self.auth.revoke(api_key=spec.get("api_key"), access_tokens=bool(spec.get("access_tokens")))
        return _json({"revoked": True})

    async def admin_config(self, request: Request) -> Response:
        return _json({**asdict(self.config), "anchor": self.shop.anchor})

    async def admin_webhooks_send(self, request: Request) -> Response:
        from api_assets.demo_api.webhook_sender import send_demo_webhooks

        spec = await _body(request)
        try:
            results = await send_demo_webhooks(self.shop, spec)
        except (KeyError, ValueError, TypeError) as e:
            return _json({"error": {"message": str(e)}}, 400)
        return _json({"results": results})


class _DroppedResponse(Response):
    """Headers (and, in mode `body`, half the body) sent, then the connection is closed."""

    def __init__(self, *args: Any, mode: str, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.mode = mode

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        if self.mode == "body":
            body = bytes(self.body)
            await send(
                {"type": "http.response.body", "body": body[: len(body) // 2], "more_body": True}
            )
        raise DropConnection()


_NO_EFFECTS = Effects()


def log_entry(row: tuple[Any, ...]) -> dict[str, Any]:
    """A request-log row as the dict `/admin/requests` shows; secret params are redacted."""
    ts, method, path, query, label, status, fired, elapsed = row
    params = {
        k: ("[redacted]" if k in SECRET_PARAMS else v)
        for k, v in parse_qsl(query.decode("latin-1"), keep_blank_values=True)
    }
    return {
        "ts": ts,
        "method": method,
        "path": path,
        "params": params,
        "credential": label,
        "status": status,
        "faults": list(fired),
        "duration_ms": round(elapsed * 1000, 3),
    }


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS), status, media_type=JSON)


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw:
        return {}
    data = orjson.loads(raw)
    return data if isinstance(data, dict) else {}


def fault_specs(faults: Any) -> list[Any]:
    """`DemoConfig.faults` → Faults: a name or `NAME:k=v,...` string, a dict with `profile`,
    or a list of those."""
    if not faults:
        return []
    if isinstance(faults, str | dict):
        faults = [faults]
    out = []
    for f in faults:
        if isinstance(f, str):
            out.append(parse_fault_spec(f))
        else:
            spec = dict(f)
            out.append(make_fault(spec.pop("profile"), spec.pop("path", None), **spec))
    return out
