"""The source client: where a request is built, sent under the rate limit and retried, and where a
response becomes a `Page` with its evidence.

One `SourceClient` per source per process (`get_client`) holds one keep-alive `httpx.Client`, the
source's auth (with its shared token cache), its rate limiter, its redactor (also masking the
HTTP libraries' logs) and the origin rules of its next URLs. `get_page()` sends
one page request (with retries) and returns the `Page` and what a paginator may read of the
answer; walking a whole series is `api_assets.pagination.series`.
"""

import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson

from api_assets.config.models import EndpointConfig, SourceConfig
from api_assets.errors import (
    ApiAssetsError,
    AuthError,
    FetchError,
    ResponseTooSlow,
    ServerWaitTooLong,
)
from api_assets.http.auth import build_auth
from api_assets.http.connection import client_options
from api_assets.http.decoding import BadEncoding, decode
from api_assets.http.origins import NextOrigins
from api_assets.http.ratelimit import get_limiter
from api_assets.http.redact import Redactor, redact_logs
from api_assets.http.retry import RetriesExhausted, RetryableBody, RetryPolicy
from api_assets.pages import EVIDENCE_HEADERS, FetchStats, Page, PageRequest, Response
from api_assets.records import NotRecords, records_in

USER_AGENT = "api-assets/0.1 (+httpx)"


DEFAULT_MAX_PAGE_BYTES = 32 * 1024 * 1024


class PageTooLarge(FetchError):
    """A response body over the source's `max_page_bytes`; never retried."""


class NotFound(FetchError):
    """A 404 for one request; for a child endpoint it may be recorded instead of failing."""


class SeriesCounts:
    """Thread-safe increments of one series' FetchStats, and the series' retry policy."""

    def __init__(self, stats: FetchStats):
        self.stats = stats
        self.lock = threading.Lock()
        self.policy: RetryPolicy | None = None  # the series' retry policy, made on first use

    def on_retry(self, event: Any) -> None:
        status = getattr(event, "status", None)
        self.add(retries=1, throttled=1 if status == 429 else 0)

    def add(self, **counts: float) -> None:
        with self.lock:
            for name, n in counts.items():
                setattr(self.stats, name, getattr(self.stats, name) + n)


