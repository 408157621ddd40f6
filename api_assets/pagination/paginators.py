"""Paginators: where a page is judged the last one.

One base class with a small protocol, one class per style, registered under the `type` name the
YAML uses (the shape of dlt's rest client, with stricter stop rules):

- `first()` builds the first request;
- `next(response)` reads a response and returns the next request, or None when the API's own
  signal says this was the last page (it sets `stop_reason`);
- `plan(response)` returns every remaining request at once when the first response makes the page
  set known (offset or page number with a total), so the client can fetch them concurrently.

Rules every paginator keeps: never stop on a short page alone; an empty page ends a series whose
style has no other signal; a cursor, URL or keyset value seen before is a loop
(`PaginationError`), never a silent re-read. Generic loop checks (identical pages, requests
repeated), re-asking, probes and `max_pages` live in `series.py`, which drives every paginator.
"""

import math
from abc import ABC, abstractmethod
from typing import Any, ClassVar
from urllib.parse import urljoin

from api_assets.config import models as cfg
from api_assets.errors import PaginationError
from api_assets.pages import PageRequest, Response
from api_assets.records import lookup


def _as_int(value: Any, what: str) -> int:
    try:
        n = int(str(value).strip())
    except (TypeError, ValueError):
        raise PaginationError(f"{what} is {value!r}, not an integer") from None
    if n < 0:
        raise PaginationError(f"{what} is negative ({n})")
    return n


class Paginator(ABC):
    """Base of every paginator; one instance drives one paginated series."""

    type_name: ClassVar[str]
    registry: ClassVar[dict[str, type["Paginator"]]] = {}

    def __init__(self, config: Any):
        self.config = config
        self.stop_reason: str | None = None
        self.page_size: int | None = None  # records a full page holds, when the style says

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "type_name" in cls.__dict__:
            Paginator.registry[cls.type_name] = cls

    def first(self) -> PageRequest:
        return PageRequest(params=dict(self.config.params))

    @abstractmethod
    def next(self, response: Response) -> PageRequest | None: ...

    def plan(self, response: Response) -> list[PageRequest] | None:
        return None

    def total_reported(self, response: Response) -> int | None:
        """Total records the API stated on this page, when the style reads one."""
        return None

    def probe(self) -> PageRequest | None:
        """The page after the one the API's total said was last, to prove nothing lies beyond
        it (styles with a total only)."""
        return None

    def replan(self, total: int) -> list[PageRequest]:
        """More requests when the stated total grew while a known page set was fetched (styles
        that page by records only); none by default."""
        return []

    def stop(self, reason: str) -> None:
        """The series ends here, and why (`FetchStats.stop_reason`)."""
        self.stop_reason = reason

    def resume(self) -> None:
        """An empty page that ended the series held records when asked again: go on."""
        self.stop_reason = None


def make_paginator(config: Any) -> Paginator:
    return Paginator.registry[config.type](config)


class SinglePage(Paginator):
    type_name = "single_page"

    def next(self, response: Response) -> PageRequest | None:
        self.stop("single_page")
        return None


def _total(response: Response, path: str | None, header: str | None) -> int | None:
    if path:
        value = lookup(response.body, path)
        if value is None:
            return None
        return _as_int(value, f"total at `{path}`")
    if header:
        value = response.headers.get(header.lower())
        if value is None:
            return None
        return _as_int(value, f"header {header}")
    return None


class _Stepping(Paginator):
    """Offset and page number: a position that advances by a fixed step from `start`; a stated
    total bounds it, which makes the page set known after page 1."""

    def __init__(self, config: Any, *, start: int, step: int):
        super().__init__(config)
        self.position = start
        self.step = step

    def _position_params(self, position: int) -> dict[str, Any]:
        raise NotImplementedError

    def _end(self, response: Response) -> int | None:
        """The first position past the stated total, or None when the API states none."""
        raise NotImplementedError

    def _at(self, position: int) -> PageRequest:
        return PageRequest(params={**self.config.params, **self._position_params(position)})

    def first(self) -> PageRequest:
        return self._at(self.position)

    def next(self, response: Response) -> PageRequest | None:
        if not response.records:
            self.stop("empty_page")
            return None
        end = self._end(response)
        self.position += self.step
        if end is not None and self.position >= end:
            self.stop("total_reached")
            return None
        return self._at(self.position)

    def plan(self, response: Response) -> list[PageRequest] | None:
        end = self._end(response)
        if end is None or not response.records:
            return None
        return self._plan_to(end)

    def probe(self) -> PageRequest | None:
        self.position += self.step
        return self._at(self.position)

    def _plan_to(self, end: int) -> list[PageRequest]:
        """Requests for every position after the current one up to `end` (exclusive)."""
        out = []
        while self.position + self.step < end:
            self.position += self.step
            out.append(self._at(self.position))
        self.stop("total_reached")
        return out


class Offset(_Stepping):
    """`offset`/`limit`; the total comes from a body path or a header."""

    type_name = "offset"
    config: cfg.OffsetPaginator

    def __init__(self, config: cfg.OffsetPaginator):
        super().__init__(config, start=config.start, step=config.limit)
        self.page_size = config.limit

    def _position_params(self, position: int) -> dict[str, Any]:
        return {self.config.offset_param: position, self.config.limit_param: self.config.limit}

    def total_reported(self, response: Response) -> int | None:
        return _total(response, self.config.total_path, self.config.total_header)

    def _end(self, response: Response) -> int | None:
        total = self.total_reported(response)
        return None if total is None else self.config.start + total

    def replan(self, total: int) -> list[PageRequest]:
        """Requests for every offset after the current one up to `total` records."""
        return self._plan_to(self.config.start + total)


