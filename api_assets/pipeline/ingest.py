"""One endpoint, one partition: fetch → archive → table and schema → watermark → report.

This is the whole ingestion of a partition without Dagster. The Dagster layer calls `ingest()`
(or `rebuild.py` to re-derive a partition from its archive alone) and turns the result into
materializations and check results.

What a caller may rely on:
- Complete or loud: `ingest` returns only when every page the API signalled was fetched; on any
  error it writes a failed run report, publishes nothing new for the partition and re-raises.
- Commit order: the table and schema are written to temporary files first, then the archive is
  committed, then the table is renamed into place (carrying the watermark in its Parquet
  metadata), then the schema, then the report. A crash anywhere leaves the previous partition
  visible, and the watermark never ahead of the committed data.

The run in steps (`_Run`): start (the watermark it starts from, the report, the sinks), fetch
(pages to the sinks: `sinks.py`), judge (the checks on the evidence; incomplete is fatal),
commit, report.
"""

import logging
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import polars as pl

from api_assets.config.models import EndpointConfig, RateLimitConfig, SourceConfig
from api_assets.errors import ApiAssetsError, FetchError, IncompleteError
from api_assets.http.client import SourceClient, get_client
from api_assets.pages import FetchStats, Page
from api_assets.pagination import series
from api_assets.pagination.fanout import fetch_children
from api_assets.pipeline import checks
from api_assets.pipeline.checks import CheckOutcome
from api_assets.pipeline.normalize import NormalizedTable, TableBuilder
from api_assets.pipeline.report import RunReport
from api_assets.pipeline.schema import SchemaBuilder, SchemaSnapshot
from api_assets.pipeline.sinks import ArchiveSink, PageSink, Preparer, SchemaSink, TableSink
from api_assets.pipeline.watermark import (
    Watermark,
    WatermarkTracker,
    WatermarkValue,
    cursor_key,
    format_time,
    lower_bound,
    watermark_for,
)
from api_assets.records import lookup
from api_assets.storage.archive import ArchiveWriter, sweep_stale
from api_assets.storage.layout import DataLayout

log = logging.getLogger("api_assets")


@dataclass
class IngestResult:
    """What one successful partition ingestion produced."""

    report: RunReport
    stats: FetchStats
    table: NormalizedTable
    schema: SchemaSnapshot
    watermark_before: WatermarkValue | None
    watermark_after: WatermarkValue | None
    lookback_duplicates: int = 0
    cursor_min_seen: WatermarkValue | None = None  # oldest cursor received (filter evidence)
    checks: list[CheckOutcome] = field(default_factory=list)
    published: bool = True  # False when a blocking schema drift kept the table back


def ingest(
    source: SourceConfig,
    endpoint: EndpointConfig,
    partition: str,
    *,
    layout: DataLayout,
    run_id: str | None = None,
    window: tuple[datetime, datetime] | None = None,
    parent_rows: list[dict[str, Any]] | None = None,
    client: SourceClient | None = None,
    emit: Callable[[str], None] | None = None,
    history: list[dict[str, Any]] | None = None,
    block_drift: bool | None = None,
) -> IngestResult:
    """Fetch one partition of one endpoint and commit it, or fail loudly having published nothing."""
    run = _Run(source, endpoint, partition, layout, run_id or uuid.uuid4().hex)
    try:
        client = client or get_client(source, shared_dir=layout.state_dir() / "ratelimit")
        run.fetch(client, window, parent_rows, emit)
        run.judge(history or [], source.schema_drift.block if block_drift is None else block_drift)
        run.commit()
    except BaseException as exc:
        run.fail(exc)
        raise
    return run.finish()


