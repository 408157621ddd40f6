"""One endpoint, one partition: fetch → archive → table and schema → watermark → report.

This is the whole ingestion of a partition without Dagster. The Dagster layer calls `ingest()`
(or `rebuild_table()` to re-normalize from the archive alone) and turns the result into
materializations and check results.

What a caller may rely on:
- Complete or loud: `ingest` returns only when every page the API signalled was fetched; on any
  error it writes a failed run report, publishes nothing new for the partition and re-raises.
- Commit order: the table and schema are written to temporary files first, then the archive is
  committed, then the table is renamed into place (carrying the watermark in its Parquet
  metadata), then the schema, then the report. A crash anywhere leaves the previous partition
  visible, and the watermark never ahead of the committed data.
"""

import logging
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import polars as pl

from api_assets.config.models import EndpointConfig, IncrementalConfig, SourceConfig
from api_assets.errors import ApiAssetsError, FetchError, IncompleteError
from api_assets.http.client import SourceClient, get_client
from api_assets.pages import FetchStats, Page
from api_assets.pagination import series
from api_assets.pagination.fanout import fetch_children
from api_assets.pipeline import checks
from api_assets.pipeline.checks import CheckOutcome
from api_assets.pipeline.normalize import (
    NormalizedTable,
    TableBuilder,
    archived_records,
    normalize_archive,
    page_table,
)
from api_assets.pipeline.report import RunReport
from api_assets.pipeline.schema import SchemaBuilder, SchemaSnapshot, page_tree
from api_assets.records import lookup
from api_assets.storage.archive import ArchiveReader, ArchiveWriter, pack_body, sweep_stale
from api_assets.storage.layout import DataLayout
from api_assets.storage.tables import read_table_metadata, write_table

log = logging.getLogger("api_assets")

TableMeta = dict[str, Any]


@dataclass
class IngestResult:
    """What one successful partition ingestion produced."""

    report: RunReport
    stats: FetchStats
    table: NormalizedTable
    schema: SchemaSnapshot
    watermark_before: Any
    watermark_after: Any
    lookback_duplicates: int = 0
    cursor_min_seen: Any = None  # oldest cursor value received (filter-ignored evidence)
    checks: list[CheckOutcome] = field(default_factory=list)
    published: bool = True  # False when a blocking schema drift kept the table back


# --- time formats ------------------------------------------------------------------------------


def parse_time(value: Any, fmt: str) -> datetime | None:
    """A cursor or window value as an aware UTC datetime (None if it cannot be read as one)."""
    try:
        if fmt == "epoch_seconds":
            return datetime.fromtimestamp(float(value), UTC)
        if fmt == "epoch_millis":
            return datetime.fromtimestamp(float(value) / 1000.0, UTC)
        if isinstance(value, int | float):
            return datetime.fromtimestamp(float(value), UTC)
        text = str(value).strip().replace("Z", "+00:00")
        dt = datetime.fromisoformat(text)
        return dt if dt.tzinfo else dt.replace(tzinfo=UTC)
    except (ValueError, TypeError, OverflowError, OSError):
        return None


def format_time(dt: datetime, fmt: str) -> Any:
    dt = dt.astimezone(UTC)
    if fmt == "epoch_seconds":
        return int(dt.timestamp())
    if fmt == "epoch_millis":
        return int(dt.timestamp() * 1000)
    return dt.isoformat().replace("+00:00", "Z")


def _cursor_key(value: Any, inc: IncrementalConfig) -> Any:
    """A comparable form of a cursor value."""
    if inc.format == "raw":
        return value
    return parse_time(value, inc.format)


# --- watermarks --------------------------------------------------------------------------------


def _committed(layout: DataLayout, source: str, endpoint: str) -> dict[str, TableMeta]:
    """Partition → the `api_assets` metadata of its committed table file."""
    out: dict[str, TableMeta] = {}
    directory = layout.table_dir(source, endpoint)
    if not directory.exists():
        return out
    for path in sorted(directory.glob("*.parquet")):
        try:
            meta = read_table_metadata(path)
        except Exception:  # an unreadable file is not a commit
            continue
        if meta:
            out[str(meta.get("partition", path.stem))] = meta
    return out