class PageNumber(_Stepping):
    """`page`/`size`; total pages (or total records) from the body or a header."""

    type_name = "page_number"
    config: cfg.PageNumberPaginator

    def __init__(self, config: cfg.PageNumberPaginator):
        super().__init__(config, start=config.start, step=1)
        self.page_size = config.size

    def _position_params(self, position: int) -> dict[str, Any]:
        p: dict[str, Any] = {self.config.page_param: position}
        if self.config.size_param:
            p[self.config.size_param] = self.config.size
        return p

    def total_reported(self, response: Response) -> int | None:
        return _total(response, self.config.total_path, self.config.total_header)

    def total_pages(self, response: Response) -> int | None:
        if self.config.total_pages_path:
            value = lookup(response.body, self.config.total_pages_path)
            return None if value is None else _as_int(value, f"`{self.config.total_pages_path}`")
        total = self.total_reported(response)
        return None if total is None else math.ceil(total / self.config.size)

    def _end(self, response: Response) -> int | None:
        pages = self.total_pages(response)
        return None if pages is None else self.config.start + pages


class _SeenValues:
    """Remembers cursors or URLs already followed: one seen twice is a loop (A→A or A→B→A)."""

    def __init__(self, what: str):
        self.what = what
        self.seen: set[str] = set()

    def check(self, value: str) -> None:
        if value in self.seen:
            raise PaginationError(
                f"pagination loop: the API returned a {self.what} it had already returned "
                f"({len(self.seen)} followed so far); refusing to re-read pages"
            )
        self.seen.add(value)


class Cursor(Paginator):
    """An opaque cursor from the body or a header, sent back as `cursor_param`."""

    type_name = "cursor"
    config: cfg.CursorPaginator

    def __init__(self, config: cfg.CursorPaginator):
        super().__init__(config)
        self.page_size = config.limit
        self.seen = _SeenValues("cursor")

    def _limit(self) -> dict[str, Any]:
        if self.config.limit_param and self.config.limit:
            return {self.config.limit_param: self.config.limit}
        return {}

    def first(self) -> PageRequest:
        return PageRequest(params={**self.config.params, **self._limit()})

    def next(self, response: Response) -> PageRequest | None:
        if self.config.cursor_header:
            value: Any = response.headers.get(self.config.cursor_header.lower())
        else:
            value = lookup(response.body, self.config.cursor_path or "next_cursor")
        if value is None or value == "" or value is False:
            self.stop("signal")
            return None
        # An empty page that still carries a cursor is followed (sparse, filtered APIs send them);
        # the client records it as evidence and the loop check keeps this finite.
        self.seen.check(str(value))
        return PageRequest(
            params={**self.config.params, **self._limit(), self.config.cursor_param: value}
        )


class NextUrl(Paginator):
    """A URL of the next page, in the body (`next_path`) or a header (`next_header`)."""

    type_name = "next_url"
    config: cfg.NextUrlPaginator

    def __init__(self, config: cfg.NextUrlPaginator):
        super().__init__(config)
        self.seen = _SeenValues("next URL")

    def _next_value(self, response: Response) -> Any:
        if self.config.next_header:
            return response.headers.get(self.config.next_header.lower())
        return lookup(response.body, self.config.next_path or "next")

    def next(self, response: Response) -> PageRequest | None:
        value = self._next_value(response)
        if not value or not isinstance(value, str):
            self.stop("signal")
            return None
        url = urljoin(response.url, value)
        self.seen.check(url)
        return PageRequest(url=url)


class LinkHeader(Paginator):
    """RFC 8288 `Link: <…>; rel="next"`."""

    type_name = "link_header"

    def __init__(self, config: cfg.LinkHeaderPaginator):
        super().__init__(config)
        self.seen = _SeenValues("Link rel=next URL")

    def next(self, response: Response) -> PageRequest | None:
        value = response.links.get("next")
        if not value:
            self.stop("signal")
            return None
        url = urljoin(response.url, value)
        self.seen.check(url)
        return PageRequest(url=url)


class Keyset(Paginator):
    """`since_id`-style: the next lower bound is the last record's `field`."""

    type_name = "keyset"
    config: cfg.KeysetPaginator

    def __init__(self, config: cfg.KeysetPaginator):
        super().__init__(config)
        self.page_size = config.limit
        self.last: Any = None

    def _limit(self) -> dict[str, Any]:
        if self.config.limit_param and self.config.limit:
            return {self.config.limit_param: self.config.limit}
        return {}

    def first(self) -> PageRequest:
        return PageRequest(params={**self.config.params, **self._limit()})

    def next(self, response: Response) -> PageRequest | None:
        if not response.records:
            self.stop("empty_page")
            return None
        value = lookup(response.records[-1], self.config.field)
        if value is None:
            raise PaginationError(
                f"keyset field `{self.config.field}` is missing from the last record of a page"
            )
        if self.last is not None and self.config.inclusive and value == self.last:
            # An inclusive bound re-sends the last record; a page of nothing else is the end.
            self.stop("empty_page")
            return None
        if self.last is not None and not _advances(self.last, value):
            raise PaginationError(
                f"keyset value did not advance: `{self.config.field}` went from {self.last!r} "
                f"to {value!r}; the API ignores `{self.config.param}` or sorts differently"
            )
        self.last = value
        return PageRequest(params={**self.config.params, **self._limit(), self.config.param: value})


def _advances(before: Any, after: Any) -> bool:
    try:
        return bool(after > before)
    except TypeError:
        return str(after) > str(before)
