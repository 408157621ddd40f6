"""The receiver over real HTTP on 127.0.0.1: statuses, durability, dedup, crashes, shutdown."""

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from api_assets.storage.layout import DataLayout
from api_assets.webhooks.signing import sign_headers

from .conftest import (
    Receiver,
    free_port,
    landed,
    landed_ids,
    spawn_receiver,
    start_receiver,
    wait_healthy,
)
from .schemes import SECRETS, TIMESTAMPED, WEBHOOKS, signed, webhooks_config

SCHEMES = list(WEBHOOKS)


@pytest.mark.parametrize("name", SCHEMES)
def test_a_valid_event_is_stored_once_and_a_replay_is_a_duplicate(
    receiver: Receiver, layout: DataLayout, name: str
) -> None:
    body, headers = signed(name, "evt-1")
    first = receiver.post(name, body, headers)
    assert first.status_code == 200, first.text
    assert first.json()["status"] == "stored"
    [event] = landed(layout, name)
    assert event["event_id"] == "evt-1"
    assert event["event_type"] == "thing.created"
    assert json.loads(event["payload"]) == json.loads(body)
    replay = receiver.post(name, body, headers)
    assert replay.status_code == 200 and replay.json()["status"] == "duplicate"
    assert landed_ids(layout, name) == ["evt-1"]


@pytest.mark.parametrize("name", SCHEMES)
def test_a_forged_signature_is_401_and_nothing_is_stored(
    receiver: Receiver, layout: DataLayout, name: str
) -> None:
    body, headers = signed(name, "evt-1")
    forged = body.replace(b"thing.created", b"thing.deleted")
    response = receiver.post(name, forged, headers)
    assert response.status_code == 401
    assert not any(s in response.text for s in SECRETS)
    assert landed_ids(layout, name) == []


@pytest.mark.parametrize("name", SCHEMES)
def test_missing_signature_headers_are_401(
    receiver: Receiver, layout: DataLayout, name: str
) -> None:
    body, _ = signed(name, "evt-1")
    response = receiver.post(name, body, {"Content-Type": "application/json"})
    assert response.status_code == 401
    assert landed_ids(layout, name) == []


@pytest.mark.parametrize("name", TIMESTAMPED)
def test_a_stale_timestamp_is_401(receiver: Receiver, layout: DataLayout, name: str) -> None:
    body, headers = signed(name, "evt-1", timestamp=int(time.time()) - 301)
    response = receiver.post(name, body, headers)
    assert response.status_code == 401 and "tolerance" in response.json()["error"]
    assert landed_ids(layout, name) == []


@pytest.mark.parametrize("name", SCHEMES)
def test_a_signed_body_that_is_not_json_is_400(
    receiver: Receiver, layout: DataLayout, name: str
) -> None:
    body = b"<xml>not json</xml>"
    headers = sign_headers(webhooks_config(name), body, event_id="x1", timestamp=int(time.time()))
    assert receiver.post(name, body, headers).status_code == 400
    assert landed_ids(layout, name) == []


@pytest.mark.parametrize("name", SCHEMES)
def test_an_oversized_body_is_413(receiver: Receiver, layout: DataLayout, name: str) -> None:
    body, headers = signed(name, "big", blob="x" * 5000)  # the limit here is 4096 bytes
    assert receiver.post(name, body, headers).status_code == 413
    assert landed_ids(layout, name) == []


def _raw(receiver: Receiver) -> socket.socket:
    """A raw connection to the receiver: for requests no HTTP client would send."""
    url = httpx.URL(receiver.url)
    return socket.create_connection((url.host, url.port or 80), timeout=10)


def _head(name: str, headers: dict[str, str]) -> bytes:
    lines = [f"POST /webhooks/{name} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (a socket timeout, i.e. a
    server that neither answers nor closes, fails the test)."""
    out = b""
    while data := sock.recv(65536):
        out += data
    return out


def _one_response(sock: socket.socket) -> bytes:
    """One response with a Content-Length, read whole (the connection may stay open)."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536) or b"<closed>"
        assert not data.endswith(b"<closed>"), data
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        more = sock.recv(65536)
        assert more, data + body
        body += more
    return head + b"\r\n\r\n" + body


