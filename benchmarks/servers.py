"""The benchmark's own HTTP servers: raw asyncio HTTP/1.1 keep-alive, pre-serialized bytes.

`GET /{N}/products?offset=O&limit=L` answers `{"data": [...L records...], "total": N}`: records
shaped like the demo API's products (nested `price`, a `tags` list, timestamps), ids 1..N. A
record is one `%`-format of a pre-serialized template (a hundred variants), so a page costs a
few microseconds to build and the server is never what limits a client (`capacity()` measures
it). Modes:

- zero latency (default);
- `latency_ms`: every answer is sent that long after the request arrived (concurrent requests
  wait concurrently, like a remote API);
- `rate`/`burst`: one token bucket for all clients (`rate` per second, depth `burst`, default
  one second's worth); every answer announces the limit as `rate` requests per 1-second window
  (`X-RateLimit-Limit: rate`, `-Remaining`: whole tokens left, `-Reset`: seconds until the
  bucket is full again, rounded up; the same as IETF `RateLimit-*` plus `RateLimit-Policy:
  rate;w=1`), and a request over budget gets 429 with `Retry-After`. `GET /stats` reports the
  200s, 429s and the times of the accepted requests (monotonic seconds, server side);
- `gzip`: a page request whose `Accept-Encoding` accepts gzip gets the page gzip-compressed
  (`Content-Encoding: gzip`, level `GZIP_LEVEL`); compressed bodies are cached by (total,
  offset, limit), so once `prime()` has compressed every page of a size the server only copies
  bytes again. A request that does not accept gzip gets the plain page.

`GET /stats` always reports `requests`, the page answers (`pages`, `gzip_pages`) and their body
bytes as sent (`body_bytes_sent`, compressed where gzip) and decoded (`body_bytes_decoded`).

`PageServer(...)` runs the server in a child process on a socket bound here (127.0.0.1, free
port) — so the server has its own interpreter and GIL — and is a context manager.
"""

import argparse
import asyncio
import gzip
import json
import math
import os
import random
import socket
import subprocess
import sys
import time
from typing import Any

PAGE_SIZE = 100
VARIANTS = 101
# zlib's default level, 6: what the application-level compressors that typically gzip an API's
# dynamic JSON use by default (Express `compression`, Django's GZipMiddleware, Apache
# mod_deflate, Go's gzip handlers). nginx's `gzip_comp_level` defaults to 1 instead. For the
# client the choice barely matters: on this machine a 22 KB page inflates in ~0.08 ms at level 6
# and ~0.07 ms at level 1 (6 sends 17% of the plain bytes, 1 sends 21%); what it changes is the
# server's compression time, which the cache takes out of the runs.
GZIP_LEVEL = 6

_ADJ = ["Fresh", "Pro", "Classic", "Smart", "Eco", "Ultra", "Mini", "Royal"]
_NOUN = ["Desk", "Sneakers", "Lamp", "Kettle", "Backpack", "Chair", "Watch", "Mug"]
_TAGS = ["new", "sale", "premium", "eco", "limited", "gift"]
_CUR = ["USD", "EUR", "GBP"]


def _tails(seed: int = 7) -> list[bytes]:
    """Pre-serialized record tails (everything after `id` and `sku`), typed consistently so that a
    schema inferred from any 100 records holds for all."""
    rng = random.Random(seed)
    out = []
    for k in range(VARIANTS):
        tags = rng.sample(_TAGS, 1 + rng.randrange(3))
        created = 1_700_000_000 + rng.randrange(40_000_000)
        updated = created + rng.randrange(5_000_000)
        fields = {
            "name": f"{rng.choice(_ADJ)} {rng.choice(_NOUN)}",
            "status": "active" if k % 7 else "archived",
            "price": {
                "amount": (2 * rng.randrange(100, 25_000) + 1) / 100,
                "currency": _CUR[k % 3],
            },
            "tags": tags,
            "category_id": 1 + rng.randrange(12),
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(created)),
            "updated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(updated)),
        }
        out.append(json.dumps(fields, separators=(",", ":"))[1:-1].encode())
    return out


