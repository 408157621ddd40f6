"""Auth flows against a tiny local token server: shared token cache, refresh before expiry,
401 → one refresh + one resend, token endpoint errors, origins, key rotation, refresh-token
rotation in the credential store (across processes), JWT signing."""

import json
import multiprocessing
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from api_assets.config.models import SourceConfig
from api_assets.demo_api import DEMO_CREDENTIALS, DemoServer
from api_assets.errors import AuthError
from api_assets.http.auth import (
    JWT_BEARER_GRANT,
    ApiAuth,
    ClientCredentialsFlow,
    JwtBearerFlow,
    KeyRotationFlow,
    RefreshTokenFlow,
    build_auth,
    clear_token_caches,
    origin_of,
    parse_expires_in,
)
from api_assets.http.credentials import CredentialStore, credential_key
from api_assets.http.redact import Redactor
from api_assets_tests.engine.conftest_policy import (
    CLIENT_ID,
    CLIENT_SECRET,
    EchoServer,
    FakeClock,
    OAuthServer,
    refresh_worker,
    serve,
)


@pytest.fixture(autouse=True)
def _fresh_caches() -> Iterator[None]:
    clear_token_caches()
    yield
    clear_token_caches()


@pytest.fixture
def oauth() -> Iterator[tuple[OAuthServer, str]]:
    server = OAuthServer()
    with serve(server.app()) as url:
        yield server, url


def source(base_url: str, auth: dict[str, Any], name: str = "shop") -> SourceConfig:
    return SourceConfig.model_validate({"name": name, "base_url": base_url, "auth": auth})


def cc_auth(url: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": "oauth2_client_credentials",
        "token_url": f"{url}/oauth/token",
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        **extra,
    }


def client_for(auth: ApiAuth, base_url: str) -> httpx.Client:
    return httpx.Client(base_url=base_url, auth=auth, timeout=10)


# --- OAuth2 client credentials -----------------------------------------------------------


def test_many_threads_cause_one_token_request(oauth: tuple[OAuthServer, str]) -> None:
    server, url = oauth
    src = source(url, cc_auth(url))
    # two flows (two endpoints) of the same credential share the cache
    auths = [build_auth(src, redactor=Redactor()) for _ in range(2)]
    clients = [client_for(a, url) for a in auths]
    barrier = threading.Barrier(16)
    statuses: list[int] = []

    def worker(i: int) -> None:
        barrier.wait()
        statuses.append(clients[i % 2].get("/v1/data").status_code)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [200] * 16
    assert len(server.token_calls) == 1
    assert len({c["token"] for c in server.api_calls}) == 1


@pytest.mark.parametrize("client_auth", ["basic", "body"])
def test_client_auth_basic_or_body(oauth: tuple[OAuthServer, str], client_auth: str) -> None:
    server, url = oauth
    auth = build_auth(
        source(url, cc_auth(url, client_auth=client_auth, scopes=["read", "write"])),
        redactor=Redactor(),
    )
    with client_for(auth, url) as client:
        assert client.get("/v1/data").status_code == 200
    call = server.token_calls[0]
    assert call["form"]["grant_type"] == "client_credentials"
    assert call["form"]["scope"] == "read write"
    if client_auth == "basic":
        assert call["basic"] == (CLIENT_ID, CLIENT_SECRET)
        assert "client_secret" not in call["form"]
    else:
        assert call["basic"] is None
        assert call["form"]["client_secret"] == CLIENT_SECRET


def test_refresh_before_expiry_with_margin(oauth: tuple[OAuthServer, str]) -> None:
    server, url = oauth
    server.expires_in = 100
    clock = FakeClock()
    auth = build_auth(
        source(url, cc_auth(url, refresh_margin_seconds=10)), redactor=Redactor(), clock=clock
    )
    with client_for(auth, url) as client:
        client.get("/v1/data")
        clock.advance(89)  # 11 s before expiry: still good
        client.get("/v1/data")
        assert len(server.token_calls) == 1
        clock.advance(2)  # 9 s before expiry: inside the margin
        assert client.get("/v1/data").status_code == 200
    assert len(server.token_calls) == 2
    assert server.api_calls[1]["token"] != server.api_calls[2]["token"]


