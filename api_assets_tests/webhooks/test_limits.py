"""The receiver's limits (`webhooks/limits.py`) over real sockets, against `api-assets webhooks
serve` in its own process: slow and greedy clients are cut off by deadlines, a connection limit
and a budget of buffered bytes, and good deliveries go on being answered meanwhile.

What is asserted is what happened (statuses, what landed, what the receiver says it holds); the
clock only appears as generous "did not hang" guards, and the measured latencies are printed.
"""

import contextlib
import os
import select
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from api_assets.storage.layout import DataLayout

from .conftest import free_port, landed_ids, wait_healthy
from .schemes import WEBHOOKS, signed

ROOT = Path(__file__).resolve().parents[2]
SOURCES = """\
sources:
  - name: gh
    base_url: http://127.0.0.1:9
    webhooks:
      scheme: github
      secret: ${TEST_GH_WEBHOOK_SECRET}
      max_body_bytes: 4096
"""
GUARD = 30.0  # seconds: "did not hang", never a performance claim
TICK = 0.2  # seconds between two trickled bytes


@dataclass
class Served:
    proc: "subprocess.Popen[bytes]"
    url: str
    port: int

    def health(self) -> dict:
        return httpx.get(f"{self.url}/healthz", timeout=GUARD).json()

    def deliver(self, event_id: str) -> tuple[httpx.Response, float]:
        """One good, signed delivery on a connection of its own, and how long it took."""
        body, headers = signed("gh", event_id)
        started = time.monotonic()
        response = httpx.post(
            f"{self.url}/webhooks/gh", content=body, headers=headers, timeout=GUARD
        )
        return response, time.monotonic() - started


@contextlib.contextmanager
def serve(tmp_path: Path, layout: DataLayout, *options: str) -> Iterator[Served]:
    """`api-assets webhooks serve` with `options`, its log in a file (a pipe nobody reads could
    fill up and stall it)."""
    sources = tmp_path / "sources.yaml"
    sources.write_text(SOURCES)
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "API_ASSETS_DATA_DIR": str(layout.root),
        "TEST_GH_WEBHOOK_SECRET": WEBHOOKS["gh"]["secret"],
    }
    cmd = [sys.executable, "-m", "api_assets.cli", "webhooks", "serve", "--port", str(port)]
    with open(tmp_path / "receiver.log", "wb") as log:
        proc = subprocess.Popen(
            [*cmd, "--sources", str(sources), *options], env=env, stdout=log, stderr=log
        )
        try:
            url = f"http://127.0.0.1:{port}"
            wait_healthy(url, proc)
            yield Served(proc, url, port)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=GUARD)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# --- slow clients ----------------------------------------------------------------------------


def _request_head(content_length: int) -> bytes:
    _, headers = signed("gh", "slow")
    lines = [f"{k}: {v}" for k, v in headers.items() if k.lower() != "content-length"]
    return (
        "POST /webhooks/gh HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        + "".join(f"{line}\r\n" for line in lines)
        + f"Content-Length: {content_length}\r\n\r\n"
    ).encode()


class Trickler:
    """Sends the next byte of each socket's remaining data every `TICK`, in a thread, until
    the data runs out, the socket breaks, or `stop()`."""

    def __init__(self) -> None:
        self.pending: list[tuple[socket.socket, bytes]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def add(self, sock: socket.socket, data: bytes) -> None:
        self.pending.append((sock, data))

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=GUARD)

    def _run(self) -> None:
        while not self._stop.wait(TICK):
            still = []
            for sock, data in self.pending:
                try:
                    sock.send(data[:1])
                except OSError:
                    continue  # closed by the receiver: done
                if data[1:]:
                    still.append((sock, data[1:]))
            self.pending = still


def _connect(port: int, first: bytes = b"") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=GUARD)
    if first:
        sock.sendall(first)
    return sock


def _still_waiting(sock: socket.socket) -> bool:
    """Whether the receiver has neither answered nor closed `sock` yet (nothing to read: no
    answer, no end of file, no reset)."""
    readable, _, _ = select.select([sock], [], [], 0)
    return not readable