TAILS = _tails()


def page_body(total: int, offset: int, limit: int) -> bytes:
    """The body of one page: records offset+1 .. min(offset+limit, total)."""
    first, last = offset + 1, min(offset + limit, total)
    recs = [
        b'{"id":%d,"sku":"SKU-%07d",%s}' % (i, i, TAILS[i % VARIANTS])
        for i in range(first, last + 1)
    ]
    return b'{"data":[' + b",".join(recs) + b'],"total":%d}' % total


class _Bucket:
    """A token bucket of `rate`/s and depth `burst`, with demo-API-style headers."""

    def __init__(self, rate: float, burst: float):
        self.rate, self.burst = rate, burst
        self.tokens, self.at = burst, time.monotonic()
        self.ok = self.refused = 0
        self.accepted: list[float] = []  # monotonic times of the accepted requests

    def take(self) -> tuple[bool, bytes]:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        allowed = self.tokens >= 1.0
        if allowed:
            self.tokens -= 1.0
            self.ok += 1
            self.accepted.append(now)
        else:
            self.refused += 1
        to_full = (self.burst - self.tokens) / self.rate
        limit, remaining = int(self.rate), int(self.tokens)
        head = (
            b"X-RateLimit-Limit: %d\r\nX-RateLimit-Remaining: %d\r\nX-RateLimit-Reset: %d\r\n"
            b"RateLimit-Limit: %d\r\nRateLimit-Remaining: %d\r\nRateLimit-Reset: %d\r\n"
            b"RateLimit-Policy: %d;w=1\r\n"
            % (
                limit,
                remaining,
                math.ceil(time.time() + to_full),
                limit,
                remaining,
                math.ceil(to_full),
                limit,
            )
        )
        if not allowed:
            head += b"Retry-After: %d\r\n" % max(1, math.ceil((1.0 - self.tokens) / self.rate))
        return allowed, head

    def stats(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "refused": self.refused,
            "accepted": self.accepted,
            "rate": self.rate,
            "burst": self.burst,
        }


def _response(status: bytes, body: bytes, extra: bytes = b"") -> bytes:
    return (
        b"HTTP/1.1 %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n"
        % (status, len(body), extra)
        + body
    )


def _query(qs: bytes) -> dict[bytes, bytes]:
    out = {}
    for part in qs.split(b"&"):
        key, _, value = part.partition(b"=")
        out[key] = value
    return out


def _accepts_gzip(value: bytes) -> bool:
    """Whether an `Accept-Encoding` value accepts gzip: `gzip`, `x-gzip` or `*`, with no `q=0`
    (RFC 9110 §12.5.3; a `*` after an explicit `gzip;q=0` does not override it)."""
    star = False
    for item in value.split(b","):
        coding, _, params = item.partition(b";")
        coding = coding.strip().lower()
        q = 1.0
        for param in params.split(b";"):
            key, _, v = param.partition(b"=")
            if key.strip().lower() == b"q":
                try:
                    q = float(v.strip())
                except ValueError:
                    q = 0.0
        if coding in (b"gzip", b"x-gzip"):
            return q > 0
        if coding == b"*":
            star = q > 0
    return star