@pytest.mark.parametrize(
    ("expires_in", "stays_at", "refreshes_at"),
    [(None, 3000, 3550), ("120", 59, 61), (30, 14, 16)],
    ids=["missing-assume-3600", "string", "margin-capped-at-half-life"],
)
def test_expires_in_missing_string_or_short(
    oauth: tuple[OAuthServer, str], expires_in: Any, stays_at: float, refreshes_at: float
) -> None:
    server, url = oauth
    server.expires_in = expires_in
    clock = FakeClock(0.0)
    auth = build_auth(
        source(url, cc_auth(url, refresh_margin_seconds=60)), redactor=Redactor(), clock=clock
    )
    with client_for(auth, url) as client:
        client.get("/v1/data")
        client.get("/v1/data")  # a short-lived token is not refreshed on every request
        clock.t = stays_at
        client.get("/v1/data")
        assert len(server.token_calls) == 1
        clock.t = refreshes_at
        client.get("/v1/data")
    assert len(server.token_calls) == 2


def test_parse_expires_in() -> None:
    assert parse_expires_in(3600) == 3600.0
    assert parse_expires_in(" 120 ") == 120.0
    assert parse_expires_in("1.5") == 1.5
    for bad in (None, "soon", 0, -5, True, float("nan"), [1]):
        assert parse_expires_in(bad) is None


def test_401_refreshes_once_and_resends_once(oauth: tuple[OAuthServer, str]) -> None:
    server, url = oauth
    auth = build_auth(source(url, cc_auth(url)), redactor=Redactor())
    with client_for(auth, url) as client:
        assert client.get("/v1/data").status_code == 200
        server.revoke_all()  # the server forgot the token before it expired
        response = client.get("/v1/data")
    assert response.status_code == 200
    assert len(server.token_calls) == 2
    assert len(server.api_calls) == 3  # 200, then 401 + resend


def test_second_401_is_an_auth_error(oauth: tuple[OAuthServer, str]) -> None:
    server, url = oauth
    server.api_always_401 = True
    auth = build_auth(source(url, cc_auth(url)), redactor=Redactor())
    with client_for(auth, url) as client, pytest.raises(AuthError) as info:
        client.get("/v1/data")
    assert len(server.token_calls) == 2
    assert len(server.api_calls) == 2
    assert "shop" in str(info.value)
    assert CLIENT_SECRET not in str(info.value)
    for call in server.api_calls:
        assert call["token"] not in str(info.value)


def test_401_after_another_thread_refreshed_does_not_refresh_again(
    oauth: tuple[OAuthServer, str],
) -> None:
    server, url = oauth
    auth = build_auth(source(url, cc_auth(url)), redactor=Redactor())
    assert isinstance(auth, ClientCredentialsFlow)
    auth.access_token()
    old = auth._cache.token
    assert old is not None
    auth.access_token(force_refresh=True)  # "another thread" refreshed
    assert len(server.token_calls) == 2
    auth._invalidate(old)  # a late 401 for the old token must not drop the new one
    auth.access_token()
    assert len(server.token_calls) == 2


def test_invalid_client_is_an_auth_error_without_the_secret(oauth: tuple[OAuthServer, str]) -> None:
    server, url = oauth
    wrong = "wrong-secret-value-xyz"
    auth = build_auth(source(url, cc_auth(url, client_secret=wrong)), redactor=Redactor())
    with client_for(auth, url) as client, pytest.raises(AuthError) as info:
        client.get("/v1/data")
    message = str(info.value)
    assert wrong not in message and CLIENT_SECRET not in message
    assert "shop" in message and f"{url}/oauth/token" in message
    assert "invalid_client" in message and "client_secret" in message
    assert len(server.token_calls) == 1  # a refusal is not retried
    assert server.api_calls == []