def _statuses(answer: bytes) -> list[int]:
    """The status codes of the HTTP/1.1 responses in `answer`, in order."""
    return [int(line.split()[1]) for line in answer.split(b"\r\n") if line.startswith(b"HTTP/1.1 ")]


def test_an_oversized_chunked_body_is_413_without_reading_it_all(
    receiver: Receiver, layout: DataLayout
) -> None:
    """Chunks just past the 4096-byte limit and then nothing, never the last chunk: the receiver
    must answer 413 and close on its own, not wait for (or read) the rest of the body."""
    body, headers = signed("gh", "big", blob="x" * 5000)
    with _raw(receiver) as sock:
        sock.sendall(_head("gh", {**headers, "Transfer-Encoding": "chunked"}))
        for i in range(0, 4096 + 512, 512):
            chunk = body[i : i + 512]
            sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        answer = _until_closed(sock)
    assert _statuses(answer) == [413], answer
    assert b"connection: close" in answer.lower()
    assert landed_ids(layout, "gh") == []


@pytest.mark.parametrize("lie", ["shorter", "longer"])
def test_a_lying_content_length_is_caught(receiver: Receiver, layout: DataLayout, lie: str) -> None:
    """`shorter`: a Content-Length of 100 (under the 4096-byte limit) on a 5 KB body: the
    receiver takes the 100 bytes it was promised as the body, whose signature fails (401), and
    the rest as a malformed next request (400, and the connection closed). `longer`: 1000 bytes
    promised, a whole signed event sent, then the client stops: the receiver never takes the
    event for the body and closes without an answer (no one is left to read one)."""
    if lie == "shorter":
        body, headers = signed("gh", "big", blob="x" * 5000)
        with _raw(receiver) as sock:
            # the promised part first, so that its answer comes before the rest is parsed
            sock.sendall(_head("gh", {**headers, "Content-Length": "100"}) + body[:100])
            first = _one_response(sock)
            sock.sendall(body[100:])
            rest = _until_closed(sock)
        assert _statuses(first) == [401], first
        assert b"does not match the body" in first
        assert _statuses(rest) == [400], rest
        assert b"connection: close" in rest.lower()
    else:
        body, headers = signed("gh", "short")
        with _raw(receiver) as sock:
            sock.sendall(_head("gh", {**headers, "Content-Length": str(len(body) + 1000)}) + body)
            sock.shutdown(socket.SHUT_WR)  # nothing more comes
            assert _until_closed(sock) == b""
    assert landed_ids(layout, "gh") == []
    # the receiver is still there for honest clients
    body, headers = signed("gh", "after")
    assert receiver.post("gh", body, headers).status_code == 200
    assert landed_ids(layout, "gh") == ["after"]


@pytest.mark.parametrize("path", ["/webhooks/nope", "/webhooks/plain"])
def test_unknown_source_or_source_without_webhooks_is_404(receiver: Receiver, path: str) -> None:
    body, headers = signed("gh", "e")
    assert httpx.post(receiver.url + path, content=body, headers=headers).status_code == 404


def test_dedup_holds_after_a_restart(layout: DataLayout) -> None:
    first = start_receiver(layout)
    body, headers = signed("st", "evt-r")
    assert first.post("st", body, headers).json()["status"] == "stored"
    first.stop()
    second = start_receiver(layout)
    try:
        assert second.post("st", body, headers).json()["status"] == "duplicate"
    finally:
        second.stop()
    assert landed_ids(layout, "st") == ["evt-r"]


