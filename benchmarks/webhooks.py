"""Webhook receiver throughput: signed events accepted per second, fsync on, 20 clients.

Starts the receiver (uvicorn + `create_app`, `standard` scheme) in its own process, drives it
with concurrent keep-alive clients on 127.0.0.1 for a fixed time, then checks the landing: every
event answered `stored` is on disk exactly once. Prints accepted events/s, the ratio to the
1,000/s target, and the ratio to a baseline measured in the same run: the same receiver with
group commit off (`max_batch=1`, one fsync per event).

    .venv/bin/python benchmarks/webhooks.py [--seconds 10] [--clients 20] [--no-baseline] [--dir D]
"""

import argparse
import asyncio
import base64
import json
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_PER_SECOND = 1000.0
SOURCE = "bench"


def _source_config(secret: str):  # type: ignore[no-untyped-def]
    from pydantic import SecretStr

    from api_assets.config.models import SourceConfig, WebhooksConfig

    return SourceConfig(
        name=SOURCE,
        base_url="http://127.0.0.1:9",
        webhooks=WebhooksConfig(scheme="standard", secret=SecretStr(secret)),
    )


def serve(root: str, port: int, max_batch: int) -> None:
    """The receiver process (the secret comes from the environment, never argv or disk)."""
    import uvicorn

    from api_assets.storage.layout import DataLayout
    from api_assets.webhooks.receiver import create_app

    app = create_app(
        [_source_config(os.environ["BENCH_WEBHOOK_SECRET"])],
        DataLayout(Path(root)),
        max_batch=max_batch,
    )
    uvicorn.run(app, host="127.0.0.1", port=port, access_log=False, log_level="warning")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _client(
    port: int, secret: str, k: int, deadline: float, stored: list[str], latencies: list[float]
) -> int:
    from api_assets.webhooks.signing import sign_headers

    config = _source_config(secret).webhooks
    assert config is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    errors = 0
    i = 0
    while time.monotonic() < deadline:
        event_id = f"c{k}-{i}"
        i += 1
        body = json.dumps({"type": "order.paid", "data": {"id": event_id, "amount": i}}).encode()
        headers = sign_headers(config, body, event_id=event_id, timestamp=int(time.time()))
        head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        request = (
            f"POST /webhooks/{SOURCE} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n{head}\r\n"
        ).encode() + body
        started = time.perf_counter()
        writer.write(request)
        status_line = await reader.readline()
        length = 0
        while True:
            line = await reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        answer = await reader.readexactly(length)
        latencies.append(time.perf_counter() - started)
        if status_line.split()[1] == b"200" and json.loads(answer)["status"] == "stored":
            stored.append(event_id)
        else:
            errors += 1
    writer.close()
    return errors


def run(seconds: float, clients: int, max_batch: int, parent: Path) -> dict[str, float]:
    from api_assets.storage.layout import DataLayout
    from api_assets.webhooks.landing import LandingReader

    secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="webhooks-", dir=parent) as root:
        port = _free_port()
        proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", root, str(port), str(max_batch)],
            env={**os.environ, "BENCH_WEBHOOK_SECRET": secret},
        )
        try:
            _wait_ready(port, proc)
            stored: list[str] = []
            latencies: list[float] = []

            async def drive() -> list[int]:
                deadline = time.monotonic() + seconds
                return await asyncio.gather(
                    *(_client(port, secret, k, deadline, stored, latencies) for k in range(clients))
                )

            started = time.monotonic()
            errors = sum(asyncio.run(drive()))
            elapsed = time.monotonic() - started
            stats = json.loads(_get(port, "/healthz"))["landing"][SOURCE]
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
        on_disk = [
            e["event_id"] for e, _ in LandingReader(DataLayout(Path(root)), SOURCE).iter_from()
        ]
    exactly_once = len(on_disk) == len(set(on_disk)) and set(on_disk) == set(stored)
    latencies.sort()
    return {
        "accepted": len(stored),
        "per_second": len(stored) / elapsed,
        "errors": errors,
        "exactly_once": exactly_once,
        "mean_batch": stats["stored"] / max(1, stats["batches"]),
        "p50_ms": statistics.median(latencies) * 1000 if latencies else float("nan"),
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000 if latencies else float("nan"),
    }


def _get(port: int, path: str) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data.split(b"\r\n\r\n", 1)[1].decode()


def _wait_ready(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("the receiver exited during start-up")
        try:
            _get(port, "/healthz")
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("the receiver did not start")


def _report(label: str, r: dict[str, float]) -> None:
    print(
        f"{label:<26} {r['per_second']:>9.0f} events/s  accepted {int(r['accepted']):>7}  "
        f"mean batch {r['mean_batch']:>6.1f}  p50 {r['p50_ms']:>6.1f} ms  p99 {r['p99_ms']:>6.1f} ms  "
        f"errors {int(r['errors'])}  exactly once on disk: {'yes' if r['exactly_once'] else 'NO'}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument(
        "--dir",
        type=Path,
        default=Path(__file__).resolve().parent / "out",
        help="where the throwaway landings go (a real disk: on tmpfs fsync costs nothing)",
    )
    parser.add_argument(
        "--serve", nargs=3, metavar=("ROOT", "PORT", "MAX_BATCH"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.serve:
        serve(args.serve[0], int(args.serve[1]), int(args.serve[2]))
        return 0
    print(
        f"webhook receiver, scheme standard, fsync on, {args.clients} clients, {args.seconds:.0f} s "
        f"each, {os.cpu_count()} CPUs, landing under {args.dir}"
    )
    group = run(args.seconds, args.clients, max_batch=2048, parent=args.dir)
    _report("group commit", group)
    ok = bool(group["exactly_once"])
    if not args.no_baseline:
        single = run(args.seconds, args.clients, max_batch=1, parent=args.dir)
        _report("baseline: fsync per event", single)
        ok = ok and bool(single["exactly_once"])
        print(f"group commit / baseline: {group['per_second'] / single['per_second']:.2f}x")
    print(
        f"group commit / target ({TARGET_PER_SECOND:.0f}/s): "
        f"{group['per_second'] / TARGET_PER_SECOND:.2f}x"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
