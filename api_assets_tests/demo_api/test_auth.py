"""Server-side auth: every accepted credential, refusals, token expiry and refresh rotation."""

import time
from collections.abc import Callable
from datetime import UTC, datetime

import httpx
import jwt
import pytest
import time_machine

from api_assets.demo_api import DEMO_CREDENTIALS, DemoServer

pytestmark = pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")

C = DEMO_CREDENTIALS
INVALID = 'Bearer error="invalid_token"'


def token(server: DemoServer, **form: str) -> httpx.Response:
    return httpx.post(f"{server.url}/oauth/token", data=form)


def client_credentials(server: DemoServer) -> dict[str, str]:
    r = httpx.post(
        f"{server.url}/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(C["client_id"], C["client_secret"]),
    )
    assert r.status_code == 200, r.text
    return dict(r.json())


def get(server: DemoServer, **kwargs: object) -> httpx.Response:
    return httpx.get(f"{server.url}/v1/categories", **kwargs)  # type: ignore[arg-type]


def signed_jwt(exp_in: float, secret: str = C["jwt_secret"]) -> str:
    return jwt.encode({"sub": "svc", "exp": int(time.time() + exp_in)}, secret, algorithm="HS256")


@pytest.mark.parametrize(
    ("kwargs", "label"),
    [
        ({"headers": {"X-API-Key": "demo-key-1"}}, "api_key#1"),
        ({"headers": {"X-API-Key": "demo-key-3"}}, "api_key#3"),
        ({"params": {"api_key": "demo-key-2"}}, "api_key#2"),
        ({"headers": {"Authorization": "Bearer demo-token"}}, "bearer:static"),
        ({"auth": ("demo", "demo-password")}, "basic:demo"),
    ],
)
def test_static_credentials_accepted_and_labelled(
    demo_api: DemoServer, kwargs: dict[str, object], label: str
) -> None:
    assert get(demo_api, **kwargs).status_code == 200
    entry = demo_api.requests()[-1]
    assert entry["credential"] == label and entry["status"] == 200
    assert "demo-key" not in str(entry) and "demo-password" not in str(entry)


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"headers": {"X-API-Key": "nope"}},
        {"params": {"api_key": "nope"}},
        {"headers": {"Authorization": "Bearer nope"}},
        {"headers": {"Authorization": "Bearer a.b.c"}},
        {"auth": ("demo", "wrong")},
        {"headers": {"Authorization": "Digest x"}},
    ],
)
def test_wrong_credentials_refused(demo_api: DemoServer, kwargs: dict[str, object]) -> None:
    r = get(demo_api, **kwargs)
    assert r.status_code == 401 and r.headers["WWW-Authenticate"] == INVALID
    assert demo_api.requests()[-1]["credential"] == "none"


def test_health_needs_no_credential(demo_api: DemoServer) -> None:
    assert httpx.get(f"{demo_api.url}/v1/health").json() == {"status": "ok"}


def test_client_credentials_basic_and_post(demo_api: DemoServer) -> None:
    body = client_credentials(demo_api)
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600
    assert body["refresh_token"] and body["scope"]
    r = get(demo_api, headers={"Authorization": f"Bearer {body['access_token']}"})
    assert r.status_code == 200 and demo_api.requests()[-1]["credential"] == "oauth:demo-client"
    post = token(
        demo_api,
        grant_type="client_credentials",
        client_id=C["client_id"],
        client_secret=C["client_secret"],
        scope="read write",
    )
    assert post.status_code == 200 and post.json()["scope"] == "read write"


@pytest.mark.parametrize(
    "how",
    [
        {"auth": ("demo-client", "wrong")},
        {"auth": ("someone", "demo-secret")},
        {"data": {"client_id": "demo-client", "client_secret": "wrong"}},
        {"data": {}},
    ],
)
def test_wrong_client_is_invalid_client(demo_api: DemoServer, how: dict[str, object]) -> None:
    data = {"grant_type": "client_credentials", **how.get("data", {})}  # type: ignore[dict-item]
    r = httpx.post(f"{demo_api.url}/oauth/token", data=data, auth=how.get("auth"))  # type: ignore[arg-type]
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"


def test_bad_grant_requests(demo_api: DemoServer) -> None:
    assert token(demo_api).json()["error"] == "invalid_request"
    assert token(demo_api, grant_type="password").json()["error"] == "unsupported_grant_type"
    assert token(demo_api, grant_type="refresh_token").status_code == 400
    r = token(demo_api, grant_type="refresh_token", refresh_token="rt_unknown")
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"


