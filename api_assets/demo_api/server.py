"""Running the demo API: `DemoServer` (background thread or child process) and the CLI.

`DemoServer(config)` binds 127.0.0.1 on a free port itself, so the URL is known before the
server runs and no other process can take the port in between. By default uvicorn serves from a
background thread of the calling process; `process=True` serves from a child process instead,
which keeps the server off the caller's GIL (benchmarks). Either way the admin helpers
(`set_faults`, `truth`, `requests`, `mutate`, ...) go through the admin HTTP routes, so all state
changes happen on the server's own event loop.

`DemoServer(..., ssl_certfile=, ssl_keyfile=)` serves HTTPS instead (thread mode), and with
`ssl_ca_certs=` and `ssl_cert_reqs=ssl.CERT_REQUIRED` asks every client for a certificate signed
by that CA (mutual TLS); `admin_ssl` is then the SSL context the admin helpers connect with.

`main(args)` is `api-assets demo-api`: it serves in the foreground until SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from dataclasses import asdict, replace
from typing import TYPE_CHECKING, Any

import uvicorn

from api_assets.demo_api import DemoConfig
from api_assets.demo_api.app import DemoApp, fault_specs

if TYPE_CHECKING:
    import httpx

STARTUP_TIMEOUT = 60.0


def bind_socket(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A listening TCP socket on host:port (port 0: a free one)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def uvicorn_server(app: Any, *, quiet: bool = True, **tls: Any) -> uvicorn.Server:
    """A uvicorn server for `app`; `tls` are uvicorn's `ssl_*` options (HTTPS when given)."""
    config = uvicorn.Config(
        app,
        log_config=None,  # leave the host process's logging alone
        log_level="warning" if quiet else "info",
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=1,
        timeout_keep_alive=30,
        backlog=2048,
        **tls,
    )
    return uvicorn.Server(config)


