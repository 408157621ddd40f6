"""Every auth type through `SourceClient` against the demo API over real HTTP: the server's request
log shows which credential each request carried; tokens are shared, refreshed before they expire
and rotated refresh tokens are kept, never presented twice when an answer is lost; a refused credential is an `AuthError` without the secret;
credentials never reach a foreign origin that a next link points at."""

import os
import socket
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from api_assets.demo_api import DEMO_CREDENTIALS, DemoServer
from api_assets.errors import AuthError
from api_assets.http.auth import build_auth, clear_token_caches
from api_assets.http.client import SourceClient
from api_assets.http.redact import Redactor
from api_assets.pages import FetchStats
from api_assets.pagination import series
from api_assets_tests.engine.conftest import (
    API_KEY_HEADER,
    API_KEY_QUERY,
    KEY_2,
    Recorder,
    endpoint,
    fetch,
    ids_of,
    make_source,
    statuses,
    the_endpoint,
    truth_ids,
    v1_log,
)
from api_assets_tests.engine.conftest_policy import serve

Clients = Callable[..., SourceClient]

CLIENT_ID = DEMO_CREDENTIALS["client_id"]
CLIENT_SECRET = DEMO_CREDENTIALS["client_secret"]
USER, PASSWORD = DEMO_CREDENTIALS["basic"]


def oauth_cc(url: str, client_auth: str = "basic", **extra: Any) -> dict[str, Any]:
    return {
        "type": "oauth2_client_credentials",
        "token_url": f"{url}/oauth/token",
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "scopes": ["read"],
        "client_auth": client_auth,
        **extra,
    }


def jwt_self_signed(**extra: Any) -> dict[str, Any]:
    return {
        "type": "jwt_bearer",
        "secret": DEMO_CREDENTIALS["jwt_secret"],
        "algorithm": "HS256",
        "claims": {"iss": "api-assets-tests", "sub": "tests"},
        "lifetime_seconds": 300,
        **extra,
    }


# name, auth (a function of the server URL), the log label the demo gives that credential
STATIC_AND_TOKEN_AUTHS: list[tuple[str, Callable[[str], dict[str, Any]], str]] = [
    ("api_key_header", lambda url: API_KEY_HEADER, "api_key#1"),
    ("api_key_query", lambda url: API_KEY_QUERY, "api_key#2"),
    (
        "bearer",
        lambda url: {"type": "bearer", "token": DEMO_CREDENTIALS["bearer_token"]},
        "bearer:static",
    ),
    ("basic", lambda url: {"type": "basic", "username": USER, "password": PASSWORD}, "basic:demo"),
    ("oauth2_cc_basic", lambda url: oauth_cc(url, "basic"), f"oauth:{CLIENT_ID}"),
    ("oauth2_cc_body", lambda url: oauth_cc(url, "body"), f"oauth:{CLIENT_ID}"),
    ("jwt_bearer_self_signed", lambda url: jwt_self_signed(), "jwt"),
    (
        "jwt_bearer_assertion_grant",
        lambda url: jwt_self_signed(token_url=f"{url}/oauth/token"),
        "oauth:tests",
    ),
]


@pytest.mark.parametrize(
    ("kind", "auth", "label"), STATIC_AND_TOKEN_AUTHS, ids=[a[0] for a in STATIC_AND_TOKEN_AUTHS]
)
def test_every_auth_type_is_accepted(
    demo_api: DemoServer,
    clients: Clients,
    kind: str,
    auth: Callable[[str], dict[str, Any]],
    label: str,
) -> None:
    source = make_source(demo_api.url, "orders", auth=auth(demo_api.url))
    pages, _ = fetch(clients(source), the_endpoint(source))
    assert sorted(ids_of(pages)) == truth_ids(demo_api, "orders")

    api = v1_log(demo_api, "/v1/orders")
    assert len(api) == len(pages)
    assert statuses(api) == [200] * len(api)
    assert {r["credential"] for r in api} == {label}
    tokens = v1_log(demo_api, "/oauth/token")
    if kind.startswith("oauth2") or kind == "jwt_bearer_assertion_grant":
        # one token for the whole series, shared by every page request
        assert statuses(tokens) == [200]
    else:
        assert tokens == []