def test_a_wrong_secret_never_rides_on_a_cached_token(oauth: tuple[OAuthServer, str]) -> None:
    """Two sources with the same client id in one process (all steps of a run in process): the
    one with the wrong secret is refused, not served the other one's cached token."""
    server, url = oauth
    good = build_auth(source(url, cc_auth(url)), redactor=Redactor())
    bad = build_auth(
        source(url, cc_auth(url, client_secret="wrong-secret-value-xyz"), name="other"),
        redactor=Redactor(),
    )
    with client_for(good, url) as client:
        assert client.get("/v1/data").status_code == 200
    with client_for(bad, url) as client, pytest.raises(AuthError, match="invalid_client"):
        client.get("/v1/data")
    assert len(server.token_calls) == 2


def test_token_endpoint_5xx_and_429_are_retried(oauth: tuple[OAuthServer, str]) -> None:
    server, url = oauth
    server.fail_token_with = [503, 429]
    clock = FakeClock()
    auth = build_auth(source(url, cc_auth(url)), redactor=Redactor(), sleep=clock.sleep)
    with client_for(auth, url) as client:
        assert client.get("/v1/data").status_code == 200
    assert len(server.token_calls) == 3
    assert len(clock.sleeps) == 2 and all(s > 0 for s in clock.sleeps)  # never a storm


def test_token_endpoint_down_is_an_auth_error_after_a_few_tries(
    oauth: tuple[OAuthServer, str],
) -> None:
    server, url = oauth
    server.fail_token_with = [503] * 10
    clock = FakeClock()
    auth = build_auth(source(url, cc_auth(url)), redactor=Redactor(), sleep=clock.sleep)
    with client_for(auth, url) as client, pytest.raises(AuthError, match="did not answer"):
        client.get("/v1/data")
    assert len(server.token_calls) == 4


def test_refresh_token_grant_used_then_falls_back_to_client_credentials(
    oauth: tuple[OAuthServer, str],
) -> None:
    server, url = oauth
    server.issue_refresh = True
    auth = build_auth(source(url, cc_auth(url)), redactor=Redactor())
    auth.access_token()  # type: ignore[attr-defined]
    auth.access_token(force_refresh=True)  # type: ignore[attr-defined]
    grants = [c["form"]["grant_type"] for c in server.token_calls]
    assert grants == ["client_credentials", "refresh_token"]
    server.refresh_tokens.clear()  # the server forgets every refresh token: invalid_grant
    auth.access_token(force_refresh=True)  # type: ignore[attr-defined]
    grants = [c["form"]["grant_type"] for c in server.token_calls]
    assert grants == ["client_credentials", "refresh_token", "refresh_token", "client_credentials"]


def test_a_refresh_grant_without_an_answer_falls_back_to_client_credentials_at_once(
    oauth: tuple[OAuthServer, str],
) -> None:
    """A 5xx to the refresh grant may have spent a rotating refresh token: it is not presented
    again; the client credentials grant, which spends nothing, is (and is retried as usual)."""
    server, url = oauth
    server.issue_refresh = True
    clock = FakeClock()
    auth = build_auth(source(url, cc_auth(url)), redactor=Redactor(), sleep=clock.sleep)
    auth.access_token()  # type: ignore[attr-defined]
    server.fail_token_with = [503, 503]
    auth.access_token(force_refresh=True)  # type: ignore[attr-defined]
    grants = [c["form"]["grant_type"] for c in server.token_calls]
    assert grants == [
        "client_credentials",
        "refresh_token",
        "client_credentials",
        "client_credentials",
    ]
    assert server.reused_refresh_tokens == []


