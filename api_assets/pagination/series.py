"""One paginated series of one endpoint, from its first request to the proof that it ended.

`fetch(client, endpoint, stats)` yields the pages in order. The paginator says what to ask next
and when the API signalled the last page; the series adds the rules every style shares:

- a known page set (a stated total or page count) is fetched concurrently (`inflight.py`), and
  re-planned when the total grew while it was paged;
- a page that repeats an earlier one, or a request that repeats an earlier one, is a loop
  (`PaginationError`), never a silent re-read;
- an empty page that would end the series is asked for once more before it is trusted;
- a full last page of a stated total is followed by one probe past it (an understated total
  would otherwise lose records), and records found there are counted as evidence;
- `max_pages` caps the series and says so (`stop_reason` "max_pages": not proof of completeness);
- a next URL on another origin is refused unless the source allows it (`http/origins.py`);
- a child's parent values are pasted into its path as one escaped segment each (`fill_path`);
- empty and short pages before the last, stated totals and their timeline go into `stats`.
"""

from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

import orjson

from api_assets.config.models import EndpointConfig
from api_assets.errors import PaginationError
from api_assets.http.client import SeriesCounts, SourceClient
from api_assets.pages import FetchStats, Page, PageRequest, Response
from api_assets.pagination.inflight import InFlight, fetch_planned
from api_assets.pagination.paginators import Paginator, make_paginator
from api_assets.records import lookup

Prepare = Callable[[Page], None]


def fetch(
    client: SourceClient,
    endpoint: EndpointConfig,
    stats: FetchStats,
    *,
    params: dict[str, Any] | None = None,
    path_values: dict[str, Any] | None = None,
    first_index: int = 0,
    concurrent: bool = True,
    prepare: Prepare | None = None,
) -> Iterator[Page]:
    """Yield the pages of one series in order. Raises on loops, errors and bad bodies.

    `prepare(page)` runs in the thread that fetched the page, before it is yielded: the
    consumer's per-page work then runs in as many threads as fetch (what releases the GIL,
    compression and Polars parsing, overlaps with the fetching) instead of queueing in the one
    consuming thread. It must not raise (`pipeline.sinks.Preparer` keeps what it made)."""
    series = Series(
        client,
        endpoint,
        stats,
        params=params,
        path_values=path_values,
        first_index=first_index,
        prepare=prepare,
    )
    return series.pages(concurrent=concurrent)