def watermark_for(
    layout: DataLayout, source: SourceConfig, endpoint: EndpointConfig, partition: str
) -> Any:
    """The watermark partition `partition` starts from.

    Re-materializing a committed partition starts from the watermark it started from before (it
    never loses what it held); a new partition starts from the highest watermark committed by an
    earlier partition (`current` merges, so it continues from its own); else `initial_value`.
    """
    inc = endpoint.incremental
    assert inc is not None
    committed = _committed(layout, source.name, endpoint.name)
    if partition == "current":
        meta = committed.get("current")
        return meta.get("watermark_after") if meta else inc.initial_value
    if partition in committed:
        return committed[partition].get("watermark_before")
    best: Any = None
    for key, meta in committed.items():
        if key >= partition:
            continue
        wm = meta.get("watermark_after")
        if wm is None:
            continue
        if best is None or _cursor_key(wm, inc) > _cursor_key(best, inc):
            best = wm
    return best if best is not None else inc.initial_value


def lower_bound(watermark: Any, inc: IncrementalConfig) -> Any:
    """The value sent as `inc.param`: the watermark minus the lookback (time formats only)."""
    if watermark is None:
        return None
    if inc.format == "raw":
        return watermark
    dt = parse_time(watermark, inc.format)
    if dt is None:
        raise ApiAssetsError(f"watermark {watermark!r} is not a {inc.format} value")
    return format_time(dt - timedelta(seconds=inc.lookback_seconds), inc.format)


# --- ingestion ---------------------------------------------------------------------------------


class _Progress:
    """Logs pages, records, rate, retries and an ETA every few seconds on long fetches."""

    def __init__(self, emit: Callable[[str], None] | None, every: float = 5.0):
        self.emit = emit
        self.every = every
        self.started = self.last = time.monotonic()

    def tick(self, stats: FetchStats) -> None:
        now = time.monotonic()
        if self.emit is None or now - self.last < self.every:
            return
        self.last = now
        rate = stats.fetched / max(now - self.started, 1e-9)
        eta = ""
        if stats.total_reported and rate > 0:
            eta = f", ETA {max(stats.total_reported - stats.fetched, 0) / rate:.0f}s"
        self.emit(
            f"{stats.pages} pages, {stats.fetched} records ({rate:.0f}/s), "
            f"{stats.retries} retries, {stats.throttled} throttled{eta}"
        )


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
) -> Iterator[Page]:
    if endpoint.parent is not None:
        return fetch_children(
            client, endpoint, parent_rows or [], stats, params=params, prepare=_prepare
        )
    return series.fetch(client, endpoint, stats, params=params, prepare=_prepare)


