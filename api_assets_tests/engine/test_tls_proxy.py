"""A source's `tls`, `proxy` and `http2` settings, end to end over real connections on 127.0.0.1:
the demo API serving HTTPS with a certificate from a private CA made here (`pki.py`), and asking
for a client certificate (mutual TLS); pproxy, a real forward proxy from PyPI, in a child
process; hypercorn, an ASGI server that speaks HTTP/2. The API client and the token requests
both connect as the source says; the client key's password and the proxy's password never reach
the disk or an error."""

import asyncio
import contextlib
import functools
import gzip
import http.server
import json
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from api_assets.config.loader import load_sources
from api_assets.config.models import SourceConfig
from api_assets.demo_api import DEMO_CREDENTIALS, DemoConfig, DemoServer
from api_assets.demo_api.app import DemoApp
from api_assets.errors import AuthError, ConnectionSetupError, FetchError
from api_assets.http.auth import TokenFlow, build_auth, clear_token_caches
from api_assets.http.client import SourceClient
from api_assets.http.connection import client_options
from api_assets.http.ratelimit import clear_limiters
from api_assets.http.redact import Redactor
from api_assets.pipeline.ingest import IngestResult, ingest
from api_assets.storage.layout import DataLayout
from api_assets_tests.engine.conftest import (
    API_KEY_HEADER,
    FAST,
    QUICK_RETRY,
    endpoint,
    make_source,
    the_endpoint,
    truth_ids,
    v1_log,
)
from api_assets_tests.pki import KEY_PASSWORD, Pki, make_pki

Clients = Callable[..., SourceClient]
PARTITION = "2026-11-28"
PROXY_PASSWORD = "proxy-pw-5b2d11"
PROXY_ENV = ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY")


# --- servers -------------------------------------------------------------------------------------


def client_context(pki: Pki, *, certificate: bool = False) -> ssl.SSLContext:
    """How the tests' own admin calls reach the HTTPS demo servers."""
    context = ssl.create_default_context(cafile=str(pki.ca))
    if certificate:
        context.load_cert_chain(pki.client_cert, pki.client_key, password=KEY_PASSWORD)
    return context


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def https_api(pki: Pki) -> Iterator[DemoServer]:
    """The demo API over HTTPS, its certificate signed by the private CA."""
    with DemoServer(
        DemoConfig.small(),
        ssl_certfile=str(pki.server_cert),
        ssl_keyfile=str(pki.server_key),
        admin_ssl=client_context(pki),
    ) as server:
        yield server


@pytest.fixture(scope="module")
def mtls_api(pki: Pki) -> Iterator[DemoServer]:
    """The demo API over HTTPS that asks every client for a certificate signed by the CA."""
    with DemoServer(
        DemoConfig.small(),
        ssl_certfile=str(pki.server_cert),
        ssl_keyfile=str(pki.server_key),
        ssl_ca_certs=str(pki.ca),
        ssl_cert_reqs=ssl.CERT_REQUIRED,
        admin_ssl=client_context(pki, certificate=True),
    ) as server:
        yield server


# pproxy's command line installs uvloop when it can import it, then calls
# `asyncio.get_event_loop()`, which the uvloop that uvicorn[standard] brings refuses outside a
# running loop: the proxy would die at start-up. Hide uvloop: it runs on asyncio's own loop.
PPROXY_MAIN = "import sys; sys.modules['uvloop'] = None; from pproxy.server import main; main()"


