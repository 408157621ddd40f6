"""How a source connects: TLS verification, a client certificate (mutual TLS), a proxy, HTTP/2.

`client_options(source)` turns the source's `tls`, `proxy` and `http2` settings into keyword
arguments of `httpx.Client`. The API client (`SourceClient`) and the token requests of the auth
flows both use it, so every connection a source makes is made the same way.

- TLS: one `ssl.SSLContext` per settings per process (`ssl_context`), built once (it reads the CA
  bundle and decrypts the client key) and shared by every client of the source. `verify: true`
  trusts what httpx trusts (certifi, or `SSL_CERT_FILE` / `SSL_CERT_DIR`); a path trusts that CA
  bundle only; `false` checks nothing (unsafe).
- Proxy: `proxy:` sends every request through that proxy (`NO_PROXY` does not apply to it), and a
  failure on the way names it, password masked. Unset, httpx's `trust_env` applies the standard
  environment: `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY` and `NO_PROXY`.
- `refusal(exc)` words a failure that trying again cannot fix (a certificate that could not be
  verified, a client certificate the server refused, a proxy that wants other credentials);
  `disconnect_hint(exc)` says what a TLS connection closed before any answer may mean. The retry
  policy reads both.
"""

import functools
import ssl
from collections.abc import Iterator
from typing import Any

import httpx

from api_assets.config.models import SourceConfig, TlsConfig
from api_assets.errors import ConnectionSetupError
from api_assets.http.redact import shown_proxy

# TLS alerts by which a server refuses the client certificate it got (or did not get).
_CLIENT_CERT_ALERTS = frozenset(
    {
        "TLSV13_ALERT_CERTIFICATE_REQUIRED",
        "SSLV3_ALERT_BAD_CERTIFICATE",
        "SSLV3_ALERT_CERTIFICATE_UNKNOWN",
        "SSLV3_ALERT_CERTIFICATE_EXPIRED",
        "SSLV3_ALERT_CERTIFICATE_REVOKED",
        "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE",
        "TLSV1_ALERT_UNKNOWN_CA",
        "TLSV1_ALERT_ACCESS_DENIED",
    }
)


@functools.lru_cache(maxsize=64)
def ssl_context(tls: TlsConfig, http2: bool = False) -> ssl.SSLContext:
    """The SSL context of these settings, built once per process. `http2` is part of the key
    only because httpcore sets the context's ALPN protocols on every connection it opens: clients
    that disagree about HTTP/2 must not share one. Raises `ssl.SSLError` or `OSError` when the
    files cannot be loaded (the sources loader has checked them: they changed since)."""
    if tls.verify is True:
        context = httpx.create_ssl_context(verify=True)  # certifi, SSL_CERT_FILE or SSL_CERT_DIR
    elif tls.verify is False:
        context = httpx.create_ssl_context(verify=False)
    else:
        context = ssl.create_default_context(cafile=tls.verify)
    if tls.client_cert is not None:
        password = tls.key_password or ""
        # a callable, always: without one OpenSSL would prompt on the terminal for a password
        context.load_cert_chain(tls.client_cert, tls.client_key, password=lambda: password)
    return context


def client_options(
    source: SourceConfig,
    *,
    transport: httpx.BaseTransport | None = None,
    limits: httpx.Limits | None = None,
) -> dict[str, Any]:
    """Keyword arguments of `httpx.Client` for a connection of `source`: `verify` (the source's
    SSL context), `http2`, `limits` when given, and `transport` when there is one: the injected
    `transport` (tests: it is the network, so `proxy` does not apply), else a `ProxyTransport`
    when the source has a `proxy`. Call it for each new client: a transport is not shared.

    Raises `ConnectionSetupError` when the TLS files cannot be loaded any more."""
    try:
        context = ssl_context(source.tls, source.http2)
    except (ssl.SSLError, OSError) as exc:
        reason = (
            getattr(exc, "strerror", None) or getattr(exc, "reason", None) or type(exc).__name__
        )
        raise ConnectionSetupError(
            f"source `{source.name}`: the `tls` files could not be loaded ({reason}); check "
            "them with `api-assets validate`"
        ) from None
    options: dict[str, Any] = {"verify": context, "http2": source.http2}
    if limits is not None:
        options["limits"] = limits
    if transport is not None:
        options["transport"] = transport
    elif source.proxy is not None:
        options["transport"] = ProxyTransport(source.proxy.get_secret_value(), **options)
    return options


class ProxyTransport(httpx.BaseTransport):
    """httpx's own transport through the source's proxy. A failure on the way names the proxy
    (password masked), and a 407 from it is a `ProxyError`, never an answer of the API."""

    def __init__(self, proxy_url: str, **options: Any):
        self.shown = shown_proxy(proxy_url)
        self._inner = httpx.HTTPTransport(proxy=httpx.Proxy(proxy_url), **options)

    def __repr__(self) -> str:
        return f"ProxyTransport({self.shown})"

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        try:
            response = self._inner.handle_request(request)
        except httpx.TransportError as exc:
            raise type(exc)(f"{exc} (through the proxy {self.shown})", request=request) from exc
        if response.status_code == 407:  # an http:// request: the proxy answers in its place
            response.close()
            raise httpx.ProxyError(
                f"407 Proxy Authentication Required (through the proxy {self.shown})",
                request=request,
            )
        return response

    def close(self) -> None:
        self._inner.close()


# --- what a failed connection means ----------------------------------------------------------


def _causes(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def refusal(exc: BaseException) -> str | None:
    """A sentence for a failure that another attempt cannot fix, None for any other: the
    server's certificate could not be verified, the server refused the client certificate by a
    TLS alert, or the proxy answered 407."""
    for cause in _causes(exc):
        if isinstance(cause, ssl.SSLCertVerificationError):
            reason = cause.verify_message or cause.reason or "verification failed"
            return (
                f"TLS: the server's certificate could not be verified ({reason}); if the API's "
                "certificate comes from a private CA, set this source's `tls.verify` to that CA "
                "bundle (PEM)"
            )
        if isinstance(cause, ssl.SSLError) and cause.reason in _CLIENT_CERT_ALERTS:
            return (
                f"TLS: the server refused the connection ({cause.reason}): it wants a client "
                "certificate that it trusts (mutual TLS); check `tls.client_cert` and "
                "`tls.client_key` of this source"
            )
    if isinstance(exc, httpx.ProxyError) and str(exc).startswith("407"):
        return f"the proxy refused the credentials: {exc}; check the user and password in `proxy`"
    return None


def disconnect_hint(exc: BaseException) -> str | None:
    """What it may mean that the server closed a TLS connection before any answer: a server that
    wants a client certificate and gets none it trusts often just hangs up (uvicorn, hypercorn
    and others send no alert). None for anything else."""
    try:
        scheme = exc.request.url.scheme if isinstance(exc, httpx.RequestError) else None
    except RuntimeError:  # an error raised without its request
        scheme = None
    if scheme != "https" or not isinstance(exc, httpx.TransportError):
        return None
    closed = any(
        isinstance(cause, ssl.SSLEOFError | ssl.SSLZeroReturnError | ConnectionResetError)
        for cause in _causes(exc)
    ) or "without sending a response" in str(exc)
    if not closed:
        return None
    return (
        "the server closed the TLS connection without answering; a server that requires a "
        "client certificate (mutual TLS) does this when it gets none it trusts: check "
        "`tls.client_cert` of this source"
    )