def _ending(sock: socket.socket, deadline: float) -> bytes | None:
    """What the receiver sent on `sock` before closing it, or None when still open at
    `deadline`. A reset counts as closed (a server that closes with unread bytes resets)."""
    received = b""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            return None
        except OSError:
            return received
        if not chunk:
            return received
        received += chunk


def _status(ending: bytes) -> int | None:
    """The status of the answer that `ending` starts with; None for a bare close."""
    if not ending.startswith(b"HTTP/1.1 "):
        return None
    return int(ending[9:12])


def _wait_until(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + GUARD
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {GUARD} s")
        time.sleep(0.02)


# --- the tests -------------------------------------------------------------------------------


def test_good_deliveries_are_answered_while_hundreds_of_slow_connections_hang_on(
    layout: DataLayout, tmp_path: Path
) -> None:
    deadline_s = 8  # header and body deadlines: far longer than the good deliveries take
    options = ["--header-timeout", str(deadline_s), "--body-timeout", str(deadline_s)]
    with serve(tmp_path, layout, *options) as served:
        trickler = Trickler()
        # 100 that never send a byte, 100 that trickle their headers, 100 that send their
        # headers (a 4000-byte body announced) and trickle the body a byte per tick
        silent = [_connect(served.port) for _ in range(100)]
        slow_headers = []
        for _ in range(100):
            sock = _connect(served.port, b"POST /webhooks/gh HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            trickler.add(sock, b"X-Slow: " + b"y" * 4000)
            slow_headers.append(sock)
        slow_bodies = []
        for _ in range(100):
            sock = _connect(served.port, _request_head(4000) + b"{" * 10)
            trickler.add(sock, b" " * 3990)
            slow_bodies.append(sock)
        trickler.start()
        slow = silent + slow_headers + slow_bodies
        try:
            # every slow body is inside the app, holding its first bytes
            _wait_until(lambda: served.health()["buffered_bytes"] >= 1000, "slow bodies held")

            latencies = []
            for i in range(20):
                response, took = served.deliver(f"good-{i}")
                assert response.status_code == 200, response.text
                assert response.json()["status"] == "stored"
                latencies.append(took)
            waiting = [_still_waiting(s) for s in slow]
            held = served.health()["buffered_bytes"]
            print(
                f"\n20 good deliveries beside {len(slow)} slow connections: median "
                f"{statistics.median(latencies) * 1000:.1f} ms, max {max(latencies) * 1000:.1f} ms "
                f"({', '.join(f'{t * 1000:.0f}' for t in latencies)} ms)"
            )
            assert all(waiting), f"{waiting.count(False)} slow connections already ended"
            assert held >= 1000  # the slow bodies are still being received
            assert max(latencies) < 5.0  # a loose "did not starve" guard; the target is < 1 s

            # then every slow connection is cut off by its deadline: 408, or closed
            guard = time.monotonic() + deadline_s + GUARD
            endings = {
                "silent": [_ending(s, guard) for s in silent],
                "slow headers": [_ending(s, guard) for s in slow_headers],
                "slow bodies": [_ending(s, guard) for s in slow_bodies],
            }
        finally:
            trickler.stop()
            for s in slow:
                s.close()
        for kind, ends in endings.items():
            still_open = sum(e is None for e in ends)
            assert still_open == 0, f"{still_open} {kind} connections were never cut off"
            statuses = {_status(e) for e in ends if e is not None}
            print(f"{kind}: {sorted(statuses, key=str)} ({sum(bool(e) for e in ends)} answered)")
            assert statuses <= {408, None}, (kind, statuses)
        assert sorted(landed_ids(layout, "gh")) == sorted(f"good-{i}" for i in range(20))
        assert served.health()["buffered_bytes"] == 0
        assert served.deliver("after")[0].json()["status"] == "stored"


def test_headers_over_the_cap_are_refused_without_waiting_for_their_end(
    layout: DataLayout, tmp_path: Path
) -> None:
    with serve(tmp_path, layout, "--header-timeout", "600") as served:
        sock = _connect(served.port, b"POST /webhooks/gh HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        try:
            with contextlib.suppress(OSError):  # the receiver may close while we send
                sock.sendall(b"X-Padding: " + b"p" * 100_000)
            ending = _ending(sock, time.monotonic() + GUARD)
        finally:
            sock.close()
        assert ending is not None, "a connection sending endless headers was never cut off"
        assert _status(ending) in (431, None)
        assert served.deliver("after")[0].status_code == 200


def test_connections_over_the_limit_are_answered_503_at_once(
    layout: DataLayout, tmp_path: Path
) -> None:
    options = ["--max-connections", "50", "--header-timeout", "3"]
    with serve(tmp_path, layout, *options) as served:
        idle = [_connect(served.port) for _ in range(60)]
        try:
            refused, took = served.deliver("over-the-limit")
            print(f"\n503 over the connection limit after {took * 1000:.1f} ms")
            assert refused.status_code == 503
            assert all(_still_waiting(s) for s in idle)
            assert took < 5.0  # "at once": a loose guard
            # the header deadline frees the places the idle connections held
            guard = time.monotonic() + GUARD
            assert all(_ending(s, guard) is not None for s in idle)
        finally:
            for s in idle:
                s.close()
        response, _ = served.deliver("over-the-limit")
        assert response.status_code == 200 and response.json()["status"] == "stored"
        assert landed_ids(layout, "gh") == ["over-the-limit"]


def test_a_body_that_would_overflow_the_buffer_budget_is_503_at_once(
    layout: DataLayout, tmp_path: Path
) -> None:
    options = ["--max-buffered-bytes", "16384", "--body-timeout", "5"]
    with serve(tmp_path, layout, *options) as served:
        # four uploads of 4096 bytes stall after 4090: 16,360 of the 16,384 bytes are held
        greedy = [_connect(served.port, _request_head(4096) + b" " * 4090) for _ in range(4)]
        try:
            _wait_until(lambda: served.health()["buffered_bytes"] == 4 * 4090, "bodies held")
            refused, took = served.deliver("no-room")
            print(f"\n503 for want of buffer room after {took * 1000:.1f} ms")
            assert refused.status_code == 503 and refused.headers["Retry-After"] == "1"
            assert all(_still_waiting(s) for s in greedy)
            assert took < 5.0  # "at once": a loose guard
            guard = time.monotonic() + GUARD
            endings = [_ending(s, guard) for s in greedy]
        finally:
            for s in greedy:
                s.close()
        assert all(e is not None and _status(e) in (408, None) for e in endings), endings
        assert served.health()["buffered_bytes"] == 0
        response, _ = served.deliver("no-room")
        assert response.status_code == 200 and response.json()["status"] == "stored"
        assert landed_ids(layout, "gh") == ["no-room"]


@pytest.mark.parametrize(
    ("options", "said"),
    [
        (["--header-timeout", "0"], "header_timeout_seconds must be positive"),
        (["--max-connections", "-1"], "max_connections must be positive"),
        (["--max-buffered-bytes", "4095"], "max_body_bytes 4096"),
    ],
)
def test_the_serve_command_refuses_limits_that_cannot_work(
    tmp_path: Path, options: list[str], said: str
) -> None:
    sources = tmp_path / "sources.yaml"
    sources.write_text(SOURCES)
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "API_ASSETS_DATA_DIR": str(tmp_path / "data"),
        "TEST_GH_WEBHOOK_SECRET": WEBHOOKS["gh"]["secret"],
    }
    cmd = [sys.executable, "-m", "api_assets.cli", "webhooks", "serve", "--sources", str(sources)]
    done = subprocess.run(
        [*cmd, *options], env=env, capture_output=True, text=True, timeout=GUARD * 2
    )
    assert done.returncode == 2, done.stderr
    assert said in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "data").exists()