class SourceClient:
    """HTTP for one source: auth, rate limit, retries, pagination, evidence."""

    def __init__(
        self,
        source: SourceConfig,
        *,
        shared_dir: Path | None = None,
        credential_dir: Path | None = None,
        transport: httpx.BaseTransport | None = None,
    ):
        self.source = source
        self.redactor = Redactor.for_source(source)
        # httpx logs every request's whole URL (INFO), query keys and all
        redact_logs(self.redactor)
        self.next_origins = NextOrigins(source)
        self.auth = build_auth(
            source, redactor=self.redactor, credential_dir=credential_dir, transport=transport
        )
        rl = source.rate_limit
        # One limiter per API, credential and configured budget (shared across processes).
        key = (
            f"{source.name}:{self.auth.label}:{source.base_url}:"
            f"{rl.requests_per_second}:{rl.burst}:{rl.max_concurrency}"
        )
        self.limiter = get_limiter(key, rl, shared_dir)
        self.http = httpx.Client(
            base_url=source.base_url,
            headers={"User-Agent": USER_AGENT, **source.headers},
            timeout=source.timeout_seconds,
            auth=self.auth,
            follow_redirects=False,
            # TLS (verify, client certificate), proxy and HTTP/2, as for the token requests
            **client_options(
                source,
                transport=transport,
                limits=httpx.Limits(
                    max_connections=rl.max_concurrency + 2,
                    max_keepalive_connections=rl.max_concurrency + 2,
                ),
            ),
        )

    def close(self) -> None:
        self.http.close()

    # --- one request -------------------------------------------------------------------------

    def where(self, endpoint: EndpointConfig, url: str) -> str:
        return f"source `{self.source.name}`, endpoint `{endpoint.name}`, {self.redactor.url(url)}"

    def get_page(
        self,
        endpoint: EndpointConfig,
        path: str,
        request: PageRequest,
        base_params: dict[str, Any],
        total_of: Callable[[Response], int | None],
        *,
        index: int,
        counts: SeriesCounts,
        parent: dict[str, Any] | None = None,
        prepare: Callable[[Page], None] | None = None,
    ) -> tuple[Page, Response]:
        """Send one page request (with retries) and turn the answer into a Page; `prepare`
        then runs on it in this (the fetching) thread."""
        params: dict[str, Any] | None
        if request.url is not None:
            # The next URL carries its own query: passing params (even empty) would replace it.
            url, params = request.url, None
        else:
            url = path
            params = {k: v for k, v in {**base_params, **request.params}.items() if v is not None}
        parsed: dict[str, Any] = {}

        def send() -> httpx.Response:
            with self.limiter.acquire() as waited:
                counts.add(requests=1, rate_limit_wait_s=waited)
                response, parsed["encoding"] = self._send_capped(endpoint, url, params)
            if not self.auth.per_credential_budget:
                # With key rotation the headers describe one key, not the source: the rotation
                # flow parks exhausted keys itself.
                self.limiter.observe(response.status_code, response.headers)
            if response.status_code == 200:  # a 429 is counted by on_retry, or below if final
                parsed["body"], parsed["records"] = self._records_of(endpoint, response)
            return response

        started = time.monotonic()
        response, attempts = self._retried(send, endpoint, url, params, counts)
        elapsed = time.monotonic() - started
        if response.status_code != 200:
            if response.status_code == 429:
                counts.add(throttled=1)
            self._raise_for_status(endpoint, response)
        page, view = self._page_of(response, parsed, total_of, index, attempts, elapsed, parent)
        counts.add(pages=1, fetched=len(page.records), bytes=page.nbytes)
        if page.total_reported is not None:
            with counts.lock:
                counts.stats.total_timeline.append(
                    (started, started + elapsed, page.total_reported)
                )
        if prepare is not None:
            prepare(page)
        return page, view

    def _page_of(
        self,
        response: httpx.Response,
        parsed: dict[str, Any],
        total_of: Callable[[Response], int | None],
        index: int,
        attempts: int,
        elapsed: float,
        parent: dict[str, Any] | None,
    ) -> tuple[Page, Response]:
        """The answer as a `Page` (evidence, secrets redacted) and as what a paginator reads."""
        view = Response(
            body=parsed["body"],
            headers={k.lower(): v for k, v in response.headers.items()},
            url=str(response.url),
            records=parsed["records"],
            links={
                str(rel): str(link["url"])
                for rel, link in response.links.items()
                if rel is not None and "url" in link
            },
        )
        headers = {k: v for k in EVIDENCE_HEADERS if (v := response.headers.get(k)) is not None}
        if parsed.get("encoding"):
            headers["content-encoding"] = parsed["encoding"]
        page = Page(
            index=index,
            url=self.redactor.url(str(response.url.copy_with(query=None))),
            params=self.redactor.params(dict(response.url.params)),
            status=response.status_code,
            headers=headers,
            fetched_at=datetime.now(UTC),
            body=response.content,
            records=view.records,
            attempts=attempts,
            elapsed_s=elapsed,
            parent=parent,
            total_reported=total_of(view),
        )
        return page, view

    def _records_of(
        self, endpoint: EndpointConfig, response: httpx.Response
    ) -> tuple[Any, list[dict[str, Any]]]:
        """The parsed body of a 200 and its records; a broken body is retried once."""
        try:
            body = orjson.loads(response.content)
        except orjson.JSONDecodeError as exc:
            raise RetryableBody(
                f"the API answered 200 with a body that is not JSON ({exc}): "
                f"{response.content[:200]!r}"
            ) from None
        try:
            return body, records_in(body, endpoint.records_path)
        except NotRecords as exc:
            raise RetryableBody(str(exc)) from None

    def _retried(
        self,
        send: Callable[[], httpx.Response],
        endpoint: EndpointConfig,
        url: str,
        params: dict[str, Any] | None,
        counts: SeriesCounts,
    ) -> tuple[httpx.Response, int]:
        """`send` under the series' retry policy: the last answer and the attempts it took. An
        error names the whole request (base URL and query, redacted), not just the path: which
        page of the series failed is what the reader needs next."""
        policy = counts.policy
        if policy is None:  # one per series: thread-safe, and cheaper than one per request
            policy = counts.policy = RetryPolicy(
                self.source.retry.max_attempts,
                self.source.retry.max_backoff_seconds,
                on_retry=counts.on_retry,
                redactor=self.redactor,
                max_pause_seconds=self.source.rate_limit.max_pause_seconds,
            )
        try:
            return policy.call(send)
        except RetryableBody as exc:
            shown = self._request_url(url, params)
            raise FetchError(
                f"{self.where(endpoint, shown)}: {self.redactor.text(str(exc))}",
                url=self.redactor.url(shown),
            ) from None
        except ApiAssetsError as exc:
            if isinstance(exc, RetriesExhausted | ServerWaitTooLong) and exc.status == 429:
                # The 429 that exhausted the attempts (or asked for too long a wait) was never
                # seen by `on_retry` (no retry followed it): count it here, so `throttled` is
                # every 429 the server sent.
                counts.add(throttled=1)
            wrapped = type(exc)(
                self.redactor.text(f"{self.where(endpoint, self._request_url(url, params))}: {exc}")
            )
            # Keep what callers read off the error (`status`, `url`, `attempts`, `error`): the
            # message alone used to be copied, so a 503 that exhausted the retries had no status.
            for attr, value in vars(exc).items():
                redacted = self.redactor.url(value) if attr == "url" and value else value
                setattr(wrapped, attr, redacted)
            raise wrapped from None

    def _send_capped(
        self, endpoint: EndpointConfig, url: str, params: dict[str, Any] | None
    ) -> tuple[httpx.Response, str | None]:
        """Send one request and read its body decoded once, with two caps: the bytes read off
        the wire (`max_wire_page_bytes`) and the decoded size (`max_page_bytes`). Over either it
        fails cleanly (`PageTooLarge`, not retried) instead of exhausting memory: decoding runs
        in bounded steps, so a decompression bomb stops at the cap. Returns the response with
        the decoded body (and no Content-Encoding left to undo) and the encoding it came in."""
        cap, wire_cap = self.source.max_page_bytes, self.source.wire_page_bytes
        # every read waits at most `timeout_seconds`; the whole response, this long
        deadline = time.monotonic() + self.source.deadline_seconds
        with self.http.stream(
            endpoint.method, url, params=params, headers=endpoint.headers or None
        ) as response:
            encoding = response.headers.get("content-encoding")
            declared = response.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > wire_cap:
                raise PageTooLarge(
                    self._too_large(endpoint, url, int(declared), wire_cap, encoding, wire=True)
                )
            if response.is_stream_consumed:
                # a transport that hands over a body already read and decoded (MockTransport)
                wire, encoding = iter([response.content]), None
            else:
                wire = self._wire(endpoint, url, response, wire_cap, encoding, deadline)
            chunks: list[bytes] = []
            size = 0
            try:
                for chunk in decode(wire, encoding):
                    size += len(chunk)
                    if size > cap:
                        raise PageTooLarge(self._too_large(endpoint, url, size, cap, encoding))
                    chunks.append(chunk)
            except BadEncoding as exc:
                # Retried like any broken body: a proxy or server that garbles one answer
                # often gets the next one right.
                raise RetryableBody(str(exc)) from None
        headers = [
            (k, v)
            for k, v in response.headers.raw
            if k.lower() not in (b"content-encoding", b"content-length")
        ]
        decoded = httpx.Response(
            response.status_code,
            headers=headers,
            content=b"".join(chunks),
            request=response.request,
        )
        return decoded, encoding

    def _wire(
        self,
        endpoint: EndpointConfig,
        url: str,
        response: httpx.Response,
        cap: int,
        encoding: str | None,
        deadline: float,
    ) -> Iterator[bytes]:
        """The body's bytes as received, at most `cap` of them, and none after `deadline` (a
        `time.monotonic()`): a body trickled slower than that is `ResponseTooSlow`, retried
        like a timeout."""
        size = 0
        chunks = response.iter_raw()
        while True:
            if time.monotonic() > deadline:  # before each read: after the headers, each chunk
                raise ResponseTooSlow(
                    "the response was still arriving after `request_deadline_seconds` "
                    f"({self.source.deadline_seconds:g} s; {size} bytes of body read, each read "
                    "within `timeout_seconds`): a server trickling its answer; raise "
                    "`request_deadline_seconds` if the API is this slow on purpose"
                )
            chunk = next(chunks, None)
            if chunk is None:
                return
            size += len(chunk)
            if size > cap:
                raise PageTooLarge(self._too_large(endpoint, url, size, cap, encoding, wire=True))
            yield chunk

    def _too_large(
        self,
        endpoint: EndpointConfig,
        url: str,
        size: int,
        cap: int,
        encoding: str | None = None,
        *,
        wire: bool = False,
    ) -> str:
        setting = "max_page_bytes"
        if wire and encoding:
            what, setting = (
                f"the response as sent ({encoding}, before decoding)",
                "max_wire_page_bytes",
            )
        elif wire:
            what = "the response body"
            if self.source.max_wire_page_bytes is not None:
                setting = "max_wire_page_bytes"
        elif encoding:
            what = f"the response body, decoded from {encoding},"
        else:
            what = "the response body"
        return (
            f"{self.where(endpoint, url)}: {what} is over {cap} bytes ({size} read): refusing "
            f"to load it whole; lower the page size (`limit`) or raise `{setting}`"
        )

    def _request_url(self, url: str, params: dict[str, Any] | None) -> str:
        """The absolute URL of a request with its query (unredacted: callers redact it)."""
        try:
            full = self.http.base_url.join(url) if not url.startswith(("http:", "https:")) else url
            return str(httpx.URL(str(full), params=params) if params else full)
        except (httpx.InvalidURL, TypeError, ValueError):
            return url

    def _raise_for_status(self, endpoint: EndpointConfig, response: httpx.Response) -> None:
        status = response.status_code
        excerpt = self.redactor.text(response.text[:300])
        where = self.where(endpoint, str(response.url))
        hint = {
            400: "the API rejected a parameter: check `params` and the paginator settings",
            401: "the credential was refused: check the auth settings and secrets",
            403: "the credential lacks permission for this endpoint",
            404: "check `path` and `base_url`",
            429: "still rate limited after all retries: lower `requests_per_second`",
        }.get(status, "the API failed after all retries" if status >= 500 else "")
        location = response.headers.get("location")
        if 300 <= status < 400 and location:
            # Redirects are never followed: auth headers must not go to a URL nobody configured.
            hint = (
                f"the API redirects to {self.redactor.url(location)}; redirects are not followed, "
                f"so point `base_url` or `path` at the new location"
            )
        message = f"{where}: HTTP {status}: {excerpt!r}" + (f" ({hint})" if hint else "")
        if status == 401:
            # The API refused the credential (token flows already refreshed once): an AuthError,
            # as errors.py promises, so that callers can tell "fix the secret" from "retry later".
            raise AuthError(message)
        cls = NotFound if status == 404 else FetchError
        raise cls(
            message,
            status=status,
            url=self.redactor.url(str(response.url)),
        )

    # --- one paginated series ----------------------------------------------------------------


_clients: dict[int, SourceClient] = {}
_clients_lock = threading.Lock()


def get_client(
    source: SourceConfig, *, shared_dir: Path | None = None, credential_dir: Path | None = None
) -> SourceClient:
    """The process's client for `source` (one per source configuration per process)."""
    key = id(source)  # the client keeps `source` alive, so the id stays unique
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            client = SourceClient(source, shared_dir=shared_dir, credential_dir=credential_dir)
            _clients[key] = client
        return client
