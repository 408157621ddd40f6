"""The source client: where a request is built, sent under the rate limit and retried, and where a
response becomes a `Page` with its evidence.

One `SourceClient` per source per process (`get_client`) holds one keep-alive `httpx.Client`, the
source's auth (with its shared token cache), its rate limiter and its redactor. `fetch()` walks one
paginated series; when the first page makes the page set known it fetches the rest concurrently
(up to `max_concurrency`, under the limiter) and still yields pages in order. `fetch_children()`
fans out one series per parent record.
"""

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson

from api_assets.config.models import EndpointConfig, SourceConfig
from api_assets.errors import ApiAssetsError, AuthError, FetchError, PaginationError
from api_assets.http.auth import build_auth
from api_assets.http.connection import client_options
from api_assets.http.decoding import BadEncoding, decode
from api_assets.http.ratelimit import get_limiter
from api_assets.http.redact import Redactor
from api_assets.http.retry import RetriesExhausted, RetryableBody, RetryPolicy
from api_assets.pages import EVIDENCE_HEADERS, FetchStats, Page
from api_assets.pagination.paginators import (
    Offset,
    PageRequest,
    Paginator,
    Response,
    make_paginator,
)
from api_assets.records import NotRecords, lookup, records_in

USER_AGENT = "api-assets/0.1 (+httpx)"


DEFAULT_MAX_PAGE_BYTES = 32 * 1024 * 1024


class PageTooLarge(FetchError):
    """A response body over the source's `max_page_bytes`; never retried."""


class NotFound(FetchError):
    """A 404 for one request; for a child endpoint it may be recorded instead of failing."""


def _hashable(value: Any) -> Any:
    """A key value usable in a set: lists and objects by their JSON text."""
    if isinstance(value, list | dict):
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    return value


class _Locked:
    """Thread-safe increments of the shared FetchStats."""

    def __init__(self, stats: FetchStats):
        self.stats = stats
        self.lock = threading.Lock()
        self.policy: RetryPolicy | None = None  # the series' retry policy, made on first use

    def on_retry(self, event: Any) -> None:
        status = getattr(event, "status", None)
        self.add(retries=1, throttled=1 if status == 429 else 0)

    def add(self, **counts: int) -> None:
        with self.lock:
            for name, n in counts.items():
                setattr(self.stats, name, getattr(self.stats, name) + n)