def test_tokens_are_registered_with_the_redactor(oauth: tuple[OAuthServer, str]) -> None:
    server, url = oauth
    server.issue_refresh = True
    redactor = Redactor()
    auth = build_auth(source(url, cc_auth(url)), redactor=redactor)
    with client_for(auth, url) as client:
        client.get("/v1/data")
    token = server.api_calls[0]["token"]
    refresh = next(iter(server.refresh_tokens))
    assert redactor.text(f"t={token} r={refresh} s={CLIENT_SECRET}") == "t=*** r=*** s=***"
    # a second flow of the same credential (another source) learns the cached token too
    other = Redactor()
    auth2 = build_auth(source(url, cc_auth(url), name="other"), redactor=other)
    with client_for(auth2, url) as client:
        client.get("/v1/data")
    assert len(server.token_calls) == 1
    assert other.text(token) == "***"
    assert token not in repr(auth) and token not in repr(auth._cache.token)  # type: ignore[attr-defined]


# --- origins -------------------------------------------------------------------------------


def test_credentials_never_sent_to_a_foreign_origin(oauth: tuple[OAuthServer, str]) -> None:
    server, url = oauth
    echo = EchoServer()
    with serve(echo.app()) as foreign:
        auth = build_auth(source(url, cc_auth(url)), redactor=Redactor())
        assert auth.allowed_origins == {origin_of(url)}
        with client_for(auth, url) as client:
            assert client.get("/v1/data").status_code == 200
            # a next link pointing elsewhere, carrying an Authorization header of its own
            client.get(f"{foreign}/v1/next", headers={"Authorization": "Bearer leaked"})
    assert server.api_calls[0]["token"]
    assert len(echo.seen) == 1
    assert "authorization" not in echo.seen[0]["headers"]


def test_api_key_in_query_stripped_for_foreign_origin_and_redacted() -> None:
    echo_a, echo_b = EchoServer(), EchoServer()
    with serve(echo_a.app()) as a, serve(echo_b.app()) as b:
        redactor = Redactor()
        src = source(
            a, {"type": "api_key", "name": "api_key", "value": "k-123456789", "location": "query"}
        )
        auth = build_auth(src, redactor=redactor)
        with client_for(auth, a) as client:
            r1 = client.get("/v1/items", params={"page": 1})
            # a Link header on A echoing the key and pointing at B
            r2 = client.get(f"{b}/v1/items?api_key=k-123456789&page=2")
            # an echoed key on A is replaced, not duplicated
            client.get(f"{a}/v1/items?api_key=k-123456789&page=3")
    assert echo_a.seen[0]["query"] == {"api_key": "k-123456789", "page": "1"}
    assert echo_b.seen[0]["query"] == {"page": "2"}
    assert str(r2.request.url).count("api_key") == 0
    assert echo_a.seen[1]["query"] == {"api_key": "k-123456789", "page": "3"}
    shown = redactor.url(str(r1.request.url))
    assert "k-123456789" not in shown and "api_key=***" in shown and "page=1" in shown


@pytest.mark.parametrize(
    ("auth", "header", "expected"),
    [
        ({"type": "api_key", "name": "X-Key", "value": "kkkk1111"}, "x-key", "kkkk1111"),
        ({"type": "bearer", "token": "tok-abc-123"}, "authorization", "Bearer tok-abc-123"),
        (
            {"type": "basic", "username": "u", "password": "pw-123456"},
            "authorization",
            "Basic dTpwdy0xMjM0NTY=",
        ),
    ],
)
def test_static_credentials(auth: dict[str, Any], header: str, expected: str) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={})

    flow = build_auth(source("https://api.example.com", auth), redactor=Redactor())
    with httpx.Client(transport=httpx.MockTransport(handler), auth=flow) as client:
        client.get("https://api.example.com/v1/x")
        client.get("https://evil.example.com/v1/x")
        client.get("http://api.example.com/v1/x")  # another scheme is another origin
        client.get("https://api.example.com:8443/v1/x")  # and another port
    assert seen[0].headers[header] == expected
    assert all(header not in r.headers for r in seen[1:])
    assert "***" not in flow.label and expected not in flow.label