class ForwardProxy:
    """pproxy (`pproxy -l http://127.0.0.1:PORT -v`) in a child process; `log` holds its verbose
    output: one line per connection it forwards, `http <client> -> <destination>`."""

    def __init__(self, auth: str | None = None):
        self.auth = auth
        self.port = 0
        self.log: list[str] = []
        self._child: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "ForwardProxy":
        for _ in range(5):  # the free port found may be taken before pproxy binds it
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                self.port = probe.getsockname()[1]
            listen = f"http://127.0.0.1:{self.port}" + (f"#{self.auth}" if self.auth else "")
            self.log = []
            self._child = subprocess.Popen(
                [sys.executable, "-u", "-c", PPROXY_MAIN, "-l", listen, "-v", "--auth", "0"],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            threading.Thread(target=self._read, args=(self._child,), daemon=True).start()
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and self._child.poll() is None:
                if any("Serving on" in line for line in self.log):
                    return self
                if any("failed" in line for line in self.log):
                    break
                time.sleep(0.02)
            self.stop()
        raise RuntimeError(f"pproxy did not start: {self.log}")

    def _read(self, child: "subprocess.Popen[str]") -> None:
        assert child.stdout is not None
        for line in child.stdout:
            self.log.append(line.rstrip("\n"))

    def forwarded_to(self, port: int, wait: float = 5.0) -> list[str]:
        """The log lines of connections forwarded to 127.0.0.1:`port` (waiting up to `wait` s
        for the first: the log is read by a thread)."""
        deadline = time.monotonic() + wait
        while True:
            lines = [line for line in self.log if f"-> 127.0.0.1:{port}" in line]
            if lines or time.monotonic() > deadline:
                return lines
            time.sleep(0.02)

    def stop(self) -> None:
        if self._child is not None:
            if self._child.poll() is None:
                self._child.terminate()
                try:
                    self._child.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self._child.kill()
                    self._child.wait()
            self._child = None


@pytest.fixture
def forward_proxy() -> Iterator[Callable[..., ForwardProxy]]:
    started: list[ForwardProxy] = []

    def make(auth: str | None = None) -> ForwardProxy:
        proxy = ForwardProxy(auth).start()
        started.append(proxy)
        return proxy

    yield make
    for proxy in started:
        proxy.stop()


@contextlib.contextmanager
def hypercorn_https(app: Any, pki: Pki) -> Iterator[str]:
    """`app` served by hypercorn over TLS (HTTP/2 offered by ALPN, HTTP/1.1 too) in a thread of
    its own event loop; close the clients before leaving, so that no connection holds it up."""
    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    address = sock.getsockname()
    config = Config()
    config.bind = [f"fd://{sock.detach()}"]  # hypercorn owns the socket (and closes it)
    config.certfile, config.keyfile = str(pki.server_cert), str(pki.server_key)
    config.loglevel = "WARNING"
    config.graceful_timeout = 1.0
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    thread = threading.Thread(
        target=loop.run_until_complete,
        args=(serve(app, config, shutdown_trigger=stop.wait),),
        daemon=True,
    )
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while True:  # serving once a TLS handshake succeeds
            try:
                with (
                    socket.create_connection(address, timeout=2) as raw,
                    client_context(pki).wrap_socket(raw, server_hostname="127.0.0.1"),
                ):
                    break
            except OSError:
                if time.monotonic() > deadline or not thread.is_alive():
                    raise
                time.sleep(0.05)
        yield f"https://127.0.0.1:{address[1]}"
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=30)
        if not thread.is_alive():
            loop.close()