class InFlight:
    """How many of a known set of requests to keep in flight: enough to hide the wait for the
    network, and no more, up to `max_concurrency`.

    Each request's wall time splits into CPU time (`time.thread_time`: building, parsing,
    preparing the page) and the rest: waiting for the server, the network, the rate limiter and
    the GIL. To keep the pipeline busy, `ceil(wait / serial) + 1` requests must be in flight
    (Little's law), where `serial` is the part of a page's CPU time (fetching and consuming
    thread) that holds the GIL, taken as half: compression and Polars' parsing release it. The
    wait is the smallest of the last `SAMPLES` requests: waits for the GIL grow with the number of
    threads, so the minimum (some request always gets through without queueing) stays close to
    what the server and the network take, where a mean would talk itself into more threads.

    On a fast local API (a fraction of a millisecond per answer) that is 2, where a fixed 4 or 8
    threads only fought over the GIL and the two cores (10 % slower at 100k records, measured in
    `benchmarks/`); at 20 ms per answer it is `max_concurrency`. Recomputed after every page, so
    an API that slows down gets more requests in flight within a few pages."""

    SAMPLES = 16

    def __init__(self, limit: int):
        self.limit = max(1, limit)
        self.size = self.limit  # until a page has been measured: the configured concurrency
        self.peak = 1
        self._waits: deque[float] = deque(maxlen=self.SAMPLES)
        self._cpu: deque[float] = deque(maxlen=self.SAMPLES)
        self._consumer: deque[float] = deque(maxlen=self.SAMPLES)
        self._lock = threading.Lock()
        self._running = 0

    def timed(
        self,
        get: Callable[[PageRequest, int], tuple[Page, Response]],
        req: PageRequest,
        index: int,
    ) -> tuple[Page, Response]:
        """`get(req, index)`, its wall and CPU time recorded (in the thread that runs it)."""
        with self._lock:
            self._running += 1
            self.peak = max(self.peak, self._running)
        wall, cpu = time.perf_counter(), time.thread_time()
        try:
            return get(req, index)
        finally:
            cpu = time.thread_time() - cpu
            wall = time.perf_counter() - wall
            with self._lock:
                self._running -= 1
                self._waits.append(max(wall - cpu, 0.0))
                self._cpu.append(cpu)
                self._resize()

    def hand_over(self, page: Page) -> Iterator[Page]:
        """Yield `page` to the consumer (`yield from`) and record the CPU time the consuming
        thread spent on it before asking for the next."""
        started = time.thread_time()
        yield page
        self.consumed(time.thread_time() - started)

    def consumed(self, cpu: float) -> None:
        """The consuming thread's CPU time for one page (archive, table, schema)."""
        with self._lock:
            self._consumer.append(cpu)
            self._resize()

    def _resize(self) -> None:
        if self.limit == 1 or not self._waits:
            return
        cpu = sum(self._cpu) / len(self._cpu)
        if self._consumer:
            cpu += sum(self._consumer) / len(self._consumer)
        wait = min(self._waits)
        # Half of a page's CPU time (gzip, sha256, Polars' parsing) runs beside other pages'
        # work with the GIL released: what the pages queue for is the other half.
        serial = cpu / 2
        want = math.ceil(wait / serial) + 1 if serial > 0 else self.limit
        self.size = max(1, min(self.limit, want))


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

    def _where(self, endpoint: EndpointConfig, url: str) -> str:
        return f"source `{self.source.name}`, endpoint `{endpoint.name}`, {self.redactor.url(url)}"

    def get_page(
        self,
        endpoint: EndpointConfig,
        path: str,
        request: PageRequest,
        base_params: dict[str, Any],
        paginator: Paginator,
        *,
        index: int,
        counts: _Locked,
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
            with self.limiter.acquire():
                counts.add(requests=1)
                response, parsed["encoding"] = self._send_capped(endpoint, url, params)
            if not self.auth.per_credential_budget:
                # With key rotation the headers describe one key, not the source: the rotation
                # flow parks exhausted keys itself.
                self.limiter.observe(response.status_code, response.headers)
            if response.status_code == 429:
                pass  # counted by on_retry when retried; a final 429 is counted below
            if response.status_code == 200:
                try:
                    body = orjson.loads(response.content)
                except orjson.JSONDecodeError as exc:
                    raise RetryableBody(
                        f"the API answered 200 with a body that is not JSON ({exc}): "
                        f"{response.content[:200]!r}"
                    ) from None
                try:
                    parsed["records"] = records_in(body, endpoint.records_path)
                except NotRecords as exc:
                    raise RetryableBody(str(exc)) from None
                parsed["body"] = body
            return response

        policy = counts.policy
        if policy is None:  # one per series: thread-safe, and cheaper than one per request
            policy = counts.policy = RetryPolicy(
                self.source.retry.max_attempts,
                self.source.retry.max_backoff_seconds,
                on_retry=counts.on_retry,
                redactor=self.redactor,
            )
        started = time.monotonic()
        try:
            response, attempts = policy.call(send)
        except RetryableBody as exc:
            # Name the whole request (base URL and query, redacted), not just the path: which
            # page of the series failed is what the reader needs next.
            shown = self._request_url(url, params)
            raise FetchError(
                f"{self._where(endpoint, shown)}: {self.redactor.text(str(exc))}",
                url=self.redactor.url(shown),
            ) from None
        except ApiAssetsError as exc:
            if isinstance(exc, RetriesExhausted) and exc.status == 429:
                # The 429 that exhausted the attempts was never seen by `on_retry` (no retry
                # followed it): count it here, so `throttled` is every 429 the server sent.
                counts.add(throttled=1)
            wrapped = type(exc)(
                self.redactor.text(
                    f"{self._where(endpoint, self._request_url(url, params))}: {exc}"
                )
            )
            # Keep what callers read off the error (`status`, `url`, `attempts`, `error`): the
            # message alone used to be copied, so a 503 that exhausted the retries had no status.
            for attr, value in vars(exc).items():
                redacted = self.redactor.url(value) if attr == "url" and value else value
                setattr(wrapped, attr, redacted)
            raise wrapped from None
        elapsed = time.monotonic() - started
        if response.status_code != 200:
            if response.status_code == 429:
                counts.add(throttled=1)
            self._raise_for_status(endpoint, response)

        headers = {k: v for k in EVIDENCE_HEADERS if (v := response.headers.get(k)) is not None}
        if parsed.get("encoding"):
            headers["content-encoding"] = parsed["encoding"]
        links = {
            str(rel): str(link["url"])
            for rel, link in response.links.items()
            if rel is not None and "url" in link
        }
        view = Response(
            body=parsed["body"],
            headers={k.lower(): v for k, v in response.headers.items()},
            url=str(response.url),
            records=parsed["records"],
            links=links,
        )
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
            total_reported=paginator.total_reported(view),
        )
        counts.add(pages=1, fetched=len(page.records), bytes=page.nbytes)
        if page.total_reported is not None:
            with counts.lock:
                counts.stats.total_timeline.append(
                    (started, started + elapsed, page.total_reported)
                )
        if prepare is not None:
            prepare(page)
        return page, view

    def _send_capped(
        self, endpoint: EndpointConfig, url: str, params: dict[str, Any] | None
    ) -> tuple[httpx.Response, str | None]:
        """Send one request and read its body decoded once, with two caps: the bytes read off
        the wire (`max_wire_page_bytes`) and the decoded size (`max_page_bytes`). Over either it
        fails cleanly (`PageTooLarge`, not retried) instead of exhausting memory: decoding runs
        in bounded steps, so a decompression bomb stops at the cap. Returns the response with
        the decoded body (and no Content-Encoding left to undo) and the encoding it came in."""
        cap, wire_cap = self.source.max_page_bytes, self.source.wire_page_bytes
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
                wire = self._wire(endpoint, url, response, wire_cap, encoding)
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
    ) -> Iterator[bytes]:
        """The body's bytes as received, at most `cap` of them."""
        size = 0
        for chunk in response.iter_raw():
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
            f"{self._where(endpoint, url)}: {what} is over {cap} bytes ({size} read): refusing "
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
        where = self._where(endpoint, str(response.url))
        hint = {
            400: "the API rejected a parameter: check `params` and the paginator settings",
            401: "the credential was refused: check the auth settings and secrets",
            403: "the credential lacks permission for this endpoint",
            404: "check `path` and `base_url`",
            429: "still rate limited after all retries: lower `requests_per_second`",
        }.get(status, "the API failed after all retries" if status >= 500 else "")
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

    def fetch(
        self,
        endpoint: EndpointConfig,
        stats: FetchStats,
        *,
        params: dict[str, Any] | None = None,
        path_values: dict[str, Any] | None = None,
        first_index: int = 0,
        concurrent: bool = True,
        prepare: Callable[[Page], None] | None = None,
    ) -> Iterator[Page]:
        """Yield the pages of one series in order. Raises on loops, errors and bad bodies.

        `prepare(page)` runs in the thread that fetched the page, before it is yielded: the
        consumer's per-page work then runs in as many threads as fetch (what releases the GIL,
        compression and Polars parsing, overlaps with the fetching) instead of queueing in the one
        consuming thread. It must not raise: it records what it made on `page.prepared`."""
        counts = _Locked(stats)
        paginator = make_paginator(endpoint.paginator)
        path = endpoint.path.format(**path_values) if path_values else endpoint.path
        base = {**endpoint.params, **(params or {})}
        max_pages = endpoint.paginator.max_pages
        signatures: dict[tuple[Any, ...], int] = {}
        seen_requests: set[Any] = set()
        index = first_index

        def get(req: PageRequest, i: int) -> tuple[Page, Response]:
            return self.get_page(
                endpoint,
                path,
                req,
                base,
                paginator,
                index=i,
                counts=counts,
                parent=path_values,
                prepare=prepare,
            )

        def judge(page: Page, previous: Page | None) -> None:
            sig = self._signature(endpoint, page)
            if sig is not None and sig in signatures:
                raise PaginationError(
                    f"{self._where(endpoint, page.url)}: page {page.index + 1} repeats page "
                    f"{signatures[sig] + 1} (same records): the API ignores the paging parameter "
                    f"or its pages loop; refusing to load duplicates"
                )
            if sig is not None:
                signatures[sig] = page.index
            if page.total_reported is not None:
                stats.total_reported = page.total_reported
                if not stats.totals_seen or stats.totals_seen[-1] != page.total_reported:
                    stats.totals_seen.append(page.total_reported)
            if previous is not None:
                if not previous.records:
                    if previous.index not in stats.empty_pages:
                        stats.empty_pages.append(previous.index)
                elif paginator.page_size and len(previous.records) < paginator.page_size:
                    stats.short_pages.append(previous.index)

        def judge_announced(page: Page) -> None:
            # A page of a set the API announced (its total or page count) must hold records: an
            # empty one, even the last, contradicts the API's own count. Without this a
            # page-number series with only `total_pages_path` and an overstated page count
            # passed completeness silently.
            if not page.records and page.index not in stats.empty_pages:
                stats.empty_pages.append(page.index)
                stats.warnings.append(
                    f"page {page.index + 1} is empty although the API's stated total or page "
                    f"count announced it"
                )

        window = InFlight(self.source.rate_limit.max_concurrency)
        req = paginator.first()
        seen_requests.add(req.fingerprint())
        page, view = window.timed(get, req, index)
        judge(page, None)
        yield page
        previous = page

        planned = paginator.plan(view) if concurrent else None
        while planned:
            if max_pages is not None and index + 1 - first_index + len(planned) > max_pages - 0:
                keep = max(0, max_pages - (index + 1 - first_index))
                planned = planned[:keep]
                paginator.stop_reason = "max_pages"
            for page in self._fetch_planned(planned, get, index + 1, window):
                judge(page, previous)
                judge_announced(page)
                yield page
                previous = page
                index = page.index
            # The total may have grown while we paged (inserts): plan the rest, never stop short.
            if (
                isinstance(paginator, Offset)
                and paginator.stop_reason != "max_pages"
                and stats.total_reported is not None
                and previous.records
            ):
                planned = paginator.plan_until(stats.total_reported)
            else:
                planned = []
        if paginator.stop_reason is None:
            current, reasked = req, False
            while True:
                req_next = self._next_request(endpoint, paginator, view, page)
                if req_next is None:
                    if page.records or page.index == first_index or reasked:
                        break
                    # An empty page ended the series. Trust it only after asking once more: a
                    # transient empty answer would otherwise truncate the partition silently.
                    reasked = True
                    index += 1
                    again, again_view = get(current, index)
                    yield again
                    if not again.records:
                        break
                    stats.warnings.append(
                        f"page {page.index + 1} came back empty, then with "
                        f"{len(again.records)} records when asked again: the API is flaky"
                    )
                    judge(again, previous)
                    page, view, previous = again, again_view, again
                    paginator.stop_reason = None
                    continue
                if max_pages is not None and index + 1 - first_index >= max_pages:
                    paginator.stop_reason = "max_pages"
                    break
                fp = req_next.fingerprint()
                if fp in seen_requests:
                    raise PaginationError(
                        f"{self._where(endpoint, page.url)}: pagination loop: the next request "
                        f"repeats an earlier one ({self.redactor.params(dict(req_next.params))}"
                        f"{' ' + self.redactor.url(req_next.url) if req_next.url else ''})"
                    )
                seen_requests.add(fp)
                index += 1
                current, reasked = req_next, False
                page, view = get(req_next, index)
                judge(page, previous)
                yield page
                previous = page
        # The API's total said the last page was full and final: ask for one page more, since
        # an understated total or page count would otherwise lose records silently.
        while (
            paginator.stop_reason == "total_reached"
            and previous.records
            and paginator.page_size
            and len(previous.records) >= paginator.page_size
            and (max_pages is None or index + 1 - first_index < max_pages)
        ):
            probe = paginator.probe()
            if probe is None or probe.fingerprint() in seen_requests:
                break
            seen_requests.add(probe.fingerprint())
            index += 1
            page, view = get(probe, index)
            if not page.records:
                yield page  # archived: the proof that nothing lies past the stated total
                break
            stats.beyond_total += len(page.records)
            stats.warnings.append(
                f"page {page.index + 1} past the API's stated total holds {len(page.records)} "
                f"records: the total was understated"
            )
            judge(page, previous)
            yield page
            previous = page
        stats.total_shrank = stats.total_shrank or total_shrank(stats.total_timeline)
        stats.concurrency = max(stats.concurrency, window.peak)
        if (
            paginator.stop_reason == "empty_page"
            and stats.short_pages
            and stats.short_pages[-1] == previous.index - 1
        ):
            # A final empty page is the normal end of an offset/keyset series without a total,
            # and the short page just before it was the real last page (the client asks once
            # more rather than trust a short page): not "a short page before the last". Without
            # this every such run ended with a completeness WARN.
            stats.short_pages.pop()
        stats.stop_reason = _combine_stop(stats.stop_reason, paginator.stop_reason)

    def _next_request(
        self, endpoint: EndpointConfig, paginator: Paginator, view: Response, page: Page
    ) -> PageRequest | None:
        """The paginator's next request; its errors name the source, endpoint and URL."""
        try:
            return paginator.next(view)
        except PaginationError as exc:
            raise PaginationError(f"{self._where(endpoint, page.url)}: {exc}") from None

    def _signature(self, endpoint: EndpointConfig, page: Page) -> tuple[Any, ...] | None:
        """What makes a page recognizable if the API serves it again."""
        if not page.records:
            return None
        keys = endpoint.primary_key_fields
        if keys:
            first, last = page.records[0], page.records[-1]
            return (
                len(page.records),
                tuple(_hashable(lookup(first, k)) for k in keys),
                tuple(_hashable(lookup(last, k)) for k in keys),
            )
        return (page.sha256,)

    def _fetch_planned(
        self,
        planned: list[PageRequest],
        get: Callable[[PageRequest, int], tuple[Page, Response]],
        first_index: int,
        window: "InFlight",
    ) -> Iterator[Page]:
        """Fetch known requests concurrently and yield pages in order; `window` says how many to
        keep in flight (at most `max_concurrency`) from what the pages so far cost."""
        workers = window.limit
        if workers == 1 or len(planned) == 1:
            for i, req in enumerate(planned):
                yield from window.hand_over(window.timed(get, req, first_index + i)[0])
            return
        # Pages come out in order, so a slow page holds up those behind it: the window counts
        # requests still running, and as many again may wait, fetched, for the consumer (at the
        # full window that is `2 * max_concurrency` pages, the fixed lookahead this replaced).
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="api-assets-page") as pool:
            futures: deque[Future[tuple[Page, Response]]] = deque()
            it = iter(enumerate(planned))

            def top_up() -> None:
                running = sum(1 for f in futures if not f.done())
                while running < window.size and len(futures) < 2 * window.size:
                    nxt = next(it, None)
                    if nxt is None:
                        return
                    futures.append(pool.submit(window.timed, get, nxt[1], first_index + nxt[0]))
                    running += 1

            try:
                top_up()
                while futures:
                    head = futures[0]
                    while not head.done():
                        wait([f for f in futures if not f.done()], return_when=FIRST_COMPLETED)
                        top_up()
                    futures.popleft()
                    page = head.result()[0]
                    top_up()
                    yield from window.hand_over(page)
            finally:
                for f in futures:
                    f.cancel()

    # --- parent → child fan-out --------------------------------------------------------------

    def fetch_children(
        self,
        endpoint: EndpointConfig,
        parents: Iterable[dict[str, Any]],
        stats: FetchStats,
        *,
        params: dict[str, Any] | None = None,
        prepare: Callable[[Page], None] | None = None,
    ) -> Iterator[Page]:
        """One series per parent (placeholder values), concurrently; pages re-indexed in the order
        they are yielded. A 404 is recorded in `stats.not_found` unless the endpoint says fail.
        `prepare` as in `fetch`."""
        assert endpoint.parent is not None
        fail_on_404 = endpoint.parent.on_not_found == "fail"

        lock = threading.Lock()
        running = 0  # series being fetched right now

        def one(values: dict[str, Any]) -> list[Page]:
            nonlocal running
            series = FetchStats()
            with lock:
                running += 1
                stats.concurrency = max(stats.concurrency, running)
            try:
                pages = list(
                    self.fetch(
                        endpoint,
                        series,
                        params=params,
                        path_values=values,
                        concurrent=False,
                        prepare=prepare,
                    )
                )
            except NotFound:
                if fail_on_404:
                    raise
                with lock:
                    stats.not_found.append(values)
                pages = []
            finally:
                with lock:
                    running -= 1
            with lock:
                for name in ("requests", "retries", "throttled", "pages", "fetched", "bytes"):
                    setattr(stats, name, getattr(stats, name) + getattr(series, name))
                stats.empty_pages.extend(series.empty_pages)
                stats.short_pages.extend(series.short_pages)
                stats.stop_reason = _combine_stop(stats.stop_reason, series.stop_reason)
            return pages

        workers = max(1, self.source.rate_limit.max_concurrency)
        index = 0
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="api-assets-child") as pool:
            futures: list[Future[list[Page]]] = []
            it = iter(parents)
            try:
                for values in it:
                    futures.append(pool.submit(one, values))
                    if len(futures) >= workers * 4:
                        break
                while futures:
                    pages = futures.pop(0).result()
                    nxt = next(it, None)
                    if nxt is not None:
                        futures.append(pool.submit(one, nxt))
                    for page in pages:
                        page.index = index
                        index += 1
                        yield page
            finally:
                for f in futures:
                    f.cancel()
        if stats.stop_reason is None:
            stats.stop_reason = "signal"


def total_shrank(timeline: list[tuple[float, float, int]]) -> tuple[int, int] | None:
    """A stated total that fell between two requests, one answered before the other was sent
    (`(before, after)`), or None. Happens-before keeps concurrent pages, whose totals may arrive
    out of order, from looking like a shrink."""
    by_sent = sorted(timeline)
    by_done = sorted(timeline, key=lambda t: t[1])
    i, best = 0, None
    for sent, _done, total in by_sent:
        while i < len(by_done) and by_done[i][1] < sent:
            best = by_done[i][2] if best is None else max(best, by_done[i][2])
            i += 1
        if best is not None and total < best:
            return (best, total)
    return None


_STOP_RANK = {
    None: 0,
    "single_page": 1,
    "signal": 1,
    "total_reached": 1,
    "empty_page": 1,
    "max_pages": 9,
}


def _combine_stop(a: str | None, b: str | None) -> str | None:
    """The stop reason of several series: `max_pages` anywhere wins (it is the one that matters)."""
    return a if _STOP_RANK.get(a, 1) >= _STOP_RANK.get(b, 1) else b


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
