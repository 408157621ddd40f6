"""Fixtures for the webhook tests: a data root, what landed, and a real receiver on 127.0.0.1
(uvicorn in a thread, or a subprocess for the crash and shutdown tests)."""

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn

from api_assets.config.models import SourceConfig
from api_assets.storage.layout import DataLayout
from api_assets.webhooks.landing import LandedEvent, LandingReader
from api_assets.webhooks.receiver import create_app

from .schemes import all_sources


def landed(layout: DataLayout, name: str) -> list[LandedEvent]:
    return [e for e, _ in LandingReader(layout, name).iter_from(None)]


def landed_ids(layout: DataLayout, name: str) -> list[str]:
    return [e["event_id"] for e in landed(layout, name)]


@pytest.fixture
def layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> DataLayout:
    root = tmp_path / "data"
    monkeypatch.setenv("API_ASSETS_DATA_DIR", str(root))
    return DataLayout(root)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Receiver:
    """A receiver served by uvicorn in a thread of this process."""

    url: str
    server: uvicorn.Server
    thread: threading.Thread

    def post(self, name: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
        return httpx.post(f"{self.url}/webhooks/{name}", content=body, headers=headers)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        assert not self.thread.is_alive()


def start_receiver(layout: DataLayout, sources: list[SourceConfig] | None = None) -> Receiver:
    port = free_port()
    config = uvicorn.Config(
        create_app(sources if sources is not None else all_sources(), layout),
        host="127.0.0.1",
        port=port,
        access_log=False,
        log_level="warning",
        lifespan="on",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the receiver did not start")
        time.sleep(0.01)
    return Receiver(f"http://127.0.0.1:{port}", server, thread)


@pytest.fixture
def receiver(layout: DataLayout) -> Iterator[Receiver]:
    r = start_receiver(layout)
    yield r
    r.stop()


# --- a receiver in its own process (for kill -9 and SIGTERM) ---------------------------------

SERVE_SCRIPT = """
import os, sys, time, uvicorn
from pathlib import Path
from api_assets.webhooks import landing
gate = os.environ.get("TEST_FSYNC_GATE")
if gate:  # keep requests in flight (no batch is durable) until the test creates this file
    real = os.fdatasync
    def gated(fd):
        while not os.path.exists(gate):
            time.sleep(0.01)
        real(fd)
    landing.os.fdatasync = gated
from api_assets.storage.layout import DataLayout
from api_assets.webhooks.receiver import create_app
from api_assets_tests.webhooks.schemes import all_sources
uvicorn.run(create_app(all_sources(), DataLayout(Path(sys.argv[1]))), host="127.0.0.1",
            port=int(sys.argv[2]), access_log=False, log_level="warning",
            timeout_graceful_shutdown=30)
"""


def spawn_receiver(
    layout: DataLayout, fsync_gate: Path | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    """A receiver in a process of its own. With `fsync_gate`, no batch is made durable (so no
    request is answered) until that file exists."""
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
        "TEST_FSYNC_GATE": str(fsync_gate or ""),
    }
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVE_SCRIPT, str(layout.root), str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    wait_healthy(url, proc)
    return proc, url


def wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"receiver exited: {proc.stderr.read().decode() if proc.stderr else ''}"
            )
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("the receiver subprocess did not become healthy")
