"""A page request, a fetched page and the evidence of a fetch: what flows from the paginators
through the client to the archive, the report and the checks.

A `Page` is one HTTP exchange that produced records (or proved there were none). Its URL and
params are already redacted: nothing in a Page is secret, so it may be written anywhere.
`FetchStats` accumulates the run-level evidence while pages stream by.
"""

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

# Response headers worth keeping as evidence (lower-case).
EVIDENCE_HEADERS = (
    "date",
    "retry-after",
    "x-ratelimit-limit",
    "x-ratelimit-remaining",
    "x-ratelimit-reset",
    "ratelimit-limit",
    "ratelimit-remaining",
    "ratelimit-reset",
    "ratelimit-policy",
    "x-total-count",
    "link",
    "content-type",
    "content-encoding",  # how the body came over the wire (the archive keeps it decoded)
)


@dataclass(frozen=True)
class PageRequest:
    """What to ask for next: extra query params, or an absolute URL that replaces path and query."""

    params: dict[str, Any] = field(default_factory=dict)
    url: str | None = None

    def fingerprint(self) -> tuple[str, tuple[tuple[str, str], ...]]:
        return (self.url or "", tuple(sorted((k, str(v)) for k, v in self.params.items())))


@dataclass
class Response:
    """What a paginator may look at: the parsed body, the headers, the URL and the records."""

    body: Any
    headers: dict[str, str]  # lower-case names
    url: str
    records: list[dict[str, Any]]
    links: dict[str, str] = field(default_factory=dict)  # rel -> URL (RFC 8288)


@dataclass
class Page:
    """One page of one endpoint: the body as fetched and the records found in it."""

    index: int  # 0-based position in the endpoint's page sequence for this run
    url: str  # full URL without query, secrets redacted
    params: dict[str, Any]  # query params sent, secrets redacted
    status: int
    headers: dict[str, str]  # the EVIDENCE_HEADERS present, lower-case names
    fetched_at: datetime  # aware UTC
    body: bytes
    records: list[dict[str, Any]]
    attempts: int = 1  # requests it took (1 + retries)
    elapsed_s: float = 0.0
    parent: dict[str, Any] | None = None  # placeholder values of a child endpoint's request
    total_reported: int | None = None  # total records the API stated on this page, if any

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.body).hexdigest()

    @property
    def nbytes(self) -> int:
        return len(self.body)


@dataclass
class FetchStats:
    """Run-level evidence of one endpoint fetch, filled while pages stream by."""

    requests: int = 0
    retries: int = 0
    throttled: int = 0  # 429 answers
    pages: int = 0
    fetched: int = 0  # records received, duplicates included
    bytes: int = 0
    concurrency: int = 0  # the most requests of one series that were in flight at once
    rate_limit_wait_s: float = 0.0  # seconds requests spent waiting on the rate limiter, summed
    total_reported: int | None = None
    totals_seen: list[int] = field(default_factory=list)  # each distinct stated total, in order
    beyond_total: int = 0  # records found past the API's stated total or page count
    # (sent, answered, total) per page that stated a total: monotonic seconds, for drift checks
    total_timeline: list[tuple[float, float, int]] = field(default_factory=list)
    total_shrank: tuple[int, int] | None = None  # (before, after) when the total provably fell
    # why pagination ended: "signal" (the API's own next signal was absent), "empty_page",
    # "total_reached", "single_page", "max_pages" (a safety cap: not proof of completeness)
    stop_reason: str | None = None
    empty_pages: list[int] = field(default_factory=list)  # indexes of empty pages
    short_pages: list[int] = field(
        default_factory=list
    )  # pages shorter than the page size, not last
    not_found: list[dict[str, Any]] = field(default_factory=list)  # child requests answered 404
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "retries": self.retries,
            "throttled": self.throttled,
            "pages": self.pages,
            "fetched": self.fetched,
            "bytes": self.bytes,
            "concurrency": self.concurrency,
            "total_reported": self.total_reported,
            "totals_seen": list(self.totals_seen),
            "beyond_total": self.beyond_total,
            "total_shrank": list(self.total_shrank) if self.total_shrank else None,
            "stop_reason": self.stop_reason,
            "empty_pages": list(self.empty_pages),
            "short_pages": list(self.short_pages),
            "not_found": list(self.not_found),
            "warnings": list(self.warnings),
        }