# --- api key rotation ----------------------------------------------------------------------


def rotation(values: list[str], clock: FakeClock) -> tuple[KeyRotationFlow, dict[str, Any]]:
    flow = build_auth(
        source("https://api.example.com", {"type": "api_key_rotation", "values": values}),
        redactor=Redactor(),
        clock=clock,
        sleep=clock.sleep,
    )
    assert isinstance(flow, KeyRotationFlow)
    return flow, {}


def test_key_rotation_prefers_most_remaining_and_parks_exhausted() -> None:
    clock = FakeClock()
    flow, _ = rotation(["k1", "k2", "k3"], clock)
    remaining = {"k1": 5, "k2": 50, "k3": 20}
    used: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        key = request.headers["x-api-key"]
        used.append(key)
        if key == "k2" and len(used) == 5:
            return httpx.Response(429, headers={"Retry-After": "30"})
        remaining[key] -= 1
        return httpx.Response(200, headers={"X-RateLimit-Remaining": str(remaining[key])})

    with httpx.Client(transport=httpx.MockTransport(handler), auth=flow) as client:
        for _ in range(3):
            client.get("https://api.example.com/v1/x")  # probes each unknown key once
        assert sorted(used) == ["k1", "k2", "k3"]
        client.get("https://api.example.com/v1/x")
        assert used[3] == "k2"  # the most remaining
        response = client.get("https://api.example.com/v1/x")  # k2 → 429 → resent with k3
        assert response.status_code == 200
        assert used[4:] == ["k2", "k3"]
        assert flow.parked() == [False, True, False]
        for _ in range(4):
            client.get("https://api.example.com/v1/x")
        assert "k2" not in used[6:]
        clock.advance(31)  # k2's reset passed: back, and its quota unknown again
        client.get("https://api.example.com/v1/x")
        assert used[-1] == "k2"
    assert clock.sleeps == []


def test_key_rotation_waits_for_the_earliest_reset_when_all_parked() -> None:
    clock = FakeClock()
    flow, _ = rotation(["k1", "k2"], clock)
    resets = {"k1": 40, "k2": 25}
    used: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        key = request.headers["x-api-key"]
        used.append(key)
        return httpx.Response(
            200, headers={"RateLimit-Remaining": "0", "RateLimit-Reset": str(resets[key])}
        )

    with httpx.Client(transport=httpx.MockTransport(handler), auth=flow) as client:
        client.get("https://api.example.com/v1/x")
        client.get("https://api.example.com/v1/x")
        assert flow.parked() == [True, True]
        client.get("https://api.example.com/v1/x")
    assert clock.sleeps == [25]
    assert used == ["k1", "k2", "k2"]


def test_key_rotation_429_with_every_key_parked_goes_back_to_the_caller() -> None:
    clock = FakeClock()
    flow, _ = rotation(["k1", "k2"], clock)
    used: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        used.append(request.headers["x-api-key"])
        return httpx.Response(429, headers={"Retry-After": "7"})

    with httpx.Client(transport=httpx.MockTransport(handler), auth=flow) as client:
        assert client.get("https://api.example.com/v1/x").status_code == 429
    assert sorted(used) == ["k1", "k2"]  # each key tried once, then the retry policy decides
    assert flow.per_credential_budget


# --- refresh token rotation and the credential store ---------------------------------------


def rt_source(url: str, refresh_token: str, **extra: Any) -> SourceConfig:
    return source(
        url,
        {
            "type": "oauth2_refresh_token",
            "token_url": f"{url}/oauth/token",
            "client_id": CLIENT_ID,
            "refresh_token": refresh_token,
            **extra,
        },
    )