class _Run:
    """One ingestion while it runs: what it started from, where pages go, what it found."""

    def __init__(
        self,
        source: SourceConfig,
        endpoint: EndpointConfig,
        partition: str,
        layout: DataLayout,
        run_id: str,
    ):
        self.source, self.endpoint, self.partition = source, endpoint, partition
        self.layout, self.run_id = layout, run_id
        self.inc = inc = endpoint.incremental
        self.stats = FetchStats()
        self.report = RunReport(
            source=source.name,
            endpoint=endpoint.name,
            partition=partition,
            run_id=run_id,
            status="failed",
            started_at=datetime.now(UTC),
            kind=endpoint.kind,
        )
        self.before = watermark_for(layout, source, endpoint, partition) if inc else None
        self.report.watermark_before = self.report.watermark_after = self.before
        sweep_stale(layout, source.name, endpoint.name)  # temp dirs of runs that crashed long ago
        _sweep_spills(layout, source.name, endpoint.name)
        self.writer = ArchiveWriter(layout, source.name, endpoint.name, partition, run_id)
        # Past SPILL_ROWS rows the table goes to hidden Parquet parts, so memory stays flat.
        self.spill_dir = layout.table_dir(source.name, endpoint.name) / f".spill-{run_id}"
        self.outcomes: list[CheckOutcome] = []
        self.tracker: WatermarkTracker | None = None
        self.bound: WatermarkValue | None = None
        self.publish = True

    def fetch(
        self,
        client: SourceClient,
        window: tuple[datetime, datetime] | None,
        parent_rows: list[dict[str, Any]] | None,
        emit: Callable[[str], None] | None,
    ) -> None:
        """Every page of the partition, each handed to the archive, table, schema and watermark."""
        inc, endpoint = self.inc, self.endpoint
        self.bound = lower_bound(self.before, inc) if inc else None
        params = _request_params(endpoint, window, self.bound)
        self.builder = TableBuilder(
            endpoint.primary_key_fields, self.partition, datetime.now(UTC), spill_dir=self.spill_dir
        )
        self.schema_builder = SchemaBuilder()
        sinks: list[PageSink] = [
            ArchiveSink(self.writer),
            TableSink(self.builder),
            SchemaSink(self.schema_builder),
        ]
        if inc is not None:
            start = Watermark.of(self.before, inc)
            self.tracker = WatermarkTracker(self.source.name, endpoint.name, inc, start)
            sinks.append(self.tracker)
        preparer = Preparer(tuple(sinks))
        progress = _Progress(emit, self.source.rate_limit)
        for page in _pages(client, endpoint, self.stats, params, parent_rows, preparer):
            try:
                preparer.deliver(page)
            except RecursionError:
                raise FetchError(
                    f"source `{self.source.name}`, endpoint `{endpoint.name}`, {page.url}: page "
                    f"{page.index + 1} holds records nested too deeply to flatten into columns"
                ) from None
            progress.tick(self.stats)
        self.table = self.builder.finish()
        self.schema = self.schema_builder.finish(self.source.name, endpoint.name, self.partition)

    def judge(self, history: list[dict[str, Any]], block_drift: bool) -> None:
        """The checks on the evidence. Incomplete: `IncompleteError`, nothing published (the
        archive is dropped too). A blocking drift keeps the table back."""
        source, endpoint, stats, table = self.source, self.endpoint, self.stats, self.table
        tracker = self.tracker
        expected = table.duplicates if self.inc is not None else 0
        if endpoint.paginator.type == "keyset" and getattr(endpoint.paginator, "inclusive", False):
            expected = min(table.duplicates, max(stats.pages - 1, 0))
        completeness = checks.completeness(
            stats,
            records=table.records,
            duplicates_within=table.duplicates,
            expected_overlap=expected,
            is_child=endpoint.parent is not None,
        )
        previous = SchemaSnapshot.previous(self.layout, source.name, endpoint.name, self.partition)
        drift = checks.schema_drift(previous, self.schema)
        anomaly = checks.page_count_anomaly(
            history,
            pages=stats.pages,
            records=table.records,
            watermark_backwards=bool(tracker and tracker.went_backwards),
            filter_ignored=bool(tracker and tracker.filter_ignored(self.bound)),
        )
        self.outcomes = [completeness, drift, anomaly]
        self.report.checks = list(self.outcomes)
        if not completeness.passed and completeness.severity == checks.ERROR:
            raise IncompleteError(
                f"source `{source.name}`, endpoint `{endpoint.name}`, partition "
                f"{self.partition}: incomplete: {completeness.message}. Nothing was published; "
                f"the watermark is unchanged. Re-run; if it persists, check the API or the "
                f"paginator settings."
            )
        self.drift = drift
        self.publish = not (block_drift and not drift.passed and drift.severity == checks.ERROR)

    @property
    def after(self) -> WatermarkValue | None:
        after = self.tracker.after if self.tracker else None
        return after.value if after is not None else self.before

    def commit(self) -> None:
        """Archive first, then the schema, then the table that carries the watermark."""
        source, endpoint, partition = self.source, self.endpoint, self.partition
        if partition == "current" and self.inc is not None:
            self.table = _merge_current(self.layout, source, endpoint, self.table)
        meta = {
            "source": source.name,
            "endpoint": endpoint.name,
            "partition": partition,
            "run_id": self.run_id,
            "primary_key": endpoint.primary_key_fields,
            "watermark_before": self.before,
            "watermark_after": self.after,
            "committed_at": datetime.now(UTC).isoformat(),
        }
        self.writer.commit()
        self.schema.save(self.layout)
        if self.publish:
            self.table.write(
                self.layout.table_path(source.name, endpoint.name, partition),
                {"api_assets": orjson.dumps(meta).decode()},
            )

    def fail(self, exc: BaseException) -> None:
        """Nothing new published; a failed report on disk that says why."""
        self.writer.abort()
        shutil.rmtree(self.spill_dir, ignore_errors=True)
        report = self.report
        report.apply_stats(self.stats)
        if isinstance(exc, ApiAssetsError) and not any(
            getattr(c, "name", None) == checks.COMPLETENESS for c in report.checks
        ):
            # A loop, a bad body or a failed request proves nothing complete: say so in the
            # report's checks too, not only in `error`.
            report.checks.append(
                CheckOutcome(
                    checks.COMPLETENESS, False, checks.ERROR, str(exc), self.stats.as_dict()
                )
            )
        report.fail(str(exc) or type(exc).__name__)
        report.write(self.layout)

    def finish(self) -> IngestResult:
        shutil.rmtree(self.spill_dir, ignore_errors=True)
        table, report, tracker = self.table, self.report, self.tracker
        table.lazy = None  # its parts are gone; `df` keeps the preview rows
        report.apply_stats(self.stats)
        report.records = table.records
        lookback = tracker.lookback_duplicates if tracker else 0
        report.duplicates = table.duplicates + lookback
        report.widened = list(table.widened)
        if self.publish:
            report.watermark_after = self.after
            report.succeed()
        else:
            report.fail(
                f"schema drift blocked publishing the table (schema_drift.block is true): "
                f"{self.drift.message}"
            )
        report.write(self.layout)
        oldest = tracker.oldest if tracker else None
        return IngestResult(
            report=report,
            stats=self.stats,
            table=table,
            schema=self.schema,
            watermark_before=self.before,
            watermark_after=self.after if self.publish else self.before,
            lookback_duplicates=lookback,
            cursor_min_seen=oldest.value if oldest else None,
            checks=self.outcomes,
            published=self.publish,
        )