def test_key_rotation_uses_every_key(demo_api: DemoServer, clients: Clients) -> None:
    keys = DEMO_CREDENTIALS["api_keys"]
    source = make_source(
        demo_api.url,
        "orders",
        auth={
            "type": "api_key_rotation",
            "name": "X-API-Key",
            "location": "header",
            "values": keys,
        },
    )
    pages, _ = fetch(clients(source), the_endpoint(source))
    assert sorted(ids_of(pages)) == truth_ids(demo_api, "orders")
    labels = [r["credential"] for r in v1_log(demo_api)]
    assert len(labels) == len(pages)
    assert set(labels) == {"api_key#1", "api_key#2", "api_key#3"}


def test_key_rotation_spreads_a_rate_limited_budget(
    demo_api_factory: Callable[..., DemoServer], clients: Clients
) -> None:
    """Three keys, each with its own server bucket of 5/s: a client allowed 15/s over three keys
    finishes with every key used and no request lost."""
    server = demo_api_factory(rate_limit_rps=5)
    keys = DEMO_CREDENTIALS["api_keys"]
    source = make_source(
        server.url,
        endpoint("products", params={}, paginator={"limit": 25}),
        auth={
            "type": "api_key_rotation",
            "name": "X-API-Key",
            "location": "header",
            "values": keys,
        },
        rate_limit={"requests_per_second": 15, "burst": 15, "max_concurrency": 3},
        retry={"max_attempts": 6, "max_backoff_seconds": 5},
    )
    pages, _ = fetch(clients(source), the_endpoint(source))
    assert sorted(ids_of(pages)) == truth_ids(server, "products")
    log = v1_log(server)
    ok = [r for r in log if r["status"] == 200]
    assert len(ok) == len(pages) == 21  # 20 full pages + the probe past the stated total
    assert {r["credential"] for r in ok} == {"api_key#1", "api_key#2", "api_key#3"}


def test_refresh_token_from_consent_is_rotated_and_kept(
    demo_api: DemoServer, clients: Clients, tmp_path: Path
) -> None:
    first = demo_api.consent()
    credential_dir = tmp_path / "creds"
    auth = {
        "type": "oauth2_refresh_token",
        "token_url": f"{demo_api.url}/oauth/token",
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "refresh_token": first,
    }
    source = make_source(demo_api.url, "categories", auth=auth)
    pages, _ = fetch(clients(source, credential_dir=credential_dir), the_endpoint(source))
    assert len(ids_of(pages)) == 12
    assert statuses(v1_log(demo_api, "/oauth/token")) == [200]
    assert {r["credential"] for r in v1_log(demo_api, "/v1/categories")} == {f"oauth:{CLIENT_ID}"}

    # the demo rotates refresh tokens: the first one is spent, the new one is in the store
    stored = list(credential_dir.glob("*.secret"))
    assert len(stored) == 1
    assert stat.S_IMODE(os.stat(stored[0]).st_mode) == 0o600
    assert first not in stored[0].read_text()

    # a new process (fresh token cache) with the same config starts from the stored token:
    # the spent one would be refused with invalid_grant
    clear_token_caches()
    again = SourceClient(source, credential_dir=credential_dir)
    try:
        pages, _ = fetch(again, the_endpoint(source))
    finally:
        again.close()
    assert len(ids_of(pages)) == 12
    assert statuses(v1_log(demo_api, "/oauth/token")) == [200, 200]


@pytest.mark.parametrize(
    ("profile", "options"),
    [("5xx_burst", {"count": 2}), ("429_storm", {"count": 1, "retry_after": 1})],
    ids=["5xx", "429"],
)
def test_token_endpoint_faults_are_retried(
    demo_api: DemoServer,
    clients: Clients,
    profile: str,
    options: dict[str, Any],
) -> None:
    demo_api.set_faults(profile, path="/oauth/token", **options)
    source = make_source(demo_api.url, "categories", auth=oauth_cc(demo_api.url))
    pages, _ = fetch(clients(source), the_endpoint(source))
    assert len(ids_of(pages)) == 12
    tokens = statuses(v1_log(demo_api, "/oauth/token"))
    assert tokens[-1] == 200 and len(tokens) == options["count"] + 1
    assert statuses(v1_log(demo_api, "/v1/categories")) == [200]


# --- a refresh token grant that may have spent the token --------------------------------------


def oauth_rt(token_url: str, refresh_token: str) -> dict[str, Any]:
    return {
        "type": "oauth2_refresh_token",
        "token_url": token_url,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "refresh_token": refresh_token,
    }