class QuietFiles(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def stdlib_https(folder: Path, pki: Pki, client_ca: Path) -> Iterator[str]:
    """The files under `folder` served by the standard library's HTTP server over TLS, asking
    for a client certificate signed by `client_ca`. Unlike uvicorn and hypercorn, which hang up
    without a word, it refuses a missing or unknown client certificate with a TLS alert, as nginx
    and most TLS stacks do."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(client_ca))
    context.load_cert_chain(pki.server_cert, pki.server_key)
    context.verify_mode = ssl.CERT_REQUIRED
    handler = functools.partial(QuietFiles, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=15)


# --- helpers -------------------------------------------------------------------------------------


@pytest.fixture
def layout(tmp_path: Path) -> DataLayout:
    return DataLayout(tmp_path / "data")


@pytest.fixture
def no_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """The proxy variables unset (both spellings), for the test to set as it needs."""
    for name in PROXY_ENV:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    return monkeypatch


def run(source: SourceConfig, clients: Clients, layout: DataLayout) -> IngestResult:
    return ingest(source, the_endpoint(source), PARTITION, layout=layout, client=clients(source))


def fails(source: SourceConfig, clients: Clients, layout: DataLayout) -> FetchError | AuthError:
    with pytest.raises((FetchError, AuthError)) as info:
        run(source, clients, layout)
    assert isinstance(info.value, FetchError | AuthError)
    return info.value


def report_text(layout: DataLayout, source: SourceConfig) -> str:
    return layout.report_path(source.name, source.endpoints[0].name, PARTITION).read_text()


def every_byte_on_disk(root: Path) -> bytes:
    """All files under `root` (archive, manifest, table, schema, report), gzip decompressed."""
    out = []
    for path in sorted(root.rglob("*")):
        if path.is_file():
            data = path.read_bytes()
            out.append(gzip.decompress(data) if path.suffix == ".gz" else data)
    return b"\n".join(out)


def assert_complete(result: IngestResult, server: DemoServer) -> None:
    got = sorted(result.table.df["id"].to_list())
    assert got == truth_ids(server, "products", status="active")
    assert result.report.status == "success"


def oauth_cc(url: str) -> dict[str, Any]:
    return {
        "type": "oauth2_client_credentials",
        "token_url": f"{url}/oauth/token",
        "client_id": DEMO_CREDENTIALS["client_id"],
        "client_secret": DEMO_CREDENTIALS["client_secret"],
        "scopes": ["read"],
    }


def products(url: str, **settings: Any) -> SourceConfig:
    """Active products (offset pages, the rest fetched concurrently once the total is known)."""
    return make_source(url, endpoint("products", paginator={"limit": 25}), **settings)


# --- verify ------------------------------------------------------------------------------------


def test_a_private_ca_bundle_verifies_the_api_and_the_data_is_complete(
    https_api: DemoServer, pki: Pki, clients: Clients, layout: DataLayout
) -> None:
    source = products(https_api.url, tls={"verify": str(pki.ca)})
    result = run(source, clients, layout)
    assert_complete(result, https_api)
    assert result.report.pages > 1


@pytest.mark.parametrize("verify", ["default", "other_ca"])
def test_an_unverified_certificate_fails_at_once_naming_the_source_and_verify(
    https_api: DemoServer, pki: Pki, clients: Clients, layout: DataLayout, verify: str
) -> None:
    tls = {} if verify == "default" else {"tls": {"verify": str(pki.other_ca)}}
    source = products(https_api.url, **tls)
    https_api.clear_requests()
    error = fails(source, clients, layout)
    assert isinstance(error, ConnectionSetupError)  # not retried: the same certificate again
    for text in (str(error), report_text(layout, source)):
        assert "source `shop`" in text and "endpoint `products`" in text
        assert "the server's certificate could not be verified" in text
        assert "`tls.verify`" in text and "CA bundle" in text
    assert v1_log(https_api) == []


def test_verify_false_accepts_any_certificate(
    https_api: DemoServer, clients: Clients, layout: DataLayout
) -> None:
    source = products(https_api.url, tls={"verify": False})
    assert_complete(run(source, clients, layout), https_api)


# --- mutual TLS ----------------------------------------------------------------------------------


def mtls_source(tmp_path: Path, url: str, pki: Pki, **tls: Any) -> SourceConfig:
    """A source read from a sources file, as a user writes it: the key's password is `${VAR}`."""
    text = yaml.safe_dump(
        {
            "sources": [
                {
                    "name": "shop",
                    "base_url": url,
                    "auth": API_KEY_HEADER,
                    "rate_limit": FAST,
                    "retry": QUICK_RETRY,
                    "timeout_seconds": 10,
                    "tls": {"verify": str(pki.ca), **tls},
                    "endpoints": [endpoint("products", paginator={"limit": 25})],
                }
            ]
        }
    )
    path = tmp_path / "sources.yaml"
    path.write_text(text)
    (source,) = load_sources(path, environ={"SHOP_KEY_PASSWORD": KEY_PASSWORD})
    return source


def test_mutual_tls_without_a_client_certificate_fails_clearly(
    mtls_api: DemoServer, pki: Pki, clients: Clients, layout: DataLayout, tmp_path: Path
) -> None:
    source = mtls_source(tmp_path, mtls_api.url, pki)
    error = fails(source, clients, layout)
    for text in (str(error), report_text(layout, source)):
        assert "source `shop`" in text and "endpoint `products`" in text
        assert "requires a client certificate (mutual TLS)" in text
        assert "`tls.client_cert`" in text


def test_mutual_tls_with_an_encrypted_key_whose_password_never_leaks(
    mtls_api: DemoServer, pki: Pki, clients: Clients, layout: DataLayout, tmp_path: Path
) -> None:
    source = mtls_source(
        tmp_path,
        mtls_api.url,
        pki,
        client_cert=str(pki.client_cert),
        client_key=str(pki.client_key),
        client_key_password="${SHOP_KEY_PASSWORD}",
    )
    assert_complete(run(source, clients, layout), mtls_api)
    assert KEY_PASSWORD not in repr(source)
    # a failing run of the same source: its error and report hold no password either
    bogus = source.endpoints[0].model_copy(update={"params": {"status": "bogus"}})
    bad = source.model_copy(update={"endpoints": [bogus]})
    error = fails(bad, clients, layout)
    assert isinstance(error, FetchError) and error.status == 400
    assert KEY_PASSWORD not in str(error) and KEY_PASSWORD not in report_text(layout, bad)
    assert KEY_PASSWORD.encode() not in every_byte_on_disk(layout.root)
    # the password is one of the source's secrets: wherever it turns up in text, it is masked
    assert KEY_PASSWORD not in Redactor.for_source(source).text(f"pw={KEY_PASSWORD}")


@pytest.mark.parametrize(
    ("certificate", "trusted_by_server", "alert"),
    [
        (False, "ca", "TLSV13_ALERT_CERTIFICATE_REQUIRED"),
        (True, "other_ca", "TLSV1_ALERT_UNKNOWN_CA"),
        (True, "ca", None),
    ],
)
def test_a_client_certificate_refused_by_a_tls_alert_fails_at_once(
    pki: Pki,
    clients: Clients,
    layout: DataLayout,
    tmp_path: Path,
    certificate: bool,
    trusted_by_server: str,
    alert: str | None,
) -> None:
    records = [{"id": n, "name": f"category {n}"} for n in range(1, 4)]
    (tmp_path / "www" / "v1").mkdir(parents=True)
    (tmp_path / "www" / "v1" / "categories").write_text(json.dumps(records))
    tls = {"verify": str(pki.ca)}
    if certificate:
        tls |= {"client_cert": str(pki.client_cert), "client_key": str(pki.client_key_plain)}
    with stdlib_https(tmp_path / "www", pki, getattr(pki, trusted_by_server)) as url:
        source = make_source(url, "categories", tls=tls)
        if alert is None:
            assert run(source, clients, layout).report.records == len(records)
            return
        error = fails(source, clients, layout)
    assert isinstance(error, ConnectionSetupError)  # not retried: the same certificate again
    for text in (str(error), report_text(layout, source)):
        assert "source `shop`" in text and "endpoint `categories`" in text
        assert f"the server refused the connection ({alert})" in text
        assert "`tls.client_cert`" in text


def test_token_requests_present_the_same_certificate_and_go_through_the_same_proxy(
    mtls_api: DemoServer,
    pki: Pki,
    clients: Clients,
    layout: DataLayout,
    forward_proxy: Callable[..., ForwardProxy],
) -> None:
    """The OAuth2 token endpoint is on the mutual-TLS server too: a token request that did not
    verify with the CA or present the client certificate would fail; with the proxy stopped, it
    is the token request that fails, through the proxy."""
    proxy = forward_proxy()
    tls = {
        "verify": str(pki.ca),
        "client_cert": str(pki.client_cert),
        "client_key": str(pki.client_key_plain),
    }
    source = products(mtls_api.url, auth=oauth_cc(mtls_api.url), tls=tls, proxy=proxy.url)
    mtls_api.reset()
    assert_complete(run(source, clients, layout), mtls_api)
    token_calls = [r for r in v1_log(mtls_api) if r["path"] == "/oauth/token"]
    assert [r["status"] for r in token_calls] == [200]
    assert proxy.forwarded_to(mtls_api.port)

    proxy.stop()
    clear_token_caches()  # a token must be asked for again
    with pytest.raises(AuthError) as info:
        run(source, clients, layout)
    assert "the token endpoint" in str(info.value)
    assert f"through the proxy {proxy.url}" in str(info.value)


# --- proxy ---------------------------------------------------------------------------------------


def test_the_proxy_setting_routes_every_request_through_the_proxy(
    https_api: DemoServer,
    pki: Pki,
    clients: Clients,
    layout: DataLayout,
    forward_proxy: Callable[..., ForwardProxy],
    no_proxy_environment: pytest.MonkeyPatch,
) -> None:
    proxy = forward_proxy()
    source = products(https_api.url, tls={"verify": str(pki.ca)}, proxy=proxy.url)
    assert_complete(run(source, clients, layout), https_api)
    assert proxy.forwarded_to(https_api.port), proxy.log  # pproxy tunnelled the connections

    proxy.stop()  # now nothing answers at the proxy: the error names it, not the API
    error = fails(source, clients, layout)
    assert "ConnectError" in str(error)
    assert f"through the proxy {proxy.url}" in str(error)


@pytest.mark.parametrize("scheme", ["https", "http"])
def test_the_standard_proxy_environment_applies_when_proxy_is_unset(
    https_api: DemoServer,
    demo_api: DemoServer,
    pki: Pki,
    clients: Clients,
    layout: DataLayout,
    forward_proxy: Callable[..., ForwardProxy],
    no_proxy_environment: pytest.MonkeyPatch,
    scheme: str,
) -> None:
    proxy = forward_proxy()
    server = https_api if scheme == "https" else demo_api
    no_proxy_environment.setenv(f"{scheme.upper()}_PROXY", proxy.url)
    source = products(server.url, tls={"verify": str(pki.ca)})
    assert_complete(run(source, clients, layout), server)
    assert proxy.forwarded_to(server.port), proxy.log

    # NO_PROXY is honoured too: a second proxy (its log fresh) sees nothing
    bypassed = forward_proxy()
    no_proxy_environment.setenv(f"{scheme.upper()}_PROXY", bypassed.url)
    no_proxy_environment.setenv("NO_PROXY", "127.0.0.1")
    assert_complete(run(source, clients, layout), server)
    assert bypassed.forwarded_to(server.port, wait=0.5) == []


@pytest.mark.parametrize("scheme", ["https", "http"])
def test_a_proxy_password_is_sent_and_never_shown(
    https_api: DemoServer,
    demo_api: DemoServer,
    pki: Pki,
    clients: Clients,
    layout: DataLayout,
    forward_proxy: Callable[..., ForwardProxy],
    no_proxy_environment: pytest.MonkeyPatch,
    scheme: str,
) -> None:
    proxy = forward_proxy(auth=f"robot:{PROXY_PASSWORD}")
    server = https_api if scheme == "https" else demo_api
    with_password = proxy.url.replace("http://", "http://robot:${PROXY_PASSWORD}@")

    def source(password: str) -> SourceConfig:
        path = layout.root.parent / f"sources-{password}.yaml"
        path.write_text(
            yaml.safe_dump(
                {
                    "sources": [
                        {
                            "name": "shop",
                            "base_url": server.url,
                            "auth": API_KEY_HEADER,
                            "rate_limit": FAST,
                            "retry": QUICK_RETRY,
                            "tls": {"verify": str(pki.ca)},
                            "proxy": with_password,
                            "endpoints": [endpoint("products", paginator={"limit": 25})],
                        }
                    ]
                }
            )
        )
        (loaded,) = load_sources(path, environ={"PROXY_PASSWORD": password})
        return loaded

    assert_complete(run(source(PROXY_PASSWORD), clients, layout), server)  # the right one works

    wrong = "wrong-proxy-pw-93f0"
    bad = source(wrong)
    error = fails(bad, clients, layout)
    assert isinstance(error, ConnectionSetupError)  # a 407 is not retried
    for text in (str(error), report_text(layout, bad)):
        assert "407" in text and "the proxy refused the credentials" in text
        assert f"through the proxy http://robot:***@127.0.0.1:{proxy.port}" in text
        assert wrong not in text and PROXY_PASSWORD not in text
    assert wrong not in repr(bad)
    for secret in (wrong, PROXY_PASSWORD):
        assert secret.encode() not in every_byte_on_disk(layout.root)
    assert wrong not in Redactor.for_source(bad).text(f"http://robot:{wrong}@h")


# --- HTTP/2 --------------------------------------------------------------------------------------


@pytest.mark.parametrize("http2", [True, False])
def test_http2_speaks_http2_to_a_server_that_offers_it(
    pki: Pki, layout: DataLayout, tmp_path: Path, http2: bool
) -> None:
    app = DemoApp(DemoConfig.small())
    versions: list[str] = []

    async def recording(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/v1"):
            versions.append(scope["http_version"])
        await app(scope, receive, send)

    clear_limiters()
    with hypercorn_https(recording, pki) as url:
        source = products(url, tls={"verify": str(pki.ca)}, http2=http2)
        client = SourceClient(source, credential_dir=tmp_path / "credentials")
        try:
            result = ingest(source, the_endpoint(source), PARTITION, layout=layout, client=client)
        finally:
            client.close()
    clear_limiters()
    assert result.report.status == "success"  # every page, the stated total reached
    assert result.report.pages > 1 and len(versions) == result.report.pages
    assert set(versions) == ({"2"} if http2 else {"1.1"})


def test_one_ssl_context_per_settings_for_the_api_and_the_token_requests(pki: Pki) -> None:
    url = "https://127.0.0.1:1"
    source = products(url, auth=oauth_cc(url), tls={"verify": str(pki.ca)}, http2=True)
    first, second = client_options(source), client_options(source)
    assert isinstance(first["verify"], ssl.SSLContext)
    assert first["verify"] is second["verify"]  # built once, not per client or token request
    assert first["http2"] is True and "transport" not in first
    flow = build_auth(source, redactor=Redactor())
    assert isinstance(flow, TokenFlow)
    assert flow._client_options()["verify"] is first["verify"]