def test_rotated_refresh_token_is_stored_0600_and_used_next(
    oauth: tuple[OAuthServer, str], tmp_path: Path
) -> None:
    server, url = oauth
    server.add_refresh_token("rt-initial-000")
    cred_dir = tmp_path / "credentials"
    redactor = Redactor()
    auth = build_auth(rt_source(url, "rt-initial-000"), redactor=redactor, credential_dir=cred_dir)
    assert isinstance(auth, RefreshTokenFlow)
    with client_for(auth, url) as client:
        assert client.get("/v1/data").status_code == 200
    key = credential_key(f"{url}/oauth/token", CLIENT_ID)
    files = [p for p in cred_dir.iterdir() if p.suffix == ".secret"]
    assert [p.stem for p in files] == [key]
    assert stat.S_IMODE(files[0].stat().st_mode) == 0o600
    assert stat.S_IMODE(cred_dir.stat().st_mode) == 0o700
    stored = json.loads(CredentialStore(cred_dir).get(key) or "")
    rotated = stored["refresh_token"]
    assert server.refresh_tokens[rotated] == "valid" and rotated != "rt-initial-000"
    assert redactor.text(rotated) == "***"

    # a new process (fresh cache) with the same initial token in its config uses the stored one
    clear_token_caches()
    auth2 = build_auth(
        rt_source(url, "rt-initial-000"), redactor=Redactor(), credential_dir=cred_dir
    )
    with client_for(auth2, url) as client:
        assert client.get("/v1/data").status_code == 200
    assert server.token_calls[-1]["form"]["refresh_token"] == rotated
    assert server.reused_refresh_tokens == []


def test_new_consent_in_config_wins_over_the_store(
    oauth: tuple[OAuthServer, str], tmp_path: Path
) -> None:
    server, url = oauth
    server.add_refresh_token("rt-first")
    build_auth(
        rt_source(url, "rt-first"), redactor=Redactor(), credential_dir=tmp_path
    ).access_token()  # type: ignore[attr-defined]
    clear_token_caches()
    server.add_refresh_token("rt-renewed")
    auth = build_auth(rt_source(url, "rt-renewed"), redactor=Redactor(), credential_dir=tmp_path)
    auth.access_token()  # type: ignore[attr-defined]
    assert server.token_calls[-1]["form"]["refresh_token"] == "rt-renewed"


def test_invalid_grant_says_consent_must_be_renewed(
    oauth: tuple[OAuthServer, str], tmp_path: Path
) -> None:
    _, url = oauth
    auth = build_auth(
        rt_source(url, "rt-revoked-123"), redactor=Redactor(), credential_dir=tmp_path
    )
    with client_for(auth, url) as client, pytest.raises(AuthError) as info:
        client.get("/v1/data")
    assert "consent must be renewed" in str(info.value)
    assert "rt-revoked-123" not in str(info.value)


def test_two_processes_never_spend_the_same_refresh_token(tmp_path: Path) -> None:
    # this process and one spawned child, each with its own token cache, share the store
    server = OAuthServer(token_delay=0.01)
    server.add_refresh_token("rt-shared-initial")
    ctx = multiprocessing.get_context("spawn")
    start, results = ctx.Barrier(2), ctx.Queue()
    rounds = 8
    with serve(server.app()) as url:
        args = (f"{url}/oauth/token", str(tmp_path), "rt-shared-initial", rounds, start, results)
        child = ctx.Process(target=refresh_worker, args=args)
        child.start()
        here = threading.Thread(target=refresh_worker, args=args)
        here.start()
        outcomes = [json.loads(results.get(timeout=120)) for _ in range(2)]
        here.join(30)
        child.join(30)
    assert [o["errors"] for o in outcomes] == [[], []]
    assert sum(o["done"] for o in outcomes) == 2 * rounds
    assert server.reused_refresh_tokens == []
    spent = [c["form"]["refresh_token"] for c in server.token_calls]
    assert len(spent) == 2 * rounds and len(set(spent)) == 2 * rounds
    key = credential_key(f"{url}/oauth/token", CLIENT_ID)
    latest = json.loads(CredentialStore(tmp_path).get(key) or "")["refresh_token"]
    assert server.refresh_tokens[latest] == "valid"


