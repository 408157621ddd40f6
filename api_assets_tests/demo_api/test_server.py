"""The runners: `api-assets demo-api` in the foreground, DemoServer in a child process,
and `latency_ms`."""

import argparse
import signal
import subprocess
import sys
import time
from collections.abc import Callable

import httpx
import pytest

from api_assets.demo_api import DemoConfig, DemoServer
from api_assets.demo_api.server import main


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_cli_serves_until_signalled(sig: signal.Signals) -> None:
    cmd = [
        sys.executable,
        "-m",
        "api_assets.cli",
        "demo-api",
        "--port",
        "0",
        "--seed",
        "5",
        "--faults",
        "5xx_burst:count=1",
        "--rate-limit",
        "50",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        url = line.split(" on ", 1)[1].split()[0]
        assert url.startswith("http://127.0.0.1:")
        headers = {"X-API-Key": "demo-key-1"}
        deadline = time.monotonic() + 30
        while True:
            try:
                first = httpx.get(f"{url}/v1/products", headers=headers)
                break
            except httpx.ConnectError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        assert first.status_code == 503  # the start fault
        second = httpx.get(f"{url}/v1/products", headers=headers)
        assert second.status_code == 200 and second.headers["X-RateLimit-Limit"] == "50"
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "Traceback" not in err


def test_cli_rejects_an_unknown_fault(capsys: pytest.CaptureFixture[str]) -> None:
    args = argparse.Namespace(
        host="127.0.0.1",
        port=0,
        seed=1,
        faults="meteor",
        token_lifetime=3600.0,
        rate_limit=0.0,
        latency_ms=0.0,
    )
    assert main(args) == 2
    assert "unknown fault profile 'meteor'" in capsys.readouterr().err


def test_cli_reports_a_busy_port(capsys: pytest.CaptureFixture[str]) -> None:
    with DemoServer(DemoConfig.small()) as running:
        args = argparse.Namespace(
            host="127.0.0.1",
            port=running.port,
            seed=1,
            faults=None,
            token_lifetime=3600.0,
            rate_limit=0.0,
            latency_ms=0.0,
        )
        assert main(args) == 1
    assert "cannot listen" in capsys.readouterr().err


def test_process_mode(demo_api_factory: Callable[..., DemoServer]) -> None:
    server = demo_api_factory(process=True, seed=11, now="2026-11-28T12:00:00Z")
    with DemoServer(DemoConfig.small(seed=11, now="2026-11-28T12:00:00Z")) as twin:
        assert server.truth("orders") == twin.truth("orders")
        headers = {"X-API-Key": "demo-key-1"}
        a = httpx.get(f"{server.url}/v1/orders?limit=20", headers=headers).content
        b = httpx.get(f"{twin.url}/v1/orders?limit=20", headers=headers).content
        assert a == b
    server.set_faults("5xx_burst", count=1)
    assert httpx.get(f"{server.url}/v1/orders", headers=headers).status_code == 503
    assert server.requests()[-1]["status"] == 503


def test_latency(demo_api_factory: Callable[..., DemoServer]) -> None:
    server = demo_api_factory(latency_ms=400)
    with httpx.Client(base_url=server.url, headers={"X-API-Key": "demo-key-1"}) as client:
        # lower bounds only: the server sleeps first, and a loaded machine only adds to that.
        # uvloop's timers count whole milliseconds and may end a sleep up to 1 ms early.
        started = time.monotonic()
        assert client.get("/v1/categories").status_code == 200
        assert time.monotonic() - started >= 0.399
        [logged] = server.requests("/v1/categories")
        assert logged["duration_ms"] >= 399  # the server counts its sleep in the request


def test_no_latency_outside_the_data_routes(demo_api_factory: Callable[..., DemoServer]) -> None:
    # an hour per data request: the health check answering at all shows it waited none of it,
    # and a data request that does not answer at once shows the latency is on
    server = demo_api_factory(latency_ms=3_600_000)
    timeout = httpx.Timeout(60.0, read=0.3)
    with httpx.Client(base_url=server.url, headers={"X-API-Key": "demo-key-1"}) as client:
        with pytest.raises(httpx.ReadTimeout):
            client.get("/v1/categories", timeout=timeout)
        assert client.get("/v1/health", timeout=60.0).json() == {"status": "ok"}


def test_stop_is_idempotent_and_port_is_freed() -> None:
    server = DemoServer(DemoConfig.small()).start()
    url = server.url
    server.stop()
    server.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/v1/health", timeout=2)
