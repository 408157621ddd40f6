"""The demo API's webhook sender: signed event deliveries, retried until a 2xx.

`send_events(url, scheme, secret, events)` POSTs each event (a dict, sent as its JSON) signed
with `api_assets.webhooks.signing.sign_headers` in one of the four schemes, and
retries a delivery that fails (a non-2xx answer or a transport error) up to `retries` more
times, re-signing it with a fresh timestamp each time. Each event needs an `id` (and, for the
event-type headers, a `type`); the body of a stripe- or standard-style event is the event itself.

For the `hmac` scheme, `options` are the `webhooks:` keys of the sources file; unset, they are
`signature_header: X-Signature`, `event_id_path: id`, `event_type_path: type`.

`POST /admin/webhooks/send {"url", "scheme", "secret", "count", ...}` makes `count` shop events
(`order.updated`, `customer.updated`, `product.updated`, Stripe-like: `{"id", "type", "created",
"data": {"object": record}}`) and sends them; `duplicates: k` sends the first k again (a
receiver must store them once), `tamper: true` spoils every signature (a receiver must answer
401), `options` passes the `hmac` keys above, `retries` and `backoff` work as below.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import httpx
import orjson

from api_assets.config.models import WebhooksConfig
from api_assets.webhooks.signing import sign_headers

if TYPE_CHECKING:
    from api_assets.demo_api.data import Shop

HMAC_DEFAULTS = {
    "signature_header": "X-Signature",
    "event_id_path": "id",
    "event_type_path": "type",
}


@dataclass
class DeliveryResult:
    """How the delivery of one event ended."""

    event_id: str
    ok: bool  # a 2xx answer came back
    status: int | None  # the last HTTP status (None: no answer at all)
    attempts: int
    error: str | None = None  # the last transport error, if any


def webhooks_config(
    scheme: str, secret: str, options: dict[str, Any] | None = None
) -> WebhooksConfig:
    """The `WebhooksConfig` the signer needs (and a receiver would verify with)."""
    opts = dict(options or {})
    if scheme == "hmac":
        if "event_id_header" not in opts:
            opts.setdefault("event_id_path", HMAC_DEFAULTS["event_id_path"])
        opts.setdefault("signature_header", HMAC_DEFAULTS["signature_header"])
        opts.setdefault("event_type_path", HMAC_DEFAULTS["event_type_path"])
    return WebhooksConfig.model_validate({"scheme": scheme, "secret": secret, **opts})


async def asend_events(
    url: str,
    scheme: str,
    secret: str,
    events: list[dict[str, Any]],
    *,
    retries: int = 3,
    backoff: float = 0.2,
    timeout: float = 10.0,
    options: dict[str, Any] | None = None,
    tamper: bool = False,
    client: httpx.AsyncClient | None = None,
) -> list[DeliveryResult]:
    """`send_events` for code that already runs an event loop."""
    config = webhooks_config(scheme, secret, options)
    own = client is None
    http = client or httpx.AsyncClient(timeout=timeout)
    try:
        return [
            await _deliver(http, url, config, event, retries, backoff, tamper) for event in events
        ]
    finally:
        if own:
            await http.aclose()


def send_events(
    url: str,
    scheme: str,
    secret: str,
    events: list[dict[str, Any]],
    *,
    retries: int = 3,
    backoff: float = 0.2,
    timeout: float = 10.0,
    options: dict[str, Any] | None = None,
    tamper: bool = False,
) -> list[DeliveryResult]:
    """POST each event to `url`, signed in `scheme` with `secret`; retry a failed delivery up to
    `retries` more times (waiting `backoff`, doubled each time). Returns one result per event."""
    return asyncio.run(
        asend_events(
            url,
            scheme,
            secret,
            events,
            retries=retries,
            backoff=backoff,
            timeout=timeout,
            options=options,
            tamper=tamper,
        )
    )


async def _deliver(
    http: httpx.AsyncClient,
    url: str,
    config: WebhooksConfig,
    event: dict[str, Any],
    retries: int,
    backoff: float,
    tamper: bool,
) -> DeliveryResult:
    event_id = str(event["id"])
    body = orjson.dumps(event)
    status: int | None = None
    error: str | None = None
    attempts = 0
    for attempt in range(max(0, retries) + 1):
        if attempt:
            await asyncio.sleep(backoff * 2 ** (attempt - 1))
        attempts += 1
        headers = sign_headers(
            config,
            body,
            event_id=event_id,
            timestamp=int(time.time()),
            event_type=event.get("type"),
        )
        if tamper:
            headers = {k: _spoil(k, v) for k, v in headers.items()}
        headers["Content-Type"] = "application/json"
        try:
            response = await http.post(url, content=body, headers=headers)
        except httpx.HTTPError as e:
            status, error = None, f"{type(e).__name__}: {e}"
            continue
        status, error = response.status_code, None
        if 200 <= status < 300:
            return DeliveryResult(event_id, True, status, attempts)
        if tamper:  # a refused forgery is the expected answer; retrying cannot change it
            break
    return DeliveryResult(event_id, False, status, attempts, error)


def _spoil(name: str, value: str) -> str:
    """A signature header with its last digit changed; other headers unchanged."""
    if "sign" not in name.lower():
        return value
    last = value[-1]
    return value[:-1] + ("0" if last != "0" else "1")


def shop_events(shop: Shop, count: int, rng: random.Random | None = None) -> list[dict[str, Any]]:
    """`count` Stripe-like events about shop records, each with a fresh unique id."""
    rng = rng or random.Random()
    kinds = [("order", shop.orders), ("customer", shop.customers), ("product", shop.products)]
    kinds = [(k, c) for k, c in kinds if c.order]
    now = int(time.time())
    events = []
    for _ in range(max(0, count)):
        kind, coll = rng.choice(kinds)
        record = coll.records[rng.choice(coll.order)]
        events.append(
            {
                "id": f"evt_wh_{uuid.uuid4().hex[:24]}",
                "type": f"{kind}.updated",
                "created": now,
                "data": {"object": record},
            }
        )
    return events


async def send_demo_webhooks(shop: Shop, spec: dict[str, Any]) -> list[dict[str, Any]]:
    """`POST /admin/webhooks/send`: make (or take `events`) and deliver; results as dicts."""
    events = spec.get("events") or shop_events(shop, int(spec.get("count", 1)))
    duplicates = int(spec.get("duplicates", 0))
    events = list(events) + list(events[:duplicates])
    results = await asend_events(
        str(spec["url"]),
        str(spec["scheme"]),
        str(spec["secret"]),
        events,
        retries=int(spec.get("retries", 3)),
        backoff=float(spec.get("backoff", 0.2)),
        timeout=float(spec.get("timeout", 10.0)),
        options=spec.get("options"),
        tamper=bool(spec.get("tamper", False)),
    )
    return [asdict(r) for r in results]