def test_credential_store_refuses_the_data_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("API_ASSETS_DATA_DIR", str(tmp_path / "data"))
    with pytest.raises(ValueError, match="data root"):
        CredentialStore(tmp_path / "data" / "credentials")
    store = CredentialStore(tmp_path / "home" / "credentials")
    store.put("abc", "v1")
    store.put("abc", "v2")
    assert store.get("abc") == "v2" and store.get("missing") is None
    assert [p.name for p in store.directory.iterdir() if p.suffix != ".lock"] == ["abc.secret"]
    with pytest.raises(ValueError):
        store.get("../escape")


# --- JWT -----------------------------------------------------------------------------------


def test_jwt_bearer_signed_and_resigned_before_exp_with_new_jti() -> None:
    clock = FakeClock(1_700_000_000.0)
    redactor = Redactor()
    src = source(
        "https://api.example.com",
        {
            "type": "jwt_bearer",
            "secret": "jwt-secret-0123456789-0123456789",
            "claims": {"iss": "me", "sub": "svc", "aud": "api"},
            "lifetime_seconds": 300,
            "refresh_margin_seconds": 30,
        },
    )
    flow = build_auth(src, redactor=redactor, clock=clock)
    assert isinstance(flow, JwtBearerFlow)
    sent: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request.headers["authorization"].removeprefix("Bearer "))
        return httpx.Response(200, json={})

    with httpx.Client(transport=httpx.MockTransport(handler), auth=flow) as client:
        client.get("https://api.example.com/x")
        clock.advance(260)  # 40 s before exp: same token
        client.get("https://api.example.com/x")
        clock.advance(15)  # 25 s before exp: re-signed
        client.get("https://api.example.com/x")
    assert sent[0] == sent[1] != sent[2]
    decode: dict[str, Any] = {
        "algorithms": ["HS256"],
        "audience": "api",
        "options": {"verify_exp": False},
    }
    first = jwt.decode(sent[0], "jwt-secret-0123456789-0123456789", **decode)
    second = jwt.decode(sent[2], "jwt-secret-0123456789-0123456789", **decode)
    assert first["iss"] == "me" and first["sub"] == "svc"
    assert first["iat"] == 1_700_000_000 and first["exp"] == 1_700_000_300
    assert second["iat"] == 1_700_000_275 and first["jti"] != second["jti"]
    assert redactor.text(sent[0]) == "***"


def test_jwt_assertion_grant_rs256(oauth: tuple[OAuthServer, str]) -> None:
    server, url = oauth
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    src = source(
        url,
        {
            "type": "jwt_bearer",
            "private_key": pem,
            "algorithm": "RS256",
            "claims": {"iss": "svc@example", "aud": f"{url}/oauth/token"},
            "token_url": f"{url}/oauth/token",
            "scopes": ["read"],
        },
    )
    auth = build_auth(src, redactor=Redactor())
    with client_for(auth, url) as client:
        assert client.get("/v1/data").status_code == 200
        assert client.get("/v1/data").status_code == 200
    assert len(server.token_calls) == 1
    form = server.token_calls[0]["form"]
    assert form["grant_type"] == JWT_BEARER_GRANT and form["scope"] == "read"
    claims = jwt.decode(
        form["assertion"], key.public_key(), algorithms=["RS256"], audience=f"{url}/oauth/token"
    )
    assert claims["iss"] == "svc@example" and claims["jti"]


def test_key_rotation_spreads_requests_in_flight() -> None:
    # no answers yet: each choice spends one of the chosen key's believed quota
    clock = FakeClock()
    flow, _ = rotation(["k1", "k2"], clock)
    flow.observe(0, httpx.Response(200, headers={"X-RateLimit-Remaining": "10"}))
    flow.observe(1, httpx.Response(200, headers={"X-RateLimit-Remaining": "8"}))
    picks = [flow.choose() for _ in range(6)]
    assert picks == [0, 0, 1, 0, 1, 0]  # 10, 9, then 8:8 a tie → the least recently used
    assert flow.remaining() == [6, 6]


