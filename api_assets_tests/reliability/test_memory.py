"""Hostile response bodies fail cleanly and within a memory bound.

A local HTTP server (the demo API cannot produce these) serves: a 50 MB page with its
Content-Length, the same without a length (read until the connection closes), a gzip bomb (a
small body that inflates to 200 MB), JSON nested 100,000 deep, and bodies that are not UTF-8. A
subprocess runs `engine.ingest` on one of them and reports the exception, the run report, its
resident memory before and its peak after (the peak reset first, since `ru_maxrss` of a child of
pytest starts at pytest's own peak; `getrusage` agrees once it is reset): the run must fail with a
`FetchError` that says what was wrong, write a failed report, and its peak resident memory may
grow by well under ten times the body (a bound, not a timing).
"""

import gzip
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from api_assets.storage.layout import PROJECT_ROOT

pytestmark = pytest.mark.e2e

MB = 1024 * 1024
CAP = 32 * MB  # max_page_bytes' default
SLACK = 48 * MB
RECORD = b'{"id":%d,"pad":"' + b"x" * 990 + b'"}'


def _huge(size: int) -> bytes:
    n = size // (len(RECORD) + 4)
    return b'{"data":[' + b",".join(RECORD % i for i in range(n)) + b"]}"


class Bodies(BaseHTTPRequestHandler):
    """GET /<name> answers BODIES[name]; names ending in `-nolength` omit Content-Length and
    close the connection instead."""

    bodies: dict[str, tuple[bytes, dict[str, str]]] = {}
    protocol_version = "HTTP/1.0"

    def do_GET(self) -> None:
        name = self.path.strip("/").split("?")[0]
        body, headers = self.bodies.get(name, (b'{"data":[{"id":1}]}', {}))
        self.send_response(200)
        self.send_header("Content-Type", headers.get("Content-Type", "application/json"))
        for key, value in headers.items():
            if key != "Content-Type":
                self.send_header(key, value)
        if not name.endswith("-nolength"):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            for i in range(0, len(body), MB):
                self.wfile.write(body[i : i + MB])
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client stopped reading: that is the point

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def hostile_server() -> Iterator[str]:
    huge = _huge(50 * MB)
    Bodies.bodies = {
        "huge": (huge, {}),
        "huge-nolength": (huge, {}),
        "bomb": (gzip.compress(b" " * (200 * MB), compresslevel=9), {"Content-Encoding": "gzip"}),
        "deep": (b"[" * 100_000 + b"]" * 100_000, {}),
        "latin1": (
            '{"data":[{"id":1,"name":"caf\xe9 cr\xe8me"}]}'.encode("latin-1"),
            {"Content-Type": "application/json; charset=iso-8859-1"},
        ),
        "binary": (bytes(range(256)) * 64, {"Content-Type": "application/octet-stream"}),
    }
    server = ThreadingHTTPServer(("127.0.0.1", 0), Bodies)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    Bodies.bodies = {}


CHILD = r"""
import json, resource, sys
from pathlib import Path
from api_assets.pipeline import ingest as engine
from api_assets.http.client import SourceClient
from api_assets.storage.layout import DataLayout
from api_assets.config.models import SourceConfig

url, path, data = sys.argv[1], sys.argv[2], Path(sys.argv[3])
def source(p):
    return SourceConfig.model_validate({
        "name": "hostile", "base_url": url, "auth": {"type": "none"},
        "retry": {"max_attempts": 2, "max_backoff_seconds": 0.1},
        "endpoints": [{"name": "page", "path": p, "records_path": "data", "primary_key": "id"}],
    })
layout = DataLayout(data)
warm = source("/small")  # every code path once, so that the baseline includes it
engine.ingest(warm, warm.endpoints[0], "2026-03-03", layout=layout, client=SourceClient(warm))
def status(field):
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) * 1024 for l in f if l.startswith(field + ":"))
# ru_maxrss of a process started by a big one (pytest) carries the parent's peak from before
# exec: reset the peak (Linux: clear_refs 5), then read it back after the case
try:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    reset = True
except OSError:
    reset = False
rss_before = status("VmRSS")
src = source(path)
out = {"error": None, "mro": [], "message": ""}
try:
    engine.ingest(src, src.endpoints[0], "2026-03-04", layout=layout, client=SourceClient(src))
except BaseException as exc:
    out.update(error=type(exc).__name__, mro=[c.__name__ for c in type(exc).__mro__],
               message=str(exc))
out["peak"] = status("VmHWM") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
out["ru_maxrss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
out["rss_before"] = rss_before
report = layout.report_path("hostile", "page", "2026-03-04")
out["report"] = json.loads(report.read_text()) if report.exists() else None
print(json.dumps(out))
"""


def _run(url: str, name: str, data: Path) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, url, f"/{name}", str(data)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


INFLATE = 66 * MB  # one 64 KiB network read of a deflate stream inflates to at most ~1032x

CASES = [
    # name, body size, peak growth allowed, words the error must contain
    ("huge", 50 * MB, 2 * CAP + SLACK, ("over", "bytes", "max_page_bytes")),
    ("huge-nolength", 50 * MB, 2 * CAP + SLACK, ("over", "bytes", "max_page_bytes")),
    ("bomb", 200 * MB, 2 * CAP + INFLATE + SLACK, ("over", "bytes", "max_page_bytes")),
    ("deep", 200_000, 10 * 200_000 + SLACK, ("not JSON",)),
    ("latin1", 64, SLACK, ("not JSON",)),
    ("binary", 256 * 64, SLACK, ("not JSON",)),
]


@pytest.mark.parametrize(("name", "size", "bound", "words"), CASES, ids=[c[0] for c in CASES])
def test_hostile_body_fails_cleanly_within_a_memory_bound(
    hostile_server: str, tmp_path: Path, name: str, size: int, bound: int, words: tuple[str, ...]
) -> None:
    out = _run(hostile_server, name, tmp_path / "data")
    growth = max(0, out["peak"] - out["rss_before"])
    print(f"\n{name}: {out['error']}; peak RSS growth {growth / MB:.1f} MiB for {size} bytes")
    assert "FetchError" in out["mro"], out
    for word in words:
        assert word in out["message"], out["message"]
    assert "`hostile`" in out["message"] and "`page`" in out["message"]
    report = out["report"]
    assert report is not None and report["status"] == "failed" and report["error"], report
    assert not list((tmp_path / "data").glob("tables/hostile/page/2026-03-04*"))
    # well under 10x the body: a huge one is bounded by the 32 MiB cap (chunks and their join,
    # plus, for a compressed body, what one network read inflates to); small ones by slack
    assert bound <= 10 * size + SLACK
    assert growth < bound, f"peak RSS grew {growth / MB:.0f} MiB (bound {bound / MB:.0f} MiB)"
