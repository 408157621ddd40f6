"""The webhook sender signs in each scheme (verified by the project's own `verify`) and retries."""

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from api_assets.demo_api import DemoServer
from api_assets.demo_api.server import bind_socket, uvicorn_server
from api_assets.demo_api.webhook_sender import send_events, webhooks_config
from api_assets.errors import WebhookError
from api_assets.webhooks.signing import verify

SECRETS = {
    "github": "gh-secret-for-the-sender-tests",
    "stripe": "whsec_stripe_plain",
    "standard": "whsec_c2VjcmV0LWtleS1mb3ItdGVzdHM=",
    "hmac": "hmac-secret-for-the-sender-tests",
}


class Receiver:
    """POST /hook/<scheme>: verifies, records event ids, fails the first `fail_first` calls."""

    def __init__(self) -> None:
        self.received: list[tuple[str, str, str | None]] = []
        self.calls = 0
        self.fail_first = 0
        self.app = Starlette(routes=[Route("/hook/{scheme}", self.hook, methods=["POST"])])

    async def hook(self, request: Request) -> JSONResponse:
        self.calls += 1
        if self.calls <= self.fail_first:
            return JSONResponse({"error": "busy"}, 503)
        scheme = request.path_params["scheme"]
        config = webhooks_config(scheme, SECRETS[scheme])
        try:
            event = verify(config, dict(request.headers), await request.body(), now=time.time())
        except WebhookError as e:
            return JSONResponse({"error": str(e)}, e.status)
        self.received.append((scheme, event.event_id, event.event_type))
        return JSONResponse({"ok": True})


@pytest.fixture(scope="module")
def receiver() -> Iterator[tuple[Receiver, str]]:
    rec = Receiver()
    sock = bind_socket()
    server = uvicorn_server(rec.app)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    yield rec, f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    thread.join(10)


@pytest.fixture
def fresh(receiver: tuple[Receiver, str]) -> tuple[Receiver, str]:
    rec, url = receiver
    rec.received.clear()
    rec.calls = 0
    rec.fail_first = 0
    return rec, url


def events(n: int) -> list[dict[str, Any]]:
    return [
        {"id": f"evt_t{i}", "type": "order.updated", "created": 1, "data": {"n": i}}
        for i in range(n)
    ]


@pytest.mark.parametrize("scheme", sorted(SECRETS))
def test_each_scheme_verifies(fresh: tuple[Receiver, str], scheme: str) -> None:
    rec, url = fresh
    results = send_events(f"{url}/hook/{scheme}", scheme, SECRETS[scheme], events(3))
    assert [(r.ok, r.status, r.attempts) for r in results] == [(True, 200, 1)] * 3
    assert rec.received == [(scheme, f"evt_t{i}", "order.updated") for i in range(3)]


def test_retries_until_2xx(fresh: tuple[Receiver, str]) -> None:
    rec, url = fresh
    rec.fail_first = 2
    [result] = send_events(
        f"{url}/hook/github", "github", SECRETS["github"], events(1), backoff=0.01
    )
    assert result.ok and result.attempts == 3 and rec.calls == 3


def test_gives_up_after_retries(fresh: tuple[Receiver, str]) -> None:
    rec, url = fresh
    rec.fail_first = 10
    [result] = send_events(
        f"{url}/hook/github", "github", SECRETS["github"], events(1), retries=2, backoff=0.01
    )
    assert not result.ok and result.status == 503 and result.attempts == 3


def test_transport_error_is_reported() -> None:
    sock = bind_socket()
    port = sock.getsockname()[1]
    sock.close()
    [result] = send_events(
        f"http://127.0.0.1:{port}/hook",
        "github",
        SECRETS["github"],
        events(1),
        retries=1,
        backoff=0.01,
    )
    assert not result.ok and result.status is None and result.error and result.attempts == 2


def test_admin_send_with_duplicates_and_tamper(
    fresh: tuple[Receiver, str], demo_api: DemoServer
) -> None:
    rec, url = fresh
    results = demo_api.send_webhooks(
        f"{url}/hook/stripe", "stripe", SECRETS["stripe"], count=3, duplicates=1
    )
    assert [r["ok"] for r in results] == [True] * 4
    assert results[3]["event_id"] == results[0]["event_id"]
    assert {t for _, _, t in rec.received} <= {
        "order.updated",
        "customer.updated",
        "product.updated",
    }
    tampered = demo_api.send_webhooks(
        f"{url}/hook/standard", "standard", SECRETS["standard"], count=1, tamper=True
    )
    assert tampered[0]["status"] == 401 and tampered[0]["attempts"] == 1
    with pytest.raises(ValueError):
        demo_api.send_webhooks(f"{url}/hook/x", "carrier-pigeon", "s")
    assert (
        httpx.post(f"{demo_api.url}/admin/webhooks/send", json={"scheme": "github"}).status_code
        == 400
    )