# --- over real HTTP against the demo API -------------------------------------------------


def demo_source(demo: DemoServer, auth: dict[str, Any]) -> SourceConfig:
    return source(demo.url, auth, name="demo")


def test_demo_client_credentials_one_token_for_many_threads_and_401_refresh(
    demo_api: DemoServer,
) -> None:
    creds = DEMO_CREDENTIALS
    auth = build_auth(
        demo_source(
            demo_api,
            {
                "type": "oauth2_client_credentials",
                "token_url": f"{demo_api.url}/oauth/token",
                "client_id": creds["client_id"],
                "client_secret": creds["client_secret"],
            },
        ),
        redactor=Redactor(),
    )
    with client_for(auth, demo_api.url) as client:
        barrier = threading.Barrier(8)
        statuses: list[int] = []

        def worker() -> None:
            barrier.wait()
            statuses.append(client.get("/v1/categories").status_code)

        threads = [threading.Thread(target=worker) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert statuses == [200] * 8
        assert len(demo_api.requests("/oauth/token")) == 1
        demo_api.revoke(access_tokens=True)
        demo_api.clear_requests()
        assert client.get("/v1/categories").status_code == 200
    log = [(e["path"], e["status"]) for e in demo_api.requests()]
    assert log == [("/v1/categories", 401), ("/oauth/token", 200), ("/v1/categories", 200)]


def test_demo_refresh_token_rotation_is_persisted_and_reused(
    demo_api: DemoServer, tmp_path: Path
) -> None:
    first = demo_api.consent()
    auth_config = {
        "type": "oauth2_refresh_token",
        "token_url": f"{demo_api.url}/oauth/token",
        "client_id": DEMO_CREDENTIALS["client_id"],
        "client_secret": DEMO_CREDENTIALS["client_secret"],
        "refresh_token": first,
    }
    for _ in range(3):  # three "processes" in a row, each with a fresh token cache
        clear_token_caches()
        auth = build_auth(
            demo_source(demo_api, auth_config), redactor=Redactor(), credential_dir=tmp_path
        )
        with client_for(auth, demo_api.url) as client:
            assert client.get("/v1/categories").status_code == 200
    token_calls = demo_api.requests("/oauth/token")
    assert [e["status"] for e in token_calls] == [200, 200, 200]  # never a spent token


def test_demo_key_rotation_avoids_429(demo_api_factory: Any) -> None:
    demo = demo_api_factory(rate_limit_rps=0.2, rate_limit_burst=3)
    clock = FakeClock()
    auth = build_auth(
        demo_source(demo, {"type": "api_key_rotation", "values": DEMO_CREDENTIALS["api_keys"]}),
        redactor=Redactor(),
        clock=clock,
        sleep=clock.sleep,
    )
    with client_for(auth, demo.url) as client:
        statuses = [client.get("/v1/categories").status_code for _ in range(9)]
    assert statuses == [200] * 9  # one key alone would have had a 429 at the 4th request
    used = [e["credential"] for e in demo.requests("/v1/categories")]
    assert set(used) == {"api_key#1", "api_key#2", "api_key#3"}
    assert all(e["status"] == 200 for e in demo.requests("/v1/categories"))


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")  # the demo's key
def test_demo_jwt_bearer(demo_api: DemoServer) -> None:
    auth = build_auth(
        demo_source(
            demo_api,
            {
                "type": "jwt_bearer",
                "secret": DEMO_CREDENTIALS["jwt_secret"],
                "claims": {"sub": "me"},
            },
        ),
        redactor=Redactor(),
    )
    with client_for(auth, demo_api.url) as client:
        assert client.get("/v1/categories").status_code == 200
    assert [e["credential"] for e in demo_api.requests("/v1/categories")] == ["jwt"]
