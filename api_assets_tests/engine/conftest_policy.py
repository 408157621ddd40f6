"""Helpers for the policy tests (auth, rate limit, retry, redaction), imported explicitly.

- `FakeClock`: a clock whose `sleep` records the wait and advances time instead of waiting.
- `serve(app)`: a Starlette app on 127.0.0.1:<free port> in a uvicorn thread.
- `OAuthServer`: a tiny token endpoint + protected API that counts what it sees.
- `EchoServer`: records every request (to prove what reached a foreign origin).
- worker functions for the multiprocessing tests (importable under `spawn`).
"""

import base64
import contextlib
import json
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

CLIENT_ID = "policy-client"
CLIENT_SECRET = "s3cr3t-client-value-0123"


class FakeClock:
    """`clock()` returns `t`; `sleep(d)` records `d` and advances `t` by it."""

    def __init__(self, t: float = 1_000.0):
        self.t = t
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self.t += max(0.0, seconds)

    def advance(self, seconds: float) -> None:
        self.t += seconds


@contextlib.contextmanager
def serve(app: Any) -> Iterator[str]:
    """Run `app` on 127.0.0.1 in a thread; yield its base URL."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="error", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("test server did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def _basic(header: str | None) -> tuple[str, str] | None:
    if not header or not header.startswith("Basic "):
        return None
    user, _, password = base64.b64decode(header[6:]).decode().partition(":")
    return user, password


@dataclass
class OAuthServer:
    """A token endpoint (`/oauth/token`) and an API (`/v1/data`) that accepts its tokens.

    Knobs: `expires_in` (number, string, or None to omit it), `issue_refresh` (hand out
    refresh tokens), `fail_token_with` (statuses answered before the real answer),
    `api_always_401`, `token_delay` (seconds, widens races), `refresh_tokens` (valid ones).
    """

    expires_in: Any = 3600
    issue_refresh: bool = False
    fail_token_with: list[int] = field(default_factory=list)
    api_always_401: bool = False
    token_delay: float = 0.0
    client_secret: str = CLIENT_SECRET
    token_calls: list[dict[str, Any]] = field(default_factory=list)
    api_calls: list[dict[str, Any]] = field(default_factory=list)
    valid_tokens: set[str] = field(default_factory=set)
    refresh_tokens: dict[str, str] = field(default_factory=dict)  # token -> "valid" | "used"
    reused_refresh_tokens: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/oauth/token", self._token, methods=["POST"]),
                Route("/v1/data", self._data, methods=["GET", "POST"]),
            ]
        )

    def revoke_all(self) -> None:
        with self.lock:
            self.valid_tokens.clear()

    def add_refresh_token(self, token: str) -> None:
        with self.lock:
            self.refresh_tokens[token] = "valid"

    async def _token(self, request: Request) -> Response:
        form = dict(parse_qsl((await request.body()).decode()))
        basic = _basic(request.headers.get("authorization"))
        if self.token_delay:
            time.sleep(self.token_delay)  # blocks the server loop: serialises, widens races
        with self.lock:
            self.token_calls.append({"form": form, "basic": basic})
            if self.fail_token_with:
                return JSONResponse(
                    {"error": "temporarily_unavailable"},
                    status_code=self.fail_token_with.pop(0),
                    headers={"Retry-After": "0"},
                )
            grant = form.get("grant_type")
            client_id, secret = basic or (form.get("client_id"), form.get("client_secret"))
            if grant == "client_credentials" and (
                client_id != CLIENT_ID or secret != self.client_secret
            ):
                return JSONResponse(
                    {
                        "error": "invalid_client",
                        "error_description": "Client authentication failed",
                    },
                    status_code=401,
                )
            if grant == "refresh_token":
                rt = form.get("refresh_token", "")
                state = self.refresh_tokens.get(rt)
                if state != "valid":
                    if state == "used":
                        self.reused_refresh_tokens.append(rt)
                    return JSONResponse(
                        {
                            "error": "invalid_grant",
                            "error_description": "refresh token is not valid",
                        },
                        status_code=400,
                    )
                self.refresh_tokens[rt] = "used"
            elif grant not in ("client_credentials", "urn:ietf:params:oauth:grant-type:jwt-bearer"):
                return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
            access = "at-" + secrets.token_hex(12)
            self.valid_tokens.add(access)
            body: dict[str, Any] = {"access_token": access, "token_type": "bearer"}
            if self.expires_in is not None:
                body["expires_in"] = self.expires_in
            if self.issue_refresh or grant == "refresh_token":
                rt_new = "rt-" + secrets.token_hex(12)
                self.refresh_tokens[rt_new] = "valid"
                body["refresh_token"] = rt_new
            return JSONResponse(body)

    async def _data(self, request: Request) -> Response:
        auth = request.headers.get("authorization", "")
        token = auth[7:] if auth.startswith("Bearer ") else None
        with self.lock:
            self.api_calls.append({"token": token, "query": dict(request.query_params)})
            ok = token in self.valid_tokens and not self.api_always_401
        if not ok:
            return JSONResponse({"error": "invalid_token"}, status_code=401)
        return JSONResponse({"data": [{"id": 1}]})


@dataclass
class EchoServer:
    """Answers 200 to anything and records the headers and query it received."""

    seen: list[dict[str, Any]] = field(default_factory=list)

    def app(self) -> Starlette:
        async def echo(request: Request) -> Response:
            self.seen.append(
                {
                    "path": request.url.path,
                    "headers": {k.lower(): v for k, v in request.headers.items()},
                    "query": dict(request.query_params),
                }
            )
            return JSONResponse({"data": []})

        return Starlette(routes=[Route("/{path:path}", echo, methods=["GET", "POST"])])


# --- multiprocessing workers (top-level so that `spawn` can import them) --------------------


def refresh_worker(
    token_url: str,
    credential_dir: str,
    initial_refresh_token: str,
    rounds: int,
    start: Any,
    results: Any,
) -> None:
    """Force `rounds` refreshes through a refresh-token flow sharing `credential_dir`."""
    from api_assets.config.models import SourceConfig
    from api_assets.http.auth import build_auth
    from api_assets.http.redact import Redactor

    source = SourceConfig.model_validate(
        {
            "name": "rt",
            "base_url": token_url.rsplit("/oauth", 1)[0],
            "auth": {
                "type": "oauth2_refresh_token",
                "token_url": token_url,
                "client_id": CLIENT_ID,
                "refresh_token": initial_refresh_token,
            },
        }
    )
    auth = build_auth(source, redactor=Redactor(), credential_dir=Path(credential_dir))
    start.wait(60)  # a Barrier: every worker is ready, so they really run at the same time
    errors: list[str] = []
    done = 0
    for _ in range(rounds):
        try:
            auth.access_token(force_refresh=True)  # type: ignore[attr-defined]
            done += 1
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
    results.put(json.dumps({"done": done, "errors": errors}))


def limiter_worker(shared_path: str, n: int, start: Any, results: Any) -> None:
    """`n` acquires on a shared limiter whose clock is frozen at 0: each wait is then exactly
    the start time the shared bucket granted."""
    from api_assets.http.ratelimit import RateLimiter

    limiter = RateLimiter(
        10.0, 3, 4, shared_path=Path(shared_path), clock=lambda: 0.0, sleep=lambda s: None
    )
    start.wait(60)  # a Barrier: every worker is ready, so they really run at the same time
    waits = []
    for _ in range(n):
        with limiter.acquire() as waited:
            waits.append(waited)
    results.put(json.dumps(waits))