# --- helpers -----------------------------------------------------------------------------------


class _Progress:
    """Logs pages, records, rate, retries and an ETA every few seconds on long fetches, and says
    so when the rate limit is what paces the fetch."""

    def __init__(
        self,
        emit: Callable[[str], None] | None,
        rate_limit: RateLimitConfig | None = None,
        every: float = 5.0,
    ):
        self.emit = emit
        self.rate_limit = rate_limit
        self.every = every
        self.started = self.last = time.monotonic()

    def tick(self, stats: FetchStats) -> None:
        now = time.monotonic()
        if self.emit is None or now - self.last < self.every:
            return
        self.last = now
        elapsed = now - self.started
        rate = stats.fetched / max(elapsed, 1e-9)
        eta = ""
        if stats.total_reported and rate > 0:
            eta = f", ETA {max(stats.total_reported - stats.fetched, 0) / rate:.0f}s"
        paced = ""
        if self.rate_limit is not None:
            note = pacing_note(self.rate_limit, stats.rate_limit_wait_s, elapsed)
            paced = f"; {note}" if note else ""
        self.emit(
            f"{stats.pages} pages, {stats.fetched} records ({rate:.0f}/s), "
            f"{stats.retries} retries, {stats.throttled} throttled{eta}{paced}"
        )


# Requests that spent this share of a fetch's time (summed over threads) waiting on the limiter
# were paced by it rather than by the API.
PACED_SHARE = 0.25


def pacing_note(rate_limit: RateLimitConfig, waited_s: float, elapsed_s: float) -> str | None:
    """ "paced by rate_limit ..." when waiting on the rate limiter took a noticeable share of a
    fetch's `elapsed_s` (at least a second), naming the rate and the key to raise; else None."""
    if elapsed_s < 1.0 or waited_s < PACED_SHARE * elapsed_s:
        return None
    rps = f"{rate_limit.requests_per_second:g} req/s"
    if "requests_per_second" in rate_limit.model_fields_set:
        return f"paced by rate_limit {rps} (raise rate_limit.requests_per_second)"
    return f"paced by rate_limit {rps} (the default; raise rate_limit.requests_per_second)"


