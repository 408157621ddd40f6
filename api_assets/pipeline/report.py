"""The run report of one materialization: `reports/S/E/P.json`, written on failure too.

The contract fields come first in `RunReport`; the extras after them (`stop_reason`, `bytes`,
`elapsed_s`, `not_found`, `warnings`, `widened`, `null_keys`, ...) are evidence a reader of the
report is likely to want next. Datetimes are ISO 8601 in UTC. Nothing secret belongs here: the
error message is built from redacted URLs.
"""

import builtins
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import orjson

from api_assets.pages import FetchStats
from api_assets.pipeline.checks import CheckOutcome
from api_assets.storage.durable import write_atomic
from api_assets.storage.layout import DataLayout
from api_assets.utc import iso_utc, parse_iso_utc

Status = Literal["success", "failed"]

# The keys every report holds, in this order (what users and their scripts read).
REQUIRED_FIELDS = (
    "source",
    "endpoint",
    "partition",
    "run_id",
    "status",
    "error",
    "started_at",
    "finished_at",
    "fetched",
    "records",
    "pages",
    "requests",
    "retries",
    "throttled",
    "total_reported",
    "duplicates",
    "watermark_before",
    "watermark_after",
    "checks",
)


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class RunReport:
    """One materialization of one partition of one endpoint. `status` stays "failed" until
    `succeed()`, so that a report written from an exception handler is right by default."""

    source: str
    endpoint: str
    partition: str
    run_id: str
    status: Status = "failed"
    error: str | None = None
    started_at: datetime = field(default_factory=_now)
    finished_at: datetime | None = None
    fetched: int = 0
    records: int = 0
    pages: int = 0
    requests: int = 0
    retries: int = 0
    throttled: int = 0
    total_reported: int | None = None
    duplicates: int = 0
    watermark_before: Any = None
    watermark_after: Any = None
    # CheckOutcome objects or their dicts; always written as dicts
    checks: list[CheckOutcome | dict[str, Any]] = field(default_factory=list)
    # extras
    kind: str | None = None  # snapshot | incremental | window
    stop_reason: str | None = None
    bytes: int = 0
    concurrency: int = 0  # the most requests of one series in flight at once
    rate_limit_wait_s: float = 0.0  # seconds requests waited on the rate limiter, summed
    elapsed_s: float | None = None
    empty_pages: list[int] = field(default_factory=list)
    short_pages: list[int] = field(default_factory=list)
    not_found: int = 0  # child requests answered 404 (skipped parents)
    null_keys: int = 0
    widened: list[dict[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def apply_stats(self, stats: FetchStats) -> None:
        """Copy the fetch evidence into the report."""
        self.fetched = stats.fetched
        self.pages = stats.pages
        self.requests = stats.requests
        self.retries = stats.retries
        self.throttled = stats.throttled
        self.total_reported = stats.total_reported
        self.stop_reason = stats.stop_reason
        self.bytes = stats.bytes
        self.concurrency = stats.concurrency
        self.rate_limit_wait_s = round(stats.rate_limit_wait_s, 3)
        self.empty_pages = list(stats.empty_pages)
        self.short_pages = list(stats.short_pages)
        self.not_found = len(stats.not_found)
        self.warnings = list(stats.warnings)

    def succeed(self, finished_at: datetime | None = None) -> None:
        self.status = "success"
        self.error = None
        self._finish(finished_at)

    def fail(self, error: BaseException | str, finished_at: datetime | None = None) -> None:
        self.status = "failed"
        if isinstance(error, BaseException):
            self.error = f"{type(error).__name__}: {error}"
        else:
            self.error = error
        self._finish(finished_at)

    def _finish(self, finished_at: datetime | None) -> None:
        self.finished_at = finished_at or _now()
        self.elapsed_s = round((self.finished_at - self.started_at).total_seconds(), 6)

    @property
    def outcomes(self) -> list[CheckOutcome]:
        """`checks` as CheckOutcome objects, whichever form they were given in."""
        return [
            c if isinstance(c, CheckOutcome) else CheckOutcome.from_dict(c) for c in self.checks
        ]

    @property
    def failed_checks(self) -> list[CheckOutcome]:
        return [c for c in self.outcomes if not c.passed]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, datetime):
                value = iso_utc(value)
            elif f.name == "checks":
                value = [c.to_dict() if isinstance(c, CheckOutcome) else dict(c) for c in value]
            out[f.name] = value
        return out

    def to_json(self) -> builtins.bytes:
        return orjson.dumps(self.to_dict(), option=orjson.OPT_INDENT_2, default=str)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "RunReport":
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in raw.items() if k in known}
        values["checks"] = [CheckOutcome.from_dict(c) for c in raw.get("checks") or []]
        if not isinstance(values.get("not_found", 0), int):  # older reports listed the parents
            values["not_found"] = len(values["not_found"])
        values["started_at"] = parse_iso_utc(raw.get("started_at")) or _now()
        values["finished_at"] = parse_iso_utc(raw.get("finished_at"))
        return cls(**values)

    def write(self, layout: DataLayout) -> Path:
        """Write `reports/S/E/P.json` atomically; returns the path."""
        path = layout.report_path(self.source, self.endpoint, self.partition)
        write_atomic(path, self.to_json())
        return path

    @classmethod
    def load(
        cls, layout: DataLayout, source: str, endpoint: str, partition: str
    ) -> "RunReport | None":
        """The saved report of a partition, or None."""
        try:
            raw = layout.report_path(source, endpoint, partition).read_bytes()
        except FileNotFoundError:
            return None
        return cls.from_dict(orjson.loads(raw))


load = RunReport.load