class Series:
    """The state of one series while it is paged: what was asked and seen, and where it is."""

    def __init__(
        self,
        client: SourceClient,
        endpoint: EndpointConfig,
        stats: FetchStats,
        *,
        params: dict[str, Any] | None,
        path_values: dict[str, Any] | None,
        first_index: int,
        prepare: Prepare | None,
    ):
        self.client, self.endpoint, self.stats = client, endpoint, stats
        self.counts = SeriesCounts(stats)
        self.paginator: Paginator = make_paginator(endpoint.paginator)
        self.path = fill_path(endpoint.path, path_values) if path_values else endpoint.path
        self.base = {**endpoint.params, **(params or {})}
        self.path_values, self.prepare = path_values, prepare
        self.max_pages = endpoint.paginator.max_pages
        self.first_index = self.index = first_index
        self.signatures: dict[tuple[Any, ...], int] = {}
        self.seen_requests: set[Any] = set()
        self.window = InFlight(client.source.rate_limit.max_concurrency)

    def get(self, req: PageRequest, index: int) -> tuple[Page, Response]:
        """One page request through the client (in whichever thread runs it)."""
        return self.client.get_page(
            self.endpoint,
            self.path,
            req,
            self.base,
            self.paginator.total_reported,
            index=index,
            counts=self.counts,
            parent=self.path_values,
            prepare=self.prepare,
        )

    def pages(self, *, concurrent: bool) -> Iterator[Page]:
        req = self.paginator.first()
        self.seen_requests.add(req.fingerprint())
        page, view = self.window.timed(self.get, req, self.index)
        self.judge(page, None)
        yield page
        self.previous = page
        if concurrent:
            yield from self._planned(view)
        if self.paginator.stop_reason is None:
            yield from self._followed(req, page, view)
        yield from self._probes()
        self._finish()

    def _planned(self, view: Response) -> Iterator[Page]:
        """A page set the first answer made known, fetched concurrently and yielded in order."""
        paginator, stats, max_pages = self.paginator, self.stats, self.max_pages
        planned = paginator.plan(view)
        while planned:
            done = self.index + 1 - self.first_index
            if max_pages is not None and done + len(planned) > max_pages:
                planned = planned[: max(0, max_pages - done)]
                paginator.stop("max_pages")
            for page in fetch_planned(planned, self.get, self.index + 1, self.window):
                self.judge(page, self.previous)
                self.judge_announced(page)
                yield page
                self.previous = page
                self.index = page.index
            # The total may have grown while we paged (inserts): plan the rest, never stop short.
            if (
                paginator.stop_reason != "max_pages"
                and stats.total_reported is not None
                and self.previous.records
            ):
                planned = paginator.replan(stats.total_reported)
            else:
                planned = []

    def _followed(self, req: PageRequest, page: Page, view: Response) -> Iterator[Page]:
        """Page after page, each asked for from the previous answer's signal."""
        paginator, max_pages = self.paginator, self.max_pages
        current, reasked = req, False
        while True:
            req_next = self._next_request(view, page)
            if req_next is None:
                if page.records or page.index == self.first_index or reasked:
                    return
                # An empty page ended the series. Trust it only after asking once more: a
                # transient empty answer would otherwise truncate the partition silently.
                reasked = True
                self.index += 1
                again, again_view = self.get(current, self.index)
                yield again
                if not again.records:
                    return
                self.stats.warnings.append(
                    f"page {page.index + 1} came back empty, then with "
                    f"{len(again.records)} records when asked again: the API is flaky"
                )
                self.judge(again, self.previous)
                page, view, self.previous = again, again_view, again
                paginator.resume()
                continue
            if max_pages is not None and self.index + 1 - self.first_index >= max_pages:
                paginator.stop("max_pages")
                return
            fp = req_next.fingerprint()
            if fp in self.seen_requests:
                redactor = self.client.redactor
                raise PaginationError(
                    f"{self.client.where(self.endpoint, page.url)}: pagination loop: the next "
                    f"request repeats an earlier one ({redactor.params(dict(req_next.params))}"
                    f"{' ' + redactor.url(req_next.url) if req_next.url else ''})"
                )
            self.seen_requests.add(fp)
            if req_next.url is not None:
                self._check_origin(req_next.url, page)
            self.index += 1
            current, reasked = req_next, False
            page, view = self.get(req_next, self.index)
            self.judge(page, self.previous)
            yield page
            self.previous = page

    def _probes(self) -> Iterator[Page]:
        """The API's total said the last page was full and final: ask for one page more, since
        an understated total or page count would otherwise lose records silently."""
        paginator, max_pages = self.paginator, self.max_pages
        while (
            paginator.stop_reason == "total_reached"
            and self.previous.records
            and paginator.page_size
            and len(self.previous.records) >= paginator.page_size
            and (max_pages is None or self.index + 1 - self.first_index < max_pages)
        ):
            probe = paginator.probe()
            if probe is None or probe.fingerprint() in self.seen_requests:
                return
            self.seen_requests.add(probe.fingerprint())
            self.index += 1
            page, _view = self.get(probe, self.index)
            if not page.records:
                yield page  # archived: the proof that nothing lies past the stated total
                return
            self.stats.beyond_total += len(page.records)
            self.stats.warnings.append(
                f"page {page.index + 1} past the API's stated total holds {len(page.records)} "
                f"records: the total was understated"
            )
            self.judge(page, self.previous)
            yield page
            self.previous = page

    def _finish(self) -> None:
        stats, paginator = self.stats, self.paginator
        stats.total_shrank = stats.total_shrank or total_shrank(stats.total_timeline)
        stats.concurrency = max(stats.concurrency, self.window.peak)
        if (
            paginator.stop_reason == "empty_page"
            and stats.short_pages
            and stats.short_pages[-1] == self.previous.index - 1
        ):
            # A final empty page is the normal end of an offset/keyset series without a total,
            # and the short page just before it was the real last page (the client asks once
            # more rather than trust a short page): not "a short page before the last". Without
            # this every such run ended with a completeness WARN.
            stats.short_pages.pop()
        stats.stop_reason = combine_stop(stats.stop_reason, paginator.stop_reason)

    # --- judging pages ---------------------------------------------------------------------

    def judge(self, page: Page, previous: Page | None) -> None:
        """Loops, stated totals, and empty or short pages before the last."""
        stats = self.stats
        sig = self._signature(page)
        if sig is not None and sig in self.signatures:
            raise PaginationError(
                f"{self.client.where(self.endpoint, page.url)}: page {page.index + 1} repeats "
                f"page {self.signatures[sig] + 1} (same records): the API ignores the paging "
                f"parameter or its pages loop; refusing to load duplicates"
            )
        if sig is not None:
            self.signatures[sig] = page.index
        if page.total_reported is not None:
            stats.total_reported = page.total_reported
            if not stats.totals_seen or stats.totals_seen[-1] != page.total_reported:
                stats.totals_seen.append(page.total_reported)
        if previous is not None:
            if not previous.records:
                if previous.index not in stats.empty_pages:
                    stats.empty_pages.append(previous.index)
            elif self.paginator.page_size and len(previous.records) < self.paginator.page_size:
                stats.short_pages.append(previous.index)

    def judge_announced(self, page: Page) -> None:
        # A page of a set the API announced (its total or page count) must hold records: an
        # empty one, even the last, contradicts the API's own count. Without this a
        # page-number series with only `total_pages_path` and an overstated page count
        # passed completeness silently.
        if not page.records and page.index not in self.stats.empty_pages:
            self.stats.empty_pages.append(page.index)
            self.stats.warnings.append(
                f"page {page.index + 1} is empty although the API's stated total or page "
                f"count announced it"
            )

    def _check_origin(self, url: str, page: Page) -> None:
        """A next URL on a foreign origin is refused before anything is sent there."""
        refusal = self.client.next_origins.refusal(url)
        if refusal is not None:
            raise PaginationError(
                f"{self.client.where(self.endpoint, page.url)}: next URL "
                f"{self.client.redactor.url(url)}: {refusal}"
            )

    def _next_request(self, view: Response, page: Page) -> PageRequest | None:
        """The paginator's next request; its errors name the source, endpoint and URL."""
        try:
            return self.paginator.next(view)
        except PaginationError as exc:
            raise PaginationError(f"{self.client.where(self.endpoint, page.url)}: {exc}") from None

    def _signature(self, page: Page) -> tuple[Any, ...] | None:
        """What makes a page recognizable if the API serves it again."""
        if not page.records:
            return None
        keys = self.endpoint.primary_key_fields
        if keys:
            first, last = page.records[0], page.records[-1]
            return (
                len(page.records),
                tuple(_hashable(lookup(first, k)) for k in keys),
                tuple(_hashable(lookup(last, k)) for k in keys),
            )
        return (page.sha256,)


def fill_path(template: str, values: dict[str, Any]) -> str:
    """A child endpoint's path with its parent's values, each one whole path segment: `/`, `?`,
    `#` and `%` are percent-encoded, and a value that is `.` or `..` is encoded as `%2E` /
    `%2E%2E`, so that no value reaches another path or adds a query."""
    return template.format(**{name: _segment(value) for name, value in values.items()})


def _segment(value: Any) -> str:
    text = quote(str(value), safe="")
    return text.replace(".", "%2E") if text in (".", "..") else text


def _hashable(value: Any) -> Any:
    """A key value usable in a set: lists and objects by their JSON text."""
    if isinstance(value, list | dict):
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    return value


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


def combine_stop(a: str | None, b: str | None) -> str | None:
    """The stop reason of several series: `max_pages` anywhere wins (it is the one that matters)."""
    return a if _STOP_RANK.get(a, 1) >= _STOP_RANK.get(b, 1) else b