def _request_params(
    endpoint: EndpointConfig, window: tuple[datetime, datetime] | None, bound: Any
) -> dict[str, Any]:
    params: dict[str, Any] = {}
    if endpoint.window is not None:
        if window is None:
            raise ApiAssetsError(f"endpoint `{endpoint.name}` has a `window:` but the run has none")
        params[endpoint.window.start_param] = format_time(window[0], endpoint.window.format)
        params[endpoint.window.end_param] = format_time(window[1], endpoint.window.format)
    if endpoint.incremental is not None and bound is not None:
        params[endpoint.incremental.param] = bound
    return params


def _pages(
    client: SourceClient,
    endpoint: EndpointConfig,
    stats: FetchStats,
    params: dict[str, Any],
    parent_rows: list[dict[str, Any]] | None,
    prepare: Callable[[Page], None],
) -> Iterator[Page]:
    if endpoint.parent is not None:
        return fetch_children(
            client, endpoint, parent_rows or [], stats, params=params, prepare=prepare
        )
    return series.fetch(client, endpoint, stats, params=params, prepare=prepare)


def parent_values(endpoint: EndpointConfig, parent_df: pl.DataFrame) -> list[dict[str, Any]]:
    """The distinct placeholder values of a child endpoint from its parent's table."""
    assert endpoint.parent is not None
    cols = {}
    for placeholder, field_path in endpoint.parent.fields.items():
        column = field_path.replace(".", "__")
        if column not in parent_df.columns:
            raise ApiAssetsError(
                f"endpoint `{endpoint.name}`: parent `{endpoint.parent.endpoint}` has no field "
                f"`{field_path}` (columns: {', '.join(parent_df.columns[:20])})"
            )
        cols[placeholder] = pl.col(column)
    frame = parent_df.select(**cols).drop_nulls().unique(maintain_order=True)
    return frame.to_dicts()


def _sweep_spills(
    layout: DataLayout, source: str, endpoint: str, older_than_s: float = 6 * 3600
) -> None:
    """Remove table spill dirs left by runs killed long ago (never a running run's)."""
    directory = layout.table_dir(source, endpoint)
    if not directory.is_dir():
        return
    cutoff = time.time() - older_than_s
    for path in directory.glob(".spill-*"):
        try:
            if path.stat().st_mtime < cutoff:
                shutil.rmtree(path, ignore_errors=True)
        except FileNotFoundError:
            continue


def _merge_current(
    layout: DataLayout, source: SourceConfig, endpoint: EndpointConfig, fresh: NormalizedTable
) -> NormalizedTable:
    """`partitions: none` + incremental: merge the fetch into `current` by primary key."""
    path = layout.table_path(source.name, endpoint.name, "current")
    if not path.exists():
        return fresh
    old = pl.read_parquet(path)
    merged = pl.concat([old, fresh.collect()], how="diagonal_relaxed")
    # Key fields are dotted paths in the records and flattened `a__b` columns in the table;
    # rows with a null key are never merged into each other.
    keys = [k.replace(".", "__") for k in endpoint.primary_key_fields]
    if keys and all(k in merged.columns for k in keys):
        null_key = pl.any_horizontal([pl.col(k).is_null() for k in keys])
        merged = pl.concat(
            [
                merged.filter(~null_key).unique(subset=keys, keep="last", maintain_order=True),
                merged.filter(null_key),
            ],
            how="diagonal_relaxed",
        )
    fresh.df = merged
    fresh.records = merged.height
    return fresh


def probe_new_data(client: SourceClient, endpoint: EndpointConfig, watermark: Any) -> Any:
    """One small request for records past `watermark`: the newest cursor value seen, or None.

    Used by sensors; it goes through the same limiter and retries as any fetch."""
    inc = endpoint.incremental
    assert inc is not None
    stats = FetchStats()
    params: dict[str, Any] = {}
    if watermark is not None:
        params[inc.param] = watermark
    pages = series.fetch(client, endpoint, stats, params=params, concurrent=False)
    page = next(iter(pages), None)
    if page is None:
        return None
    newest: Any = None
    wm_key = cursor_key(watermark, inc) if watermark is not None else None
    for rec in page.records:
        value = lookup(rec, inc.cursor_field)
        key = cursor_key(value, inc) if value is not None else None
        if key is None or (wm_key is not None and key <= wm_key):
            continue
        if newest is None or key > cursor_key(newest, inc):
            newest = value
    return newest