class _Protocol(asyncio.Protocol):
    def __init__(self, server: "_State"):
        self.state = server
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head, self.buffer = self.buffer[:end], self.buffer[end + 4 :]
            self._answer(head)

    def _answer(self, head: bytes) -> None:
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ")
        target = parts[1] if len(parts) > 1 else b"/"
        path, _, qs = target.partition(b"?")
        gzip_ok = False
        if self.state.gzip:  # the header lines are only read when they can change the answer
            for header in lines[1:]:
                name, _, value = header.partition(b":")
                if name.strip().lower() == b"accept-encoding":
                    gzip_ok = _accepts_gzip(value)
        response = self.state.handle(path, _query(qs) if qs else {}, gzip_ok)
        assert self.transport is not None
        if self.state.latency > 0:
            asyncio.get_running_loop().call_later(self.state.latency, self._send, response)
        else:
            self.transport.write(response)

    def _send(self, response: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(response)


class _State:
    def __init__(
        self, latency_ms: float, rate: float | None, burst: float | None, gzip: bool = False
    ):
        self.latency = latency_ms / 1000.0
        self.bucket = _Bucket(rate, burst or rate) if rate else None
        self.gzip = gzip
        # (total, offset, limit) -> (gzip body, plain size): ~4 KB a page, 40 MB for 1M records
        self.cache: dict[tuple[int, int, int], tuple[bytes, int]] = {}
        self.requests = self.pages = self.gzip_pages = 0
        self.sent = self.decoded = 0  # body bytes of the page answers: as sent, decoded

    def stats(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "pages": self.pages,
            "gzip_pages": self.gzip_pages,
            "body_bytes_sent": self.sent,
            "body_bytes_decoded": self.decoded,
            "gzip_cached_pages": len(self.cache),
            **(self.bucket.stats() if self.bucket else {}),
        }

    def handle(self, path: bytes, q: dict[bytes, bytes], gzip_ok: bool = False) -> bytes:
        self.requests += 1
        if path == b"/stats":
            return _response(b"200 OK", json.dumps(self.stats()).encode())
        if path == b"/health":
            return _response(b"200 OK", b'{"status":"ok"}')
        pieces = path.split(b"/")
        if len(pieces) != 3 or pieces[2] != b"products" or not pieces[1].isdigit():
            return _response(b"404 Not Found", b'{"error":"no such route"}')
        extra = b""
        if self.bucket is not None:
            allowed, extra = self.bucket.take()
            if not allowed:
                return _response(b"429 Too Many Requests", b'{"error":"rate limited"}', extra)
        try:
            offset = int(q.get(b"offset", b"0"))
            limit = int(q.get(b"limit", b"100"))
        except ValueError:
            return _response(b"400 Bad Request", b'{"error":"bad offset or limit"}')
        total = int(pieces[1])
        self.pages += 1
        if gzip_ok:
            key = (total, offset, limit)
            cached = self.cache.get(key)
            if cached is None:
                plain = page_body(total, offset, limit)
                cached = self.cache[key] = (gzip.compress(plain, GZIP_LEVEL, mtime=0), len(plain))
            body, size = cached
            self.gzip_pages += 1
            extra += b"Content-Encoding: gzip\r\nVary: Accept-Encoding\r\n"
        else:
            body = page_body(total, offset, limit)
            size = len(body)
        self.sent += len(body)
        self.decoded += size
        return _response(b"200 OK", body, extra)


def serve(
    fd: int, latency_ms: float, rate: float | None, burst: float | None, gzip: bool = False
) -> None:
    sock = socket.socket(fileno=fd)
    state = _State(latency_ms, rate, burst, gzip)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: _Protocol(state), sock=sock, backlog=2048)
        print("ready", flush=True)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


class PageServer:
    """The page server in a child process: `with PageServer(latency_ms=20) as s: s.url`."""

    def __init__(
        self,
        *,
        latency_ms: float = 0.0,
        rate: float | None = None,
        burst: float | None = None,
        gzip: bool = False,
    ):
        self.latency_ms, self.rate, self.burst, self.gzip = latency_ms, rate, burst, gzip
        self.url = ""
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> "PageServer":
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(2048)
        port = sock.getsockname()[1]
        fd = sock.fileno()
        args = [sys.executable, "-m", "benchmarks.servers", "--fd", str(fd)]
        args += ["--latency-ms", str(self.latency_ms)]
        if self.rate:
            args += ["--rate", str(self.rate), "--burst", str(self.burst or self.rate)]
        if self.gzip:
            args.append("--gzip")
        self.proc = subprocess.Popen(
            args, pass_fds=(fd,), stdout=subprocess.PIPE, cwd=_ROOT, env=_env()
        )
        sock.close()
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != b"ready":
            raise RuntimeError("the benchmark page server did not start")
        self.url = f"http://127.0.0.1:{port}"
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None

    def stats(self) -> dict[str, Any]:
        host, port = self.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=5) as s:
            s.sendall(b"GET /stats HTTP/1.1\r\nHost: x\r\n\r\n")
            data = b""
            while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        result: dict[str, Any] = json.loads(data.split(b"\r\n\r\n", 1)[1])
        return result