def test_access_token_expires(demo_api_factory: Callable[..., DemoServer]) -> None:
    # the clock stopped and moved by hand (time-machine: the server's thread reads it too), so
    # the token's age is what the test says, not how long the requests took
    with time_machine.travel(datetime(2026, 3, 15, 12, 0, tzinfo=UTC), tick=False) as clock:
        server = demo_api_factory(token_lifetime=2.0)
        body = client_credentials(server)
        assert body["expires_in"] == 2
        headers = {"Authorization": f"Bearer {body['access_token']}"}
        assert get(server, headers=headers).status_code == 200
        clock.shift(1.9)
        assert get(server, headers=headers).status_code == 200
        clock.shift(0.2)
        r = get(server, headers=headers)
    assert r.status_code == 401 and r.headers["WWW-Authenticate"] == INVALID
    # the refresh token still works after the access token expired
    fresh = token(
        server,
        grant_type="refresh_token",
        refresh_token=body["refresh_token"],
        client_id=C["client_id"],
        client_secret=C["client_secret"],
    )
    assert fresh.status_code == 200
    assert (
        get(server, headers={"Authorization": f"Bearer {fresh.json()['access_token']}"}).status_code
        == 200
    )


def test_refresh_rotation_rejects_reuse(demo_api: DemoServer) -> None:
    first = demo_api.consent("demo-client")
    r1 = token(demo_api, grant_type="refresh_token", refresh_token=first, client_id="demo-client")
    assert r1.status_code == 200
    second = r1.json()["refresh_token"]
    assert second != first
    again = token(
        demo_api, grant_type="refresh_token", refresh_token=first, client_id="demo-client"
    )
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    r2 = httpx.post(
        f"{demo_api.url}/oauth/token",
        auth=(C["client_id"], C["client_secret"]),
        data={"grant_type": "refresh_token", "refresh_token": second},
    )
    assert r2.status_code == 200 and r2.json()["refresh_token"] not in (first, second)
    assert (
        get(demo_api, headers={"Authorization": f"Bearer {r2.json()['access_token']}"}).status_code
        == 200
    )
    wrong_client = httpx.post(
        f"{demo_api.url}/oauth/token",
        auth=("demo-client", "bad"),
        data={"grant_type": "refresh_token", "refresh_token": r2.json()["refresh_token"]},
    )
    assert wrong_client.status_code == 401


def test_jwt_bearer_token_verified(demo_api: DemoServer) -> None:
    good = signed_jwt(60)
    assert get(demo_api, headers={"Authorization": f"Bearer {good}"}).status_code == 200
    assert demo_api.requests()[-1]["credential"] == "jwt"
    for bad in (
        signed_jwt(-5),
        signed_jwt(60, secret="other-secret"),
        jwt.encode({"sub": "x"}, C["jwt_secret"], algorithm="HS256"),
    ):
        assert get(demo_api, headers={"Authorization": f"Bearer {bad}"}).status_code == 401


def test_jwt_bearer_assertion_grant(demo_api: DemoServer) -> None:
    grant = "urn:ietf:params:oauth:grant-type:jwt-bearer"
    r = token(demo_api, grant_type=grant, assertion=signed_jwt(60))
    assert r.status_code == 200 and r.json()["token_type"] == "Bearer"
    assert (
        get(demo_api, headers={"Authorization": f"Bearer {r.json()['access_token']}"}).status_code
        == 200
    )
    assert demo_api.requests()[-1]["credential"] == "oauth:svc"
    bad = token(demo_api, grant_type=grant, assertion=signed_jwt(-5))
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_grant"


def test_revoke(demo_api: DemoServer) -> None:
    access = client_credentials(demo_api)["access_token"]
    demo_api.revoke(api_key="demo-key-1", access_tokens=True)
    assert get(demo_api, headers={"X-API-Key": "demo-key-1"}).status_code == 401
    assert get(demo_api, headers={"X-API-Key": "demo-key-2"}).status_code == 200
    assert get(demo_api, headers={"Authorization": f"Bearer {access}"}).status_code == 401
    demo_api.reset()
    assert get(demo_api, headers={"X-API-Key": "demo-key-1"}).status_code == 200