def token_log(server: DemoServer, expected: int) -> list[dict[str, Any]]:
    """The token endpoint's log once it holds `expected` requests (a `slow` one is logged when
    it ends, after the client gave up), or as it is after 30 s."""
    deadline = time.monotonic() + 30
    while len(rows := v1_log(server, "/oauth/token")) < expected and time.monotonic() < deadline:
        time.sleep(0.05)
    return rows


@pytest.mark.parametrize(
    ("profile", "options", "what"),
    [
        ("5xx_burst", {"count": 1}, "HTTP 503"),
        ("drop", {"count": 1}, "RemoteProtocolError"),  # rotated, then the answer is cut off
        ("slow", {"count": 1, "delay": 3.0}, "ReadTimeout"),  # rotated after the client gave up
    ],
    ids=["503", "dropped", "read-timeout"],
)
def test_a_refresh_grant_that_may_have_spent_the_token_is_sent_once_and_loud(
    demo_api: DemoServer,
    clients: Clients,
    tmp_path: Path,
    profile: str,
    options: dict[str, Any],
    what: str,
) -> None:
    """A provider that rotates refresh tokens may have spent the one presented when its answer
    is lost; presenting it again would make one that detects reuse revoke the whole family. So:
    one grant request, an AuthError that says so and what to do, and no later client (another
    thread, step or run sharing the credential store) presents it either."""
    first = demo_api.consent()
    demo_api.set_faults(profile, path="/oauth/token", **options)
    credential_dir = tmp_path / "creds"
    source = make_source(
        demo_api.url,
        "categories",
        auth=oauth_rt(f"{demo_api.url}/oauth/token", first),
        timeout_seconds=1.0,
    )
    with pytest.raises(AuthError) as info:
        fetch(clients(source, credential_dir=credential_dir), the_endpoint(source))
    text = str(info.value)
    assert what in text
    assert "may have rotated the refresh token and the answer was lost" in text
    assert "revokes the whole token family" in text
    assert "authorize the application again and set the new refresh_token" in text
    assert first not in text
    assert len(token_log(demo_api, 1)) == 1
    assert v1_log(demo_api, "/v1/categories") == []

    # a new process (fresh token cache) on the same store does not present it either
    clear_token_caches()
    with pytest.raises(AuthError, match=r"an earlier refresh token grant .* failed after it was"):
        fetch(clients(source, credential_dir=credential_dir), the_endpoint(source))
    assert len(v1_log(demo_api, "/oauth/token")) == 1

    # the remedy the message gives: a new consent in the configuration
    demo_api.clear_faults()
    renewed = make_source(
        demo_api.url, "categories", auth=oauth_rt(f"{demo_api.url}/oauth/token", demo_api.consent())
    )
    clear_token_caches()
    pages, _ = fetch(clients(renewed, credential_dir=credential_dir), the_endpoint(renewed))
    assert len(ids_of(pages)) == 12
    assert statuses(v1_log(demo_api, "/oauth/token"))[1:] == [200]


def test_a_refresh_grant_turned_away_with_429_is_retried(
    demo_api: DemoServer, clients: Clients, tmp_path: Path
) -> None:
    """A 429 is the server saying it did not handle the request: nothing was spent."""
    first = demo_api.consent()
    demo_api.set_faults("429_storm", path="/oauth/token", count=1, retry_after=0.1)
    source = make_source(
        demo_api.url, "categories", auth=oauth_rt(f"{demo_api.url}/oauth/token", first)
    )
    pages, _ = fetch(clients(source), the_endpoint(source))
    assert len(ids_of(pages)) == 12
    assert statuses(v1_log(demo_api, "/oauth/token")) == [429, 200]