def test_twenty_concurrent_clients_store_each_event_exactly_once(
    receiver: Receiver, layout: DataLayout
) -> None:
    statuses: dict[str, list[str]] = {}
    lock = threading.Lock()

    def client(k: int) -> None:
        with httpx.Client(base_url=receiver.url) as http:
            for i in range(25):
                # clients k and k+1 share ids, so every id also arrives twice, concurrently
                event_id = f"c{(k + i % 2) % 20}-{i}"
                body, headers = signed("sw", event_id)
                r = http.post("/webhooks/sw", content=body, headers=headers)
                assert r.status_code == 200
                with lock:
                    statuses.setdefault(event_id, []).append(r.json()["status"])

    threads = [threading.Thread(target=client, args=(k,)) for k in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ids = landed_ids(layout, "sw")
    assert len(ids) == len(set(ids)) == len(statuses)
    assert all(s.count("stored") == 1 for s in statuses.values())


def _load(url: str, prefix: str, acked: list[str], stop: threading.Event) -> None:
    with httpx.Client(base_url=url, timeout=10) as http:
        i = 0
        while not stop.is_set():
            event_id = f"{prefix}-{i}"
            i += 1
            body, headers = signed("hm", event_id)
            try:
                r = http.post("/webhooks/hm", content=body, headers=headers)
            except httpx.TransportError:
                return
            if r.status_code == 200:
                acked.append(event_id)


def _run_load(url: str, clients: int) -> tuple[list[str], list[threading.Thread], threading.Event]:
    acked: list[str] = []
    stop = threading.Event()
    threads = [
        threading.Thread(target=_load, args=(url, f"k{k}", acked, stop)) for k in range(clients)
    ]
    for t in threads:
        t.start()
    return acked, threads, stop


def test_kill_9_under_load_loses_no_acknowledged_event(layout: DataLayout) -> None:
    proc, url = spawn_receiver(layout)
    acked, threads, stop = _run_load(url, 10)
    try:
        deadline = time.monotonic() + 30
        while len(acked) < 300 and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=15)
    assert len(acked) >= 300
    on_disk = landed_ids(layout, "hm")
    assert len(on_disk) == len(set(on_disk))
    assert set(acked) <= set(on_disk)
    # the landing restarts cleanly after the crash and still deduplicates
    proc, url = spawn_receiver(layout)
    try:
        body, headers = signed("hm", acked[0])
        assert (
            httpx.post(f"{url}/webhooks/hm", content=body, headers=headers).json()["status"]
            == "duplicate"
        )
        body, headers = signed("hm", "after-crash")
        assert (
            httpx.post(f"{url}/webhooks/hm", content=body, headers=headers).json()["status"]
            == "stored"
        )
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert "after-crash" in landed_ids(layout, "hm")


def test_sigterm_drains_in_flight_requests(layout: DataLayout, tmp_path: Path) -> None:
    # No fsync completes until the gate file exists, so the requests below are all in flight
    # when SIGTERM arrives, however slowly the machine runs.
    gate = tmp_path / "fsync-gate"
    proc, url = spawn_receiver(layout, fsync_gate=gate)
    answers: dict[str, int] = {}
    sent = threading.Semaphore(0)
    port = int(url.rsplit(":", 1)[1])

    def one(event_id: str) -> None:
        body, headers = signed("hm", event_id)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("POST", "/webhooks/hm", body=body, headers=headers)
        sent.release()
        answers[event_id] = conn.getresponse().status
        conn.close()

    threads = [threading.Thread(target=one, args=(f"t{i}",)) for i in range(10)]
    for t in threads:
        t.start()
    for _ in threads:
        assert sent.acquire(timeout=30)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # until the receiver holds all ten
        landing = httpx.get(f"{url}/healthz").json()["landing"]["hm"]
        if landing["in_flight"] >= 10:
            break
        time.sleep(0.01)
    assert (landing["in_flight"], landing["stored"]) == (10, 0)  # all in flight, none answered
    proc.send_signal(signal.SIGTERM)
    # shutting down, the receiver stops accepting connections; only then may the fsync go on
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{url}/healthz", timeout=1)
        except httpx.TransportError:
            break
        time.sleep(0.01)
    else:
        raise AssertionError("the receiver kept accepting connections after SIGTERM")
    assert proc.poll() is None  # still draining: the ten requests wait on the fsync
    gate.touch()
    for t in threads:
        t.join(timeout=30)
    # uvicorn re-raises the signal once its graceful shutdown is done
    assert proc.wait(timeout=30) in (0, -signal.SIGTERM)
    assert answers == {f"t{i}": 200 for i in range(10)}
    assert sorted(landed_ids(layout, "hm")) == sorted(answers)