def _prepare(page: Page) -> None:
    """In the fetching thread: the page's gzip member and sha256, its DataFrame and its field
    tree. Compression and Polars' parsing release the GIL, so they overlap with other pages'
    fetching; the consuming thread, which every page goes through one at a time, is left with
    appending and merging. On any error the consumer redoes the work itself, where the error is
    reported."""
    try:
        page.prepared = (
            pack_body(page.body),
            page_table(page.records, page.parent),
            page_tree(page.records),
        )
    except Exception:  # RecursionError included: ingest reports it with the page's URL
        page.prepared = None


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
    run_id = run_id or uuid.uuid4().hex
    if block_drift is None:
        block_drift = source.schema_drift.block
    started_at = datetime.now(UTC)
    inc = endpoint.incremental
    stats = FetchStats()
    report = RunReport(
        source=source.name,
        endpoint=endpoint.name,
        partition=partition,
        run_id=run_id,
        status="failed",
        started_at=started_at,
        kind=endpoint.kind,
    )
    watermark_before = watermark_for(layout, source, endpoint, partition) if inc else None
    report.watermark_before = watermark_before
    report.watermark_after = watermark_before
    sweep_stale(layout, source.name, endpoint.name)  # temp dirs of runs that crashed long ago
    _sweep_spills(layout, source.name, endpoint.name)
    writer = ArchiveWriter(layout, source.name, endpoint.name, partition, run_id)
    # Past SPILL_ROWS rows the table goes to hidden Parquet parts, so memory stays flat.
    spill_dir = layout.table_dir(source.name, endpoint.name) / f".spill-{run_id}"
    try:
        client = client or get_client(source, shared_dir=layout.state_dir() / "ratelimit")
        bound = lower_bound(watermark_before, inc) if inc else None
        params = _request_params(endpoint, window, bound)
        ingested_at = datetime.now(UTC)
        builder = TableBuilder(
            endpoint.primary_key_fields, partition, ingested_at, spill_dir=spill_dir
        )
        schema_builder = SchemaBuilder()
        progress = _Progress(emit)
        wm_key: Any = (
            _cursor_key(watermark_before, inc) if inc and watermark_before is not None else None
        )
        wm_after, wm_after_key = watermark_before, wm_key
        lookback_dups = 0
        oldest: Any = None
        for page in _pages(client, endpoint, stats, params, parent_rows):
            packed, frame, tree = page.prepared or (None, None, None)
            page.prepared = None
            writer.write(page, packed)
            records = page.records
            try:
                builder.add(records, page.parent, frame=frame)
                schema_builder.add(records, tree=tree)
            except RecursionError:
                raise FetchError(
                    f"source `{source.name}`, endpoint `{endpoint.name}`, {page.url}: page "
                    f"{page.index + 1} holds records nested too deeply to flatten into columns"
                ) from None
            if inc is not None and records:
                for rec in records:
                    value = lookup(rec, inc.cursor_field)
                    if value is None:
                        continue
                    key = _cursor_key(value, inc)
                    if key is None:
                        raise FetchError(
                            f"source `{source.name}`, endpoint `{endpoint.name}`: cursor field "
                            f"`{inc.cursor_field}` holds {value!r}, not a {inc.format} value"
                        )
                    if wm_key is not None and key <= wm_key:
                        lookback_dups += 1
                    if oldest is None or key < oldest[0]:
                        oldest = (key, value)
                    if wm_after_key is None or key > wm_after_key:
                        wm_after, wm_after_key = value, key
            progress.tick(stats)
        table = builder.finish()
        schema = schema_builder.finish(source.name, endpoint.name, partition)
        # Evidence first: an incomplete fetch publishes nothing (the archive is dropped too).
        expected = table.duplicates if inc is not None else 0
        if endpoint.paginator.type == "keyset" and getattr(endpoint.paginator, "inclusive", False):
            expected = min(table.duplicates, max(stats.pages - 1, 0))
        outcomes = [
            checks.completeness(
                stats,
                records=table.records,
                duplicates_within=table.duplicates,
                expected_overlap=expected,
                is_child=endpoint.parent is not None,
            )
        ]
        previous_schema = SchemaSnapshot.previous(layout, source.name, endpoint.name, partition)
        outcomes.append(checks.schema_drift(previous_schema, schema))
        backwards = bool(
            inc is not None
            and wm_key is not None
            and wm_after_key is not None
            and wm_after_key < wm_key
        )
        filter_ignored = bool(
            inc is not None
            and bound is not None
            and oldest is not None
            and inc.format != "raw"
            and _far_below(oldest[0], _cursor_key(bound, inc), inc)
        )
        outcomes.append(
            checks.page_count_anomaly(
                history or [],
                pages=stats.pages,
                records=table.records,
                watermark_backwards=backwards,
                filter_ignored=filter_ignored,
            )
        )
        report.checks = list(outcomes)
        incomplete = outcomes[0]
        if not incomplete.passed and incomplete.severity == checks.ERROR:
            raise IncompleteError(
                f"source `{source.name}`, endpoint `{endpoint.name}`, partition {partition}: "
                f"incomplete: {incomplete.message}. Nothing was published; the watermark is "
                f"unchanged. Re-run; if it persists, check the API or the paginator settings."
            )
        drift = outcomes[1]
        publish = not (block_drift and not drift.passed and drift.severity == checks.ERROR)
        if partition == "current" and inc is not None:
            table = _merge_current(layout, source, endpoint, table)
        meta = {
            "source": source.name,
            "endpoint": endpoint.name,
            "partition": partition,
            "run_id": run_id,
            "primary_key": endpoint.primary_key_fields,
            "watermark_before": watermark_before,
            "watermark_after": wm_after,
            "committed_at": datetime.now(UTC).isoformat(),
        }
        # Commit: archive first, then the schema, then the table that carries the watermark.
        writer.commit()
        schema.save(layout)
        if publish:
            table.write(
                layout.table_path(source.name, endpoint.name, partition),
                {"api_assets": orjson.dumps(meta).decode()},
            )
    except BaseException as exc:
        writer.abort()
        shutil.rmtree(spill_dir, ignore_errors=True)
        report.apply_stats(stats)
        if isinstance(exc, ApiAssetsError) and not any(
            getattr(c, "name", None) == checks.COMPLETENESS for c in report.checks
        ):
            # A loop, a bad body or a failed request proves nothing complete: say so in the
            # report's checks too, not only in `error`.
            report.checks.append(
                CheckOutcome(checks.COMPLETENESS, False, checks.ERROR, str(exc), stats.as_dict())
            )
        report.fail(str(exc) or type(exc).__name__)
        report.write(layout)
        raise
    shutil.rmtree(spill_dir, ignore_errors=True)
    table.lazy = None  # its parts are gone; `df` keeps the preview rows
    report.apply_stats(stats)
    report.records = table.records
    report.duplicates = table.duplicates + lookback_dups
    report.widened = list(table.widened)
    if publish:
        report.watermark_after = wm_after
        report.succeed()
    else:
        report.fail(
            f"schema drift blocked publishing the table (schema_drift.block is true): "
            f"{drift.message}"
        )
    report.write(layout)
    return IngestResult(
        report=report,
        stats=stats,
        table=table,
        schema=schema,
        watermark_before=watermark_before,
        watermark_after=wm_after if publish else watermark_before,
        lookback_duplicates=lookback_dups,
        cursor_min_seen=oldest[1] if oldest else None,
        checks=outcomes,
        published=publish,
    )


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


