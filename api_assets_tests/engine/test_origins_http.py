"""Next URLs and Link headers on another origin (`api_assets/http/origins.py`), over real HTTP:
refused before anything is sent unless the source's `allowed_origins` lists the origin; followed
bare when it does (no `auth:` credential, no static header whose name looks like a credential,
the other static headers kept); never from a public API into this network.

The demo API builds its next URL and Link header from the request's Host header: a static
`Host` of a second local server (a `Recorder`) makes the demo's own next link point there, as a
misbehaving or compromised API would."""

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from api_assets.demo_api import DemoServer
from api_assets.errors import PaginationError
from api_assets.http.client import SourceClient
from api_assets_tests.engine.conftest import (
    KEY_1,
    Recorder,
    endpoint,
    fetch,
    make_source,
    the_endpoint,
    v1_log,
)
from api_assets_tests.engine.conftest_policy import serve

Clients = Callable[..., SourceClient]

NONE = {"type": "none"}
COOKIE = "session=sekrit-cookie-4f1d"
PRIVATE_TOKEN = "sekrit-private-token-9a2c"
ENDPOINT_TOKEN = "sekrit-endpoint-token-77e0"
# static headers: a credential in `headers:` with `auth: none` (the demo accepts X-API-Key from
# anywhere), other credential-looking names, and two that are not secrets
STATIC = {
    "X-API-Key": KEY_1,
    "Cookie": COOKIE,
    "Private-Token": PRIVATE_TOKEN,
    "Accept": "application/json",
    "X-Trace": "trace-1",
}
ENDPOINT_HEADERS = {"X-Request-Token": ENDPOINT_TOKEN, "X-Tenant": "acme"}
SECRETS = (KEY_1, COOKIE, PRIVATE_TOKEN, ENDPOINT_TOKEN)
CREDENTIAL_HEADERS = {"x-api-key", "cookie", "private-token", "x-request-token", "authorization"}

PAGINATED = ["products_feed", "events"]  # next URL in the body, RFC 8288 Link header
PATHS = {"products_feed": "/v1/products/feed", "events": "/v1/events"}


def _source(url: str, paginated: str, foreign: str, **extra: Any) -> Any:
    return make_source(
        url,
        endpoint(paginated, headers=ENDPOINT_HEADERS),
        auth=NONE,
        headers={**STATIC, "Host": foreign.removeprefix("http://")},
        **extra,
    )


@pytest.mark.parametrize("paginated", PAGINATED, ids=["next_url", "link_header"])
def test_a_next_page_on_another_origin_is_refused_before_anything_is_sent(
    demo_api: DemoServer, clients: Clients, paginated: str
) -> None:
    recorder = Recorder()
    with serve(recorder.app()) as foreign:
        source = _source(demo_api.url, paginated, foreign)
        with pytest.raises(PaginationError) as info:
            fetch(clients(source), the_endpoint(source))

    assert recorder.seen == []  # nothing reached the other origin, not even a bare request
    message = str(info.value)
    for part in ("source `shop`", f"endpoint `{paginated}`", foreign, "`allowed_origins`"):
        assert part in message, message
    for secret in SECRETS:
        assert secret not in message
    # the first page came from the demo, with the static credential
    demo = [r for r in v1_log(demo_api) if r["path"] == PATHS[paginated]]
    assert len(demo) == 1 and demo[0]["status"] == 200 and demo[0]["credential"] == "api_key#1"


@pytest.mark.parametrize("paginated", PAGINATED, ids=["next_url", "link_header"])
def test_an_allowed_origin_gets_the_next_page_without_credential_headers(
    demo_api: DemoServer, clients: Clients, paginated: str
) -> None:
    recorder = Recorder()
    with serve(recorder.app()) as foreign:
        source = _source(demo_api.url, paginated, foreign, allowed_origins=[foreign])
        pages, _ = fetch(clients(source), the_endpoint(source))

    assert pages[0].records
    # page 2 went to the allowed origin (asked twice: an empty page that ends a series is
    # asked for once more before it is trusted)
    assert 1 <= len(recorder.seen) <= 2
    for seen in recorder.seen:
        assert seen["path"] == PATHS[paginated]
        assert not CREDENTIAL_HEADERS & set(seen["headers"]), seen["headers"]
        assert seen["headers"]["accept"] == "application/json"
        assert seen["headers"]["x-trace"] == "trace-1"
        assert seen["headers"]["x-tenant"] == "acme"
        for secret in SECRETS:
            assert secret not in repr(seen)


# --- a public API's next link never reaches into this network ---------------------------------

PUBLIC_BASE = "https://93.184.215.14"  # a public address: no DNS, and never contacted (below)


@pytest.mark.parametrize(
    "target",
    [
        "http://localhost:8080",  # a name that resolves to loopback
        "http://127.0.0.1:8080",
        "http://169.254.169.254",  # link-local: cloud metadata
        "http://10.1.2.3",
        "http://[::1]:8080",
    ],
)
def test_a_public_api_cannot_lead_to_a_private_address_even_when_allowed(
    clients: Clients, target: str
) -> None:
    """No real server can be a public API here: the transport is a mock, which also proves that
    nothing was sent after the first page."""
    sent: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(str(request.url))
        return httpx.Response(
            200, json={"data": [{"id": 1}], "next": f"{target}/v1/products/feed?page=2"}
        )

    source = make_source(PUBLIC_BASE, "products_feed", auth=NONE, allowed_origins=[target])
    client = clients(source, transport=httpx.MockTransport(answer))
    with pytest.raises(PaginationError) as info:
        fetch(client, the_endpoint(source))
    assert sent == [f"{PUBLIC_BASE}/v1/products/feed?limit=120"]
    assert "non-public address" in str(info.value) and "source `shop`" in str(info.value)


def test_a_public_api_may_lead_to_an_allowed_public_origin(clients: Clients) -> None:
    """The rule above refuses private addresses only: the same run to a public origin it allows
    is followed (bare)."""
    target = "https://8.8.8.8"
    sent: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        if request.url.host == "8.8.8.8":
            return httpx.Response(200, json={"data": [], "next": None})
        return httpx.Response(
            200, json={"data": [{"id": 1}], "next": f"{target}/v1/products/feed?page=2"}
        )

    source = make_source(
        PUBLIC_BASE,
        "products_feed",
        auth={"type": "bearer", "token": "sekrit-bearer"},
        allowed_origins=[target],
        headers={"Private-Token": PRIVATE_TOKEN},
    )
    pages, _ = fetch(clients(source, transport=httpx.MockTransport(answer)), the_endpoint(source))
    assert pages[0].records == [{"id": 1}]
    assert sent[0].headers["authorization"] == "Bearer sekrit-bearer"
    assert sent[0].headers["private-token"] == PRIVATE_TOKEN
    followed = [r for r in sent if r.url.host == "8.8.8.8"]
    assert followed
    for request in followed:
        assert "authorization" not in request.headers
        assert "private-token" not in request.headers