def test_health_lists_the_webhook_sources(receiver: Receiver) -> None:
    health = httpx.get(f"{receiver.url}/healthz").json()
    assert health["sources"] == sorted(WEBHOOKS)


def test_the_serve_command_runs_the_receiver_from_a_sources_file(
    layout: DataLayout, tmp_path: Path
) -> None:
    sources = tmp_path / "sources.yaml"
    sources.write_text(
        "sources:\n"
        "  - name: gh\n"
        "    base_url: http://127.0.0.1:9\n"
        "    webhooks:\n"
        "      scheme: github\n"
        "      secret: ${TEST_GH_WEBHOOK_SECRET}\n"
        "  - name: plain\n"
        "    base_url: http://127.0.0.1:9\n"
    )
    port = free_port()
    env = {**os.environ, "TEST_GH_WEBHOOK_SECRET": WEBHOOKS["gh"]["secret"]}
    cmd = [sys.executable, "-m", "api_assets.cli", "webhooks", "serve", "--port", str(port)]
    proc = subprocess.Popen(
        [*cmd, "--sources", str(sources)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc)
        body, headers = signed("gh", "cli-1")
        response = httpx.post(f"{url}/webhooks/gh", content=body, headers=headers)
        assert response.json() == {"status": "stored", "event_id": "cli-1"}
        assert httpx.post(f"{url}/webhooks/plain", content=body, headers=headers).status_code == 404
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert landed_ids(layout, "gh") == ["cli-1"]
    assert WEBHOOKS["gh"]["secret"].encode() not in out + err
    assert not any(
        WEBHOOKS["gh"]["secret"].encode() in p.read_bytes()
        for p in layout.root.rglob("*")
        if p.is_file()
    )


def test_the_serve_command_refuses_a_file_without_webhooks(tmp_path: Path) -> None:
    sources = tmp_path / "sources.yaml"
    sources.write_text("sources:\n  - name: plain\n    base_url: http://127.0.0.1:9\n")
    cmd = [sys.executable, "-m", "api_assets.cli", "webhooks", "serve", "--sources", str(sources)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "webhooks:" in done.stderr


def test_the_serve_command_reports_sources_mistakes_without_a_traceback(tmp_path: Path) -> None:
    sources = tmp_path / "sources.yaml"
    sources.write_text(
        "sources:\n  - name: gh\n    base_url: http://127.0.0.1:9\n    webhooks: {scheme: nope, secret: x}\n"
    )
    cmd = [sys.executable, "-m", "api_assets.cli", "webhooks", "serve", "--sources", str(sources)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "webhooks.scheme" in done.stderr and "Traceback" not in done.stderr


def test_a_landing_that_cannot_write_answers_503(
    receiver: Receiver, layout: DataLayout, monkeypatch: pytest.MonkeyPatch
) -> None:
    from api_assets.webhooks import landing as landing_module

    def broken(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(landing_module.os, "fdatasync", broken)
    body, headers = signed("gh", "full-1")
    response = receiver.post("gh", body, headers)
    assert response.status_code == 503 and "restart" in response.json()["error"]
    monkeypatch.undo()  # the disk is back: this landing stays refused until a restart
    assert receiver.post("gh", *signed("gh", "full-2")).status_code == 503
    health = httpx.get(f"{receiver.url}/healthz")
    assert health.status_code == 503 and health.json()["failed"] == ["gh"]
    assert receiver.post("st", *signed("st", "other")).status_code == 200  # other sources go on