def _far_below(oldest: Any, bound: Any, inc: IncrementalConfig) -> bool:
    """Records much older than the bound sent (a day past the lookback): the filter was ignored."""
    if oldest is None or bound is None:
        return False
    try:
        return bool(oldest < bound - timedelta(days=1))
    except TypeError:
        return False


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


def rebuild_table(
    source: SourceConfig, endpoint: EndpointConfig, partition: str, *, layout: DataLayout
) -> NormalizedTable:
    """Re-normalize a partition from its archive alone (no request is sent) and rewrite its table,
    keeping the watermark metadata it was committed with."""
    reader = ArchiveReader(layout, source.name, endpoint.name, partition)
    if not reader.exists():
        raise ApiAssetsError(
            f"source `{source.name}`, endpoint `{endpoint.name}`: no archive for partition "
            f"{partition}; materialize `{source.name}/raw/{endpoint.name}` first"
        )
    table = normalize_archive(
        reader, endpoint.records_path, endpoint.primary_key_fields, partition, datetime.now(UTC)
    )
    path = layout.table_path(source.name, endpoint.name, partition)
    meta = read_table_metadata(path) if path.exists() else {}
    meta = meta or {
        "source": source.name,
        "endpoint": endpoint.name,
        "partition": partition,
        "primary_key": endpoint.primary_key_fields,
    }
    write_table(table.df, path, {"api_assets": orjson.dumps(meta).decode()})
    return table


def rebuild_schema(
    source: SourceConfig, endpoint: EndpointConfig, partition: str, *, layout: DataLayout
) -> SchemaSnapshot:
    """Re-derive a partition's schema snapshot from its archive alone and save it."""
    reader = ArchiveReader(layout, source.name, endpoint.name, partition)
    if not reader.exists():
        raise ApiAssetsError(
            f"source `{source.name}`, endpoint `{endpoint.name}`: no archive for partition "
            f"{partition}; materialize `{source.name}/raw/{endpoint.name}` first"
        )
    builder = SchemaBuilder()
    for _entry, records in archived_records(reader, endpoint.records_path):
        builder.add(records)
    snapshot = builder.finish(source.name, endpoint.name, partition)
    snapshot.save(layout)
    return snapshot


def latest_watermark(layout: DataLayout, source: SourceConfig, endpoint: EndpointConfig) -> Any:
    """The highest watermark any committed partition reached (or `initial_value`)."""
    inc = endpoint.incremental
    assert inc is not None
    best: Any = None
    for meta in _committed(layout, source.name, endpoint.name).values():
        wm = meta.get("watermark_after")
        if wm is not None and (best is None or _cursor_key(wm, inc) > _cursor_key(best, inc)):
            best = wm
    return best if best is not None else inc.initial_value


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
    wm_key = _cursor_key(watermark, inc) if watermark is not None else None
    for rec in page.records:
        value = lookup(rec, inc.cursor_field)
        key = _cursor_key(value, inc) if value is not None else None
        if key is None or (wm_key is not None and key <= wm_key):
            continue
        if newest is None or key > _cursor_key(newest, inc):
            newest = value
    return newest
