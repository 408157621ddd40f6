"""The checks, computed from evidence alone (no Dagster): completeness, schema drift and
page-count anomalies. The Dagster layer turns each `CheckOutcome` into an `AssetCheckResult`;
the engine uses completeness and drift to decide whether a partition may be published.
"""

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from api_assets.pages import FetchStats
from api_assets.pipeline.schema import SchemaSnapshot, changes_markdown, diff

COMPLETENESS = "completeness"
SCHEMA_DRIFT = "schema_drift"
PAGE_COUNT_ANOMALY = "page_count_anomaly"

Severity = Literal["WARN", "ERROR"]
WARN: Literal["WARN"] = "WARN"
ERROR: Literal["ERROR"] = "ERROR"


@dataclass
class CheckOutcome:
    """The result of one asset check, as the report and the Dagster layer both see it."""

    name: str
    passed: bool
    severity: Severity
    message: str
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "passed": self.passed,
            "severity": self.severity,
            "message": self.message,
        }
        if self.metadata:
            out["metadata"] = self.metadata
        return out

    as_dict = to_dict

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "CheckOutcome":
        return cls(
            name=raw["name"],
            passed=bool(raw["passed"]),
            severity=raw["severity"],
            message=raw.get("message", ""),
            metadata=dict(raw.get("metadata") or {}),
        )


# long: one evidence rule after another (stated total, duplicates, empty and short pages, stop
# reason), read top to bottom as the check's definition
def completeness(
    stats: FetchStats,
    *,
    records: int,
    duplicates_within: int,
    expected_overlap: int = 0,
    is_child: bool = False,
) -> CheckOutcome:
    """ERROR when the evidence shows records missing or duplicated; WARN for weaker signs.

    `duplicates_within` counts primary keys received more than once in this fetch;
    `expected_overlap` is the part of them a lookback or an inclusive keyset bound explains.
    """
    errors: list[str] = []
    warnings: list[str] = []
    total = stats.total_reported
    if total is not None and not is_child and stats.fetched - duplicates_within != total:
        unique = stats.fetched - duplicates_within
        errors.append(
            f"the API stated {total} records but {unique} distinct ones arrived "
            f"({stats.fetched} received)"
        )
    if stats.total_shrank and not is_child:
        # Inserts only push records forward (a key seen twice, caught below); a total that
        # shrinks means records before the offset went away and others slid past unread.
        before, after = stats.total_shrank
        errors.append(
            f"the stated total shrank while paging ({before} → {after}): records were deleted "
            f"before the offset, so others moved back across a page boundary unread"
        )
    if stats.beyond_total:
        errors.append(f"{stats.beyond_total} records lay past the API's stated total or page count")
    unexplained = duplicates_within - expected_overlap
    if unexplained > 0:
        errors.append(
            f"{unexplained} primary keys arrived on two pages (offset drift: records moved "
            f"between pages while paginating, so others were likely skipped)"
        )
    if stats.empty_pages:
        errors.append(
            f"empty page before the last (page {', '.join(str(i + 1) for i in stats.empty_pages[:5])})"
        )
    if stats.stop_reason == "max_pages":
        errors.append("pagination ended on `max_pages`, not on the API's own signal")
    if stats.short_pages:
        warnings.append(
            f"{len(stats.short_pages)} page(s) shorter than the page size before the last "
            f"(page {', '.join(str(i + 1) for i in stats.short_pages[:5])})"
        )
    if stats.not_found:
        warnings.append(f"{len(stats.not_found)} parent record(s) answered 404 and were skipped")
    metadata: dict[str, Any] = {
        "fetched": stats.fetched,
        "records": records,
        "total_reported": total,
        "totals_seen": ", ".join(str(t) for t in stats.totals_seen),
        "beyond_total": stats.beyond_total,
        "duplicates": duplicates_within,
        "expected_overlap": expected_overlap,
        "pages": stats.pages,
        "stop_reason": stats.stop_reason,
        "empty_pages": len(stats.empty_pages),
        "short_pages": len(stats.short_pages),
        "not_found": len(stats.not_found),
    }
    if errors:
        return CheckOutcome(COMPLETENESS, False, ERROR, "; ".join(errors + warnings), metadata)
    if warnings:
        return CheckOutcome(COMPLETENESS, False, WARN, "; ".join(warnings), metadata)
    stop = stats.stop_reason or "signal"
    basis = f"{total} stated" if total is not None else f"stopped on {stop}"
    return CheckOutcome(
        COMPLETENESS, True, ERROR, f"{records} records, {stats.pages} pages, {basis}", metadata
    )


def schema_drift(previous: SchemaSnapshot | None, current: SchemaSnapshot) -> CheckOutcome:
    """This snapshot against the previous one: removed or retyped fields ERROR, others WARN."""
    if previous is None:
        return CheckOutcome(SCHEMA_DRIFT, True, WARN, "no earlier snapshot to compare with", {})
    changes = diff(previous, current)
    if not changes:
        return CheckOutcome(SCHEMA_DRIFT, True, WARN, f"no drift against {previous.partition}", {})
    severity: Literal["WARN", "ERROR"] = (
        ERROR if any(c.severity == ERROR for c in changes) else WARN
    )
    summary = ", ".join(f"{c.kind} `{c.path}`" for c in changes[:10])
    more = f" and {len(changes) - 10} more" if len(changes) > 10 else ""
    return CheckOutcome(
        SCHEMA_DRIFT,
        False,
        severity,
        f"schema drift against {previous.partition}: {summary}{more}",
        {"changes": changes_markdown(changes), "compared_with": previous.partition},
    )


def page_count_anomaly(
    history: Sequence[dict[str, Any]],
    *,
    pages: int,
    records: int,
    band: float = 3.0,
    watermark_backwards: bool = False,
    filter_ignored: bool = False,
) -> CheckOutcome:
    """Pages and records against trailing materializations (dicts with `pages`, `records`)."""
    metadata: dict[str, Any] = {"pages": pages, "records": records, "history": len(history)}
    if watermark_backwards:
        return CheckOutcome(
            PAGE_COUNT_ANOMALY, False, ERROR, "the watermark moved backwards", metadata
        )
    past_records = [int(h["records"]) for h in history if h.get("records") is not None]
    past_pages = [int(h["pages"]) for h in history if h.get("pages") is not None]
    if records == 0 and any(r > 0 for r in past_records):
        return CheckOutcome(
            PAGE_COUNT_ANOMALY,
            False,
            ERROR,
            f"zero records after a history of {max(past_records)} at most",
            metadata,
        )
    problems = []
    if filter_ignored:
        problems.append("records far older than the lower bound sent: the API ignored the filter")
    for what, value, past in (("records", records, past_records), ("pages", pages, past_pages)):
        if len(past) < 2:
            continue
        median = statistics.median(past)
        metadata[f"median_{what}"] = median
        low, high = median / band, median * band
        if median > 0 and not (low <= value <= high):
            problems.append(f"{what} {value} outside [{low:.0f}, {high:.0f}] (median {median:g})")
    if problems:
        return CheckOutcome(PAGE_COUNT_ANOMALY, False, WARN, "; ".join(problems), metadata)
    basis = f"against {len(history)} earlier" if history else "no history yet"
    return CheckOutcome(
        PAGE_COUNT_ANOMALY, True, WARN, f"{pages} pages, {records} records ({basis})", metadata
    )