_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = _ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


# --- server capacity ---------------------------------------------------------------------------


async def _hammer(
    url: str, total: int, seconds: float, connections: int, *, gzip: bool, once: bool = False
) -> tuple[int, int]:
    """Pages requested round-robin over `connections` for `seconds` (or, `once`, every page of
    `total` exactly once); returns (pages, body bytes as received). Bodies are not decoded: the
    client measures the server, not itself."""
    host, port = url.removeprefix("http://").split(":")
    deadline = time.monotonic() + seconds
    pages = -(-total // PAGE_SIZE)
    accept = b"Accept-Encoding: gzip\r\n" if gzip else b""

    async def one(k: int) -> tuple[int, int]:
        reader, writer = await asyncio.open_connection(host, int(port))
        done = nbytes = 0
        i = k
        while i < pages if once else time.monotonic() < deadline:
            offset = (i % pages) * PAGE_SIZE
            i += connections
            writer.write(
                b"GET /%d/products?offset=%d&limit=%d HTTP/1.1\r\nHost: x\r\n%s\r\n"
                % (total, offset, PAGE_SIZE, accept)
            )
            length = 0
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            nbytes += len(await reader.readexactly(length))
            done += 1
        writer.close()
        return done, nbytes

    results = await asyncio.gather(*(one(k) for k in range(connections)))
    return sum(r[0] for r in results), sum(r[1] for r in results)


def capacity(
    url: str,
    total: int = 1_000_000,
    seconds: float = 2.0,
    connections: int = 4,
    *,
    gzip: bool = False,
) -> dict:
    """Pages/s and records/s the zero-latency server answers to a minimal asyncio client (which
    shares the machine with it, so this is a lower bound of the server's capacity); `mb_per_s`
    is body bytes as sent. `gzip`: the client accepts gzip, and the pages of `total` should be
    primed first (`prime`), as they are for the runs, or this measures the compression."""
    started = time.monotonic()
    pages, nbytes = asyncio.run(_hammer(url, total, seconds, connections, gzip=gzip))
    elapsed = time.monotonic() - started
    return {
        "pages_per_s": pages / elapsed,
        "records_per_s": pages * PAGE_SIZE / elapsed,
        "mb_per_s": nbytes / elapsed / 1e6,
        "connections": connections,
        "gzip": gzip,
    }


def prime(url: str, total: int, connections: int = 4) -> dict:
    """Request every page of `total` once, accepting gzip, so that a gzip server has them all
    compressed and cached before any timed run; returns that pass's rate (compression
    included: what an uncached gzip server would manage)."""
    started = time.monotonic()
    pages, nbytes = asyncio.run(_hammer(url, total, 0.0, connections, gzip=True, once=True))
    elapsed = time.monotonic() - started
    return {
        "pages": pages,
        "seconds": elapsed,
        "pages_per_s": pages / elapsed,
        "records_per_s": pages * PAGE_SIZE / elapsed,
        "mb_per_s": nbytes / elapsed / 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--rate", type=float, default=None)
    parser.add_argument("--burst", type=float, default=None)
    parser.add_argument("--gzip", action="store_true", help="gzip pages for clients that accept it")
    args = parser.parse_args()
    serve(args.fd, args.latency_ms, args.rate, args.burst, args.gzip)


if __name__ == "__main__":
    main()