class DemoServer:
    """A running demo API on 127.0.0.1 (a context manager; `start()`/`stop()` also work)."""

    def __init__(
        self,
        config: DemoConfig | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        process: bool = False,
        ssl_certfile: str | None = None,
        ssl_keyfile: str | None = None,
        ssl_ca_certs: str | None = None,
        ssl_cert_reqs: int = ssl.CERT_NONE,
        admin_ssl: ssl.SSLContext | None = None,
        **overrides: Any,
    ):
        config = config or DemoConfig()
        self.config = replace(config, **overrides) if overrides else config
        self.host, self.port, self.process = host, port, process
        self.tls: dict[str, Any] = {}
        if ssl_certfile is not None:
            if process:
                raise ValueError("the demo API serves HTTPS in thread mode only")
            self.tls = {
                "ssl_certfile": ssl_certfile,
                "ssl_keyfile": ssl_keyfile,
                "ssl_ca_certs": ssl_ca_certs,
                "ssl_cert_reqs": ssl_cert_reqs,
            }
        self._admin_ssl = admin_ssl
        self.url = ""
        self.app: DemoApp | None = None  # thread mode only: the live app, for inspection
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._child: subprocess.Popen[bytes] | None = None
        self._client: httpx.Client | None = None  # for the admin helpers

    # --- lifecycle ------------------------------------------------------------------------

    def __enter__(self) -> DemoServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> DemoServer:
        import httpx  # here, not at import: `api-assets demo-api` never needs it

        sock = bind_socket(self.host, self.port)
        self.port = sock.getsockname()[1]
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.url = f"{'https' if self.tls else 'http'}://{host}:{self.port}"
        try:
            if self.process:
                self._start_child(sock)
            else:
                self._start_thread(sock)
        except BaseException:
            sock.close()
            self.stop()
            raise
        # the admin helpers trust the server they started (its certificate is the caller's)
        verify: ssl.SSLContext | bool = self._admin_ssl or not self.tls
        self._client = httpx.Client(base_url=self.url, timeout=60.0, verify=verify)
        return self

    def _start_thread(self, sock: socket.socket) -> None:
        self.app = DemoApp(self.config)
        self._server = uvicorn_server(self.app, **self.tls)
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [sock]},
            name=f"demo-api:{self.port}",
            daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the demo API thread stopped during start-up")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the demo API did not start within {STARTUP_TIMEOUT:.0f} s")
            time.sleep(0.005)

    def _start_child(self, sock: socket.socket) -> None:
        import httpx

        fd = sock.fileno()
        code = "from api_assets.demo_api.server import child_main; child_main()"
        self._child = subprocess.Popen(
            [
                sys.executable,
                "-c",
                code,
                "--fd",
                str(fd),
                "--config",
                json.dumps(asdict(self.config)),
            ],
            pass_fds=(fd,),
        )
        sock.close()  # the child has its own copy
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            if self._child.poll() is not None:
                raise RuntimeError(f"the demo API process exited with {self._child.returncode}")
            try:
                if httpx.get(f"{self.url}/v1/health", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the demo API did not start within {STARTUP_TIMEOUT:.0f} s")
            time.sleep(0.05)

    def stop(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=15)
        self._server = self._thread = None
        if self._child is not None:
            if self._child.poll() is None:
                self._child.send_signal(signal.SIGTERM)
                try:
                    self._child.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    self._child.kill()
                    self._child.wait()
            self._child = None

    # --- admin helpers (each one is an admin HTTP route) ----------------------------------

    def _admin(self, method: str, path: str, **kwargs: Any) -> Any:
        if self._client is None:
            raise RuntimeError(
                "the demo server is not running: use `with DemoServer(...)` or start()"
            )
        response = self._client.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise ValueError(f"{method} {path} → {response.status_code}: {response.text}")
        return response.json()

    def set_faults(
        self, profile: str, path: str | None = None, *, add: bool = False, **options: Any
    ) -> list[dict[str, Any]]:
        """Put a fault profile in force (replacing the others unless `add`); see faults.py."""
        body = {"profile": profile, **({"path": path} if path else {}), "add": add, **options}
        result: list[dict[str, Any]] = self._admin("POST", "/admin/faults", json=body)["faults"]
        return result

    def faults(self) -> list[dict[str, Any]]:
        """The faults in force, with how many requests each has seen and fired on."""
        result: list[dict[str, Any]] = self._admin("GET", "/admin/faults")["faults"]
        return result

    def clear_faults(self) -> None:
        self._admin("DELETE", "/admin/faults")

    def truth(self, collection: str, **params: Any) -> dict[str, Any]:
        """`{"ids", "versions", "count"}` of live records (orders add `tombstones` and
        `updated_at`); `params` filter as the endpoints do (`status`, `updated_since`,
        `since`, `until`). JSON object keys are strings."""
        result: dict[str, Any] = self._admin("GET", f"/admin/truth/{collection}", params=params)
        return result

    def requests(self, path: str | None = None) -> list[dict[str, Any]]:
        """The request log (oldest first), optionally only paths starting with `path`."""
        result: list[dict[str, Any]] = self._admin(
            "GET", "/admin/requests", params={"path": path} if path else None
        )
        return result

    def clear_requests(self) -> None:
        self._admin("DELETE", "/admin/requests")

    def mutate(
        self, collection: str, inserts: int = 0, updates: int = 0, deletes: int = 0, **ids: Any
    ) -> dict[str, list[Any]]:
        """Change a collection; returns `{"inserted", "updated", "deleted"}` ids. `update_ids`
        and `delete_ids` pick the records instead of the seeded mutation RNG."""
        body = {
            "collection": collection,
            "inserts": inserts,
            "updates": updates,
            "deletes": deletes,
            **ids,
        }
        result: dict[str, list[Any]] = self._admin("POST", "/admin/mutate", json=body)
        return result

    def reset(self, seed: int | None = None) -> None:
        """Back to the freshly seeded state (start faults, empty log, no tokens issued)."""
        self._admin("POST", "/admin/reset", json={} if seed is None else {"seed": seed})

    def consent(self, client_id: str = "demo-client", scope: str = "read") -> str:
        """A first refresh token for `client_id` (what an authorization-code consent gives)."""
        token: str = self._admin(
            "POST", "/admin/consent", json={"client_id": client_id, "scope": scope}
        )["refresh_token"]
        return token

    def revoke(self, *, api_key: str | None = None, access_tokens: bool = False) -> None:
        """Stop accepting an API key, or all access tokens issued so far."""
        self._admin(
            "POST", "/admin/revoke", json={"api_key": api_key, "access_tokens": access_tokens}
        )

    def send_webhooks(
        self, url: str, scheme: str, secret: str, count: int = 1, **options: Any
    ) -> list[dict[str, Any]]:
        """Have the server sign and POST `count` events to `url` (POST /admin/webhooks/send)."""
        body = {"url": url, "scheme": scheme, "secret": secret, "count": count, **options}
        result: list[dict[str, Any]] = self._admin("POST", "/admin/webhooks/send", json=body)[
            "results"
        ]
        return result


# --- the command line --------------------------------------------------------------------


def _serve_forever(app: DemoApp, sock: socket.socket, *, quiet: bool) -> None:
    """Serve on `sock` in this (main) thread until SIGINT or SIGTERM."""
    server = uvicorn_server(app, quiet=quiet)

    def stop(signum: int, frame: object) -> None:
        server.should_exit = True

    # uvicorn swaps in its own handlers while serving and re-raises the signals it caught once
    # it is done; these handlers then absorb them, so a signal ends the command with exit 0.
    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.run(sockets=[sock])
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def main(args: argparse.Namespace) -> int:
    """`api-assets demo-api`: serve the demo API until SIGINT/SIGTERM; prints the URL."""
    try:
        config = DemoConfig(
            seed=getattr(args, "seed", 42),
            faults=getattr(args, "faults", None),
            token_lifetime=getattr(args, "token_lifetime", 3600.0),
            rate_limit_rps=getattr(args, "rate_limit", 0.0) or 0.0,
            latency_ms=getattr(args, "latency_ms", 0.0) or 0.0,
        )
        fault_specs(config.faults)  # a mistake in --faults fails before any work
    except ValueError as e:  # FaultError included
        print(f"api-assets demo-api: {e}", file=sys.stderr)
        return 2
    host, port = getattr(args, "host", "127.0.0.1"), getattr(args, "port", 8765)
    try:
        sock = bind_socket(host, port)
    except OSError as e:
        print(f"api-assets demo-api: cannot listen on {host}:{port}: {e}", file=sys.stderr)
        return 1
    app = DemoApp(config)
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{sock.getsockname()[1]}"
    print(
        f"demo API serving on {url} (seed {config.seed}"
        f"{', faults ' + str(config.faults) if config.faults else ''}); "
        f"try: curl -H 'X-API-Key: demo-key-1' {url}/v1/products?limit=2",
        flush=True,
    )
    _serve_forever(app, sock, quiet=False)
    print("demo API stopped", flush=True)
    return 0


def child_main() -> None:
    """The child process of `DemoServer(process=True)`: serve on an inherited socket."""
    p = argparse.ArgumentParser()
    p.add_argument("--fd", type=int, required=True)
    p.add_argument("--config", required=True)
    ns = p.parse_args()
    config = DemoConfig(**json.loads(ns.config))
    sock = socket.socket(fileno=ns.fd)
    app = DemoApp(config)
    _serve_forever(app, sock, quiet=True)
    os._exit(0)