class LateListener:
    """A port that refuses connections (bound, not listening) until `open()`; from then on it
    forwards each connection to `target_port` on 127.0.0.1."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        self.opened = 0

    def open(self) -> None:
        self.opened += 1
        self.sock.listen()
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self.sock.close()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return  # closed
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            for a, b in ((conn, upstream), (upstream, conn)):
                threading.Thread(target=_pipe, args=(a, b), daemon=True).start()


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
        dst.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def test_a_refresh_grant_that_never_connected_is_retried(
    demo_api: DemoServer, tmp_path: Path
) -> None:
    """Connection refused: the request provably never reached the server, so it is sent again,
    here to a token endpoint that starts listening during the backoff."""
    first = demo_api.consent()
    late = LateListener(int(httpx.URL(demo_api.url).port or 0))
    clear_token_caches()
    try:
        source = make_source(
            demo_api.url,
            "categories",
            auth=oauth_rt(f"http://127.0.0.1:{late.port}/oauth/token", first),
        )
        auth = build_auth(
            source, redactor=Redactor(), credential_dir=tmp_path, sleep=lambda s: late.open()
        )
        with httpx.Client(base_url=demo_api.url, auth=auth, timeout=10) as client:
            assert client.get("/v1/categories").status_code == 200
    finally:
        late.close()
        clear_token_caches()
    assert late.opened == 1  # one retry, after the refused connection
    assert statuses(v1_log(demo_api, "/oauth/token")) == [200]
    assert demo_api.app is not None and first in demo_api.app.auth.used_refresh


# --- tokens expiring mid-run ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "max_concurrency"),
    [("orders", 1), ("products", 4)],
    ids=["cursor-sequential", "offset-concurrent"],
)
def test_tokens_expiring_mid_run_are_refreshed_without_failing(
    demo_api_factory: Callable[..., DemoServer],
    clients: Clients,
    name: str,
    max_concurrency: int,
) -> None:
    # 1 s tokens and 120 ms per request: a run of ~10-25 requests outlives several tokens
    server = demo_api_factory(token_lifetime=1.0, latency_ms=120)
    ep = endpoint(name, params={}, paginator={"limit": 100 if name == "orders" else 25})
    source = make_source(
        server.url,
        ep,
        auth=oauth_cc(server.url),
        rate_limit={"requests_per_second": 2000, "burst": 200, "max_concurrency": max_concurrency},
    )
    pages, stats = fetch(clients(source), the_endpoint(source))
    assert sorted(ids_of(pages)) == truth_ids(server, name)

    api = [r for r in v1_log(server) if r["path"].startswith("/v1")]
    tokens = v1_log(server, "/oauth/token")
    assert statuses(tokens) == [200] * len(tokens)
    assert len(tokens) >= 2, "the run should have outlived its first token"
    refused = statuses(api).count(401)
    # at most one extra request per token that expired during the run
    assert len(api) - len(pages) == refused
    assert refused <= len(tokens) - 1
    assert stats.retries == 0


@pytest.mark.parametrize(
    ("name", "max_concurrency"),
    [("orders", 1), ("products", 4)],
    ids=["cursor-sequential", "offset-concurrent"],
)
def test_tokens_revoked_mid_run_are_replaced_once(
    demo_api: DemoServer, clients: Clients, name: str, max_concurrency: int
) -> None:
    """A token the server stops accepting before its expiry: each request refused resends once
    with a new token, and however many were in flight, one new token is fetched."""
    ep = endpoint(name, params={}, paginator={"limit": 100 if name == "orders" else 25})
    source = make_source(
        demo_api.url,
        ep,
        auth=oauth_cc(demo_api.url),
        rate_limit={"requests_per_second": 2000, "burst": 200, "max_concurrency": max_concurrency},
    )
    stats = FetchStats()
    pages = []
    for page in series.fetch(clients(source), the_endpoint(source), stats):
        pages.append(page)
        if len(pages) == 1:
            demo_api.revoke(access_tokens=True)
    assert sorted(ids_of(pages)) == truth_ids(demo_api, name)

    api = [r for r in v1_log(demo_api) if r["path"].startswith("/v1")]
    refused = statuses(api).count(401)
    assert statuses(v1_log(demo_api, "/oauth/token")) == [200, 200]
    assert 1 <= refused <= max_concurrency
    assert len(api) == len(pages) + refused
    # each refused request was resent right away by the auth flow, not by the retry policy
    assert stats.retries == 0


# --- refused credentials ----------------------------------------------------------------------

WRONG_KEY = "wrong-key-7f3a9c"
WRONG_SECRET = "wrong-secret-41b2d8"


@pytest.mark.parametrize(
    ("kind", "auth", "secret"),
    [
        ("api_key_header", {**API_KEY_HEADER, "value": WRONG_KEY}, WRONG_KEY),
        ("api_key_query", {**API_KEY_QUERY, "value": WRONG_KEY}, WRONG_KEY),
        ("bearer", {"type": "bearer", "token": WRONG_KEY}, WRONG_KEY),
        ("basic", {"type": "basic", "username": USER, "password": WRONG_SECRET}, WRONG_SECRET),
        ("oauth2_cc", None, WRONG_SECRET),
    ],
)
def test_refused_credential_is_an_auth_error_without_the_secret(
    demo_api: DemoServer, clients: Clients, kind: str, auth: dict[str, Any] | None, secret: str
) -> None:
    if auth is None:
        auth = {**oauth_cc(demo_api.url), "client_secret": WRONG_SECRET}
    source = make_source(demo_api.url, "products", auth=auth)
    with pytest.raises(AuthError) as info:
        fetch(clients(source), the_endpoint(source))
    text = str(info.value)
    assert secret not in text
    assert "source `shop`" in text
    log = v1_log(demo_api)
    # refused, not retried: one request (to the API or to the token endpoint)
    assert statuses(log) == [401]


def test_key_revoked_mid_run_is_an_auth_error(demo_api: DemoServer, clients: Clients) -> None:
    source = make_source(demo_api.url, "orders", auth=API_KEY_QUERY)
    client = clients(source)
    pages = series.fetch(client, the_endpoint(source), FetchStats())
    first = next(pages)
    assert first.records
    demo_api.revoke(api_key=KEY_2)
    with pytest.raises(AuthError) as info:
        next(pages)
    assert KEY_2 not in str(info.value)
    assert statuses(v1_log(demo_api)) == [200, 401]


# --- credentials never go to a foreign origin ---------------------------------------------------

FOREIGN_CASES: list[tuple[str, Callable[[str], dict[str, Any]]]] = [
    ("api_key_header", lambda url: API_KEY_HEADER),
    ("api_key_query", lambda url: API_KEY_QUERY),
    ("bearer", lambda url: {"type": "bearer", "token": DEMO_CREDENTIALS["bearer_token"]}),
    ("basic", lambda url: {"type": "basic", "username": USER, "password": PASSWORD}),
    ("oauth2_cc", lambda url: oauth_cc(url)),
    ("jwt_bearer", lambda url: jwt_self_signed()),
    (
        "api_key_rotation",
        lambda url: {
            "type": "api_key_rotation",
            "name": "X-API-Key",
            "values": DEMO_CREDENTIALS["api_keys"],
        },
    ),
]


@pytest.mark.parametrize("paginated", ["products_feed", "events"], ids=["next_url", "link_header"])
@pytest.mark.parametrize(("kind", "auth"), FOREIGN_CASES, ids=[c[0] for c in FOREIGN_CASES])
def test_credentials_never_sent_to_a_foreign_origin(
    demo_api: DemoServer,
    clients: Clients,
    paginated: str,
    kind: str,
    auth: Callable[[str], dict[str, Any]],
) -> None:
    """The demo builds its next URL / Link from the request's Host header; sending the Host of a
    second local server makes the demo's own next link point there, as a misbehaving or
    redirected API would."""
    recorder = Recorder()
    with serve(recorder.app()) as foreign:
        foreign_host = foreign.removeprefix("http://")
        source = make_source(
            demo_api.url,
            paginated,
            auth=auth(demo_api.url),
            headers={"Host": foreign_host},
            allowed_origins=[foreign],  # followed (bare): refused otherwise (test_origins_http)
        )
        pages, _ = fetch(clients(source), the_endpoint(source))

    # page 1 came from the demo, with the credential
    demo = [r for r in v1_log(demo_api) if r["path"].startswith("/v1")]
    assert len(demo) == 1 and demo[0]["status"] == 200
    assert demo[0]["credential"] != "none"
    assert pages[0].records
    # page 2 went to the foreign origin, bare (asked twice when it came back empty: an empty
    # page that ends a series is asked for once more before it is trusted)
    assert 1 <= len(recorder.seen) <= 2
    secrets = (*DEMO_CREDENTIALS["api_keys"], DEMO_CREDENTIALS["bearer_token"], PASSWORD)
    for seen in recorder.seen:
        assert seen["path"] == f"/{ENDPOINT_PATHS[paginated]}"
        assert "authorization" not in seen["headers"]
        assert "x-api-key" not in seen["headers"]
        assert "api_key" not in seen["query"]
        for secret in (*secrets, CLIENT_SECRET):
            assert secret not in repr(seen)


ENDPOINT_PATHS = {"products_feed": "v1/products/feed", "events": "v1/events"}
