"""Per endpoint, one subsettable multi-asset step producing `S/raw/E`, `S/E` and `S/schema/E`,
with the checks `completeness`, `page_count_anomaly` and `schema_drift`.

One step per endpoint keeps process starts low; the three assets stay separately selectable:
the table or the schema alone are rebuilt from the archive without a request (the schema is
still checked for drift).

What a run records:
- each partition's own metadata (a range run too: `add_asset_metadata(partition_key=...)`),
  since the page-count check reads the trailing materializations partition by partition;
- on an engine error that says records are missing or duplicated (IncompleteError,
  PaginationError), a failed `completeness` evaluation, then a `dg.Failure`: nothing published;
- any other engine error becomes a `dg.Failure` with the engine's message (no traceback).
"""

import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import cache
from itertools import pairwise
from typing import Any

import dagster as dg
import polars as pl

from api_assets.config.models import EndpointConfig, SourceConfig
from api_assets.defs.inputs import TABLES_IO_MANAGER
from api_assets.defs.partitions import CURRENT, partitions_def_for, window_of
from api_assets.defs.resources import ApiSource, DataStore
from api_assets.errors import ApiAssetsError, IncompleteError, PaginationError
from api_assets.http.redact import is_credential_header
from api_assets.pipeline import checks as evidence
from api_assets.pipeline.checks import CheckOutcome
from api_assets.pipeline.ingest import IngestResult, ingest, parent_values
from api_assets.pipeline.rebuild import rebuild_schema, rebuild_table
from api_assets.pipeline.report import RunReport
from api_assets.pipeline.schema import SchemaSnapshot
from api_assets.storage.layout import DataLayout

HISTORY = 7  # trailing materializations the page-count check compares with
PREVIEW_ROWS = 5
PREVIEW_COLUMNS = 12
PREVIEW_CHARS = 80

AUTOMATION = (
    dg.AutomationCondition.eager() & dg.AutomationCondition.all_deps_blocking_checks_passed()
)


def freshness_policy(source: SourceConfig) -> dg.FreshnessPolicy | None:
    """A scheduled source's table is stale when a tick passes with no new data since the tick
    before (at most a day before)."""
    if not source.schedule:
        return None
    # Dagster refuses a lower bound longer than the cron's interval (an hourly schedule).
    interval = smallest_cron_interval(source.schedule)
    return dg.FreshnessPolicy.cron(
        deadline_cron=source.schedule,
        lower_bound_delta=min(timedelta(days=1), interval),
        timezone="UTC",
    )


_TICK_FORMAT = "%Y-%m-%dT%H:%M"
_TICKS = 1000  # as many ticks as Dagster samples to check a FreshnessPolicy.cron
_HORIZON = timedelta(days=365 * 20)


@cache
def smallest_cron_interval(cron: str) -> timedelta:
    """The shortest time between two ticks of `cron` (UTC), over at least as many ticks from a
    year ago as Dagster samples to check `dg.FreshnessPolicy.cron`'s lower bound against it.

    The ticks come from public API: the partitions of a cron-based
    `dg.TimeWindowPartitionsDefinition` start at its ticks.
    """
    start = (datetime.now(UTC) - timedelta(days=365)).replace(second=0, microsecond=0)
    ticks_of = dg.TimeWindowPartitionsDefinition(
        start=start.replace(tzinfo=None), fmt=_TICK_FORMAT, cron_schedule=cron, timezone="UTC"
    )
    span = timedelta(days=1)
    while True:
        keys = ticks_of.get_partition_keys(current_time=start + span)
        if len(keys) >= _TICKS or span >= _HORIZON:
            break
        # grow the span to where the ticks so far say 1000 would be (none yet: twice as long)
        factor = -(-_TICKS * 6 // (5 * len(keys))) if keys else 2
        span = min(_HORIZON, span * max(2, factor))
    ticks = [datetime.strptime(key, _TICK_FORMAT) for key in keys]
    gaps = [later - earlier for earlier, later in pairwise(ticks)]
    return min(gaps, default=_HORIZON)


def raw_key(source: str, endpoint: str) -> dg.AssetKey:
    return dg.AssetKey([source, "raw", endpoint])


def table_key(source: str, endpoint: str) -> dg.AssetKey:
    return dg.AssetKey([source, endpoint])


def schema_key(source: str, endpoint: str) -> dg.AssetKey:
    return dg.AssetKey([source, "schema", endpoint])


def resource_key(source: str) -> str:
    return f"api_{source}"


def _severity(name: str) -> dg.AssetCheckSeverity:
    return dg.AssetCheckSeverity.ERROR if name == "ERROR" else dg.AssetCheckSeverity.WARN


def code_version(endpoint: EndpointConfig) -> str:
    """A short hash of what the endpoint fetches and how: a changed sources entry shows as a
    new code version in the UI. Owners and tags are left out (they change no data), and so are
    keys left at their defaults (a new optional key changes no version); credentials are masked."""
    config = endpoint.model_dump(mode="json", exclude={"owners", "tags"}, exclude_defaults=True)
    # a credential in a header is neither data nor config: rotating it changes no version
    if "headers" in config:
        config["headers"] = {
            k: "***" if is_credential_header(k) else v for k, v in config["headers"].items()
        }
    text = json.dumps(config, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _table_preview(df: pl.DataFrame) -> dg.MetadataValue:
    """The first rows as a table the UI renders: up to 12 columns (`_` columns left out), each
    value as text clipped to 80 characters."""
    cols = [c for c in df.columns if not c.startswith("_")][:PREVIEW_COLUMNS]
    records = [
        dg.TableRecord({c: _clip("" if v is None else str(v)) for c, v in row.items()})
        for row in df.head(PREVIEW_ROWS).select(cols).iter_rows(named=True)
    ]
    schema = dg.TableSchema(columns=[dg.TableColumn(c, str(df.schema[c])) for c in cols])
    return dg.MetadataValue.table(records=records, schema=schema)


def _uri(layout: DataLayout, table: dg.AssetKey, partition: str) -> str:
    """Where the partition's committed Parquet file is, as a `file://` URI."""
    source, endpoint = table.path
    return layout.table_path(source, endpoint, partition).resolve().as_uri()


def _clip(text: str) -> str:
    return text if len(text) <= PREVIEW_CHARS else text[: PREVIEW_CHARS - 1] + "…"


def _column_schema(df: pl.DataFrame) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[dg.TableColumn(name, str(dtype)) for name, dtype in df.schema.items()]
    )


def _history(
    context: dg.AssetExecutionContext, key: dg.AssetKey, partition: str
) -> list[dict[str, Any]]:
    """Pages and records of the trailing materializations of `key`, other partitions only."""
    result = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key), limit=HISTORY * 3
    )
    out: list[dict[str, Any]] = []
    for record in result.records:
        mat = record.asset_materialization
        if mat is None or mat.partition == partition:
            continue
        md = mat.metadata
        if "pages" in md and "dagster/row_count" in md:
            out.append({"pages": md["pages"].value, "records": md["dagster/row_count"].value})
        if len(out) >= HISTORY:
            break
    return out


def _check_result(
    outcome: CheckOutcome, key: dg.AssetKey, partition: str | None = None
) -> dg.AssetCheckResult:
    metadata: dict[str, Any] = {"message": outcome.message}
    for k, v in (outcome.metadata or {}).items():
        if k == "changes":
            metadata["changes"] = dg.MetadataValue.md(str(v))
        elif isinstance(v, int | float | str | bool) or v is None:
            metadata[k] = dg.MetadataValue.text("null") if v is None else v
    if partition is not None:
        metadata["partition"] = partition
    return dg.AssetCheckResult(
        asset_key=key,
        check_name=outcome.name,
        passed=outcome.passed,
        severity=_severity(outcome.severity),
        description=outcome.message,
        metadata=metadata,
    )


def build_endpoint_asset(source: SourceConfig, endpoint: EndpointConfig) -> dg.AssetsDefinition:
    """The multi-asset of one endpoint."""
    s, e = source.name, endpoint.name
    partitions_def = partitions_def_for(source)
    rkey, tkey, skey = raw_key(s, e), table_key(s, e), schema_key(s, e)
    kind_word = endpoint.kind
    owners = list(dict.fromkeys([*source.owners, *endpoint.owners]))
    tags = {**source.tags, **endpoint.tags}
    version = code_version(endpoint)
    raw_deps: list[dg.AssetKey] = []
    if endpoint.parent is not None:
        raw_deps.append(table_key(s, endpoint.parent.endpoint))
    specs = [
        dg.AssetSpec(
            rkey,
            deps=raw_deps,
            description=f"Raw responses of `{endpoint.path}` ({kind_word}), gzip bodies and manifest.",
            group_name=s,
            owners=owners,
            tags=tags,
            code_version=version,
            kinds={"api", "json"},
            skippable=True,
            automation_condition=AUTOMATION if raw_deps else None,
            metadata={"path": endpoint.path, "paginator": endpoint.paginator.type},
        ),
        dg.AssetSpec(
            tkey,
            deps=[rkey],
            description=f"Normalized table of `{endpoint.path}` (Parquet, one row per record).",
            group_name=s,
            owners=owners,
            tags=tags,
            code_version=version,
            kinds={"polars", "parquet"},
            skippable=True,
            automation_condition=AUTOMATION,
            freshness_policy=freshness_policy(source),
        ).with_io_manager_key(TABLES_IO_MANAGER),  # downstream assets load it as a LazyFrame
        dg.AssetSpec(
            skey,
            deps=[rkey],
            description=f"Structural schema snapshot of `{endpoint.path}`.",
            group_name=s,
            owners=owners,
            tags=tags,
            code_version=version,
            kinds={"json"},
            skippable=True,
            automation_condition=AUTOMATION,
        ),
    ]
    check_specs = [
        dg.AssetCheckSpec(
            evidence.COMPLETENESS,
            asset=rkey,
            description="records missing or duplicated as far as the evidence shows",
        ),
        dg.AssetCheckSpec(
            evidence.PAGE_COUNT_ANOMALY,
            asset=rkey,
            description="pages and records against trailing materializations",
        ),
        dg.AssetCheckSpec(
            evidence.SCHEMA_DRIFT,
            asset=skey,
            blocking=source.schema_drift.block,
            description="this snapshot against the previous partition's",
        ),
    ]

    @dg.multi_asset(
        name=f"{s}__{e}",
        specs=specs,
        check_specs=check_specs,
        partitions_def=partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run() if partitions_def else None,
        can_subset=True,
        pool=f"api_{s}",
        required_resource_keys={resource_key(s), "data_store"},
        op_tags={"source": s},
    )
    def _endpoint(context: dg.AssetExecutionContext) -> Iterator[Any]:
        api: ApiSource = getattr(context.resources, resource_key(s))
        store: DataStore = context.resources.data_store
        layout = store.layout()
        selected = set(context.selected_asset_keys)
        keys = list(context.partition_keys) if partitions_def else [CURRENT]
        config = api.config()
        ep = config.endpoint(e)
        if rkey not in selected:
            yield from _rebuild(context, config, ep, keys, layout, selected, tkey, skey)
            return
        per_partition: list[tuple[str, IngestResult]] = []
        outcomes: dict[str, list[tuple[str, CheckOutcome]]] = {}
        for key in keys:
            window = window_of(partitions_def, key) if partitions_def else None
            parent_rows = None
            if ep.parent is not None:
                parent_path = layout.table_path(s, ep.parent.endpoint, key)
                if not parent_path.exists():
                    raise dg.Failure(
                        f"`{s}/{e}` needs the table of its parent `{s}/{ep.parent.endpoint}` "
                        f"for partition {key}; materialize the parent first"
                    )
                parent_rows = parent_values(ep, pl.read_parquet(parent_path))
            try:
                result = ingest(
                    config,
                    ep,
                    key,
                    layout=layout,
                    run_id=context.run.run_id,
                    window=window,
                    parent_rows=parent_rows,
                    client=api.client(),
                    emit=context.log.info,
                    history=_history(context, rkey, key),
                )
            except (IncompleteError, PaginationError) as exc:
                # The evidence says records are missing or duplicated: record the failed
                # completeness check in Dagster too, then fail the run (nothing was published).
                yield _check_result(_completeness_failure(layout, s, e, key, exc), rkey, key)
                raise dg.Failure(
                    description=str(exc), metadata={"partition": key, "endpoint": f"{s}/{e}"}
                ) from None
            except ApiAssetsError as exc:
                raise dg.Failure(
                    description=str(exc), metadata={"partition": key, "endpoint": f"{s}/{e}"}
                ) from None
            per_partition.append((key, result))
            for outcome in result.checks:
                outcomes.setdefault(outcome.name, []).append((key, outcome))
            context.log.info(
                f"{s}/{e} {key}: {result.report.records} records, {result.stats.pages} pages, "
                f"{result.stats.requests} requests, {result.stats.retries} retries, "
                f"{result.stats.throttled} throttled"
            )

        yield from _materializations(context, ep, per_partition, selected, layout, rkey, tkey, skey)
        for name, items in outcomes.items():
            key_for = skey if name == evidence.SCHEMA_DRIFT else rkey
            if key_for not in selected:
                continue
            yield _check_result(_worst(items), key_for, items[0][0] if len(items) == 1 else None)

    return _endpoint


def _completeness_failure(
    layout: DataLayout, source: str, endpoint: str, partition: str, exc: Exception
) -> CheckOutcome:
    """The failed completeness outcome behind an engine error: the one the failed run report
    holds when the engine evaluated it, else the error itself (a repeated page, a loop)."""
    report = RunReport.load(layout, source, endpoint, partition)
    for outcome in report.outcomes if report is not None else []:
        if outcome.name == evidence.COMPLETENESS and not outcome.passed:
            return outcome
    return CheckOutcome(evidence.COMPLETENESS, False, evidence.ERROR, str(exc), {})


def _rebuild(
    context: dg.AssetExecutionContext,
    config: SourceConfig,
    ep: EndpointConfig,
    keys: list[str],
    layout: DataLayout,
    selected: set[dg.AssetKey],
    tkey: dg.AssetKey,
    skey: dg.AssetKey,
) -> Iterator[Any]:
    """`S/E` and/or `S/schema/E` alone: re-derived from the archive, no request sent; the
    schema is still checked for drift."""
    tables: list[tuple[str, pl.DataFrame]] = []
    drifts: list[tuple[str, CheckOutcome]] = []
    snapshots: list[tuple[str, SchemaSnapshot]] = []
    try:
        for key in keys:
            if tkey in selected:
                tables.append((key, rebuild_table(config, ep, key, layout=layout).df))
            if skey in selected:
                snapshot = rebuild_schema(config, ep, key, layout=layout)
                previous = SchemaSnapshot.previous(
                    layout, config.name, ep.name, key, after_save=True
                )
                snapshots.append((key, snapshot))
                drifts.append((key, evidence.schema_drift(previous, snapshot)))
    except ApiAssetsError as exc:
        raise dg.Failure(description=str(exc)) from None
    if tables:
        per_key = {
            key: {
                "dagster/row_count": df.height,
                "dagster/column_schema": _column_schema(df),
                "dagster/uri": _uri(layout, tkey, key),
                "preview": _table_preview(df),
                "rebuilt_from_archive": True,
            }
            for key, df in tables
        }
        yield _materialize(context, tkey, per_key)
    if snapshots:
        per_key = {
            key: {
                "dagster/row_count": snap.records,
                "fields": len(snap.fields),
                "records": snap.records,
                "rebuilt_from_archive": True,
            }
            for key, snap in snapshots
        }
        yield _materialize(context, skey, per_key)
        yield _check_result(_worst(drifts), skey, drifts[0][0] if len(drifts) == 1 else None)


def _worst(items: list[tuple[str, CheckOutcome]]) -> CheckOutcome:
    """One outcome for a range run: the worst partition's, naming it."""
    failing = [(k, o) for k, o in items if not o.passed]
    if not failing:
        key, outcome = items[-1]
        return (
            outcome
            if len(items) == 1
            else CheckOutcome(
                outcome.name, True, outcome.severity, f"{len(items)} partitions passed", {}
            )
        )
    failing.sort(key=lambda ko: ko[1].severity != "ERROR")
    key, outcome = failing[0]
    if len(items) == 1:
        return outcome
    return CheckOutcome(
        outcome.name,
        False,
        outcome.severity,
        f"{len(failing)} of {len(items)} partitions failed; {key}: {outcome.message}",
        outcome.metadata,
    )


def _materialize(
    context: dg.AssetExecutionContext,
    asset_key: dg.AssetKey,
    per_key: dict[str, dict[str, Any]],
) -> dg.MaterializeResult:
    """One materialization per partition, each with its own partition's metadata: a range run
    must not stamp the range's totals on every partition (page-count history reads them)."""
    if len(per_key) == 1:
        return dg.MaterializeResult(asset_key=asset_key, metadata=next(iter(per_key.values())))
    for key, metadata in per_key.items():
        context.add_asset_metadata(metadata, asset_key=asset_key, partition_key=key)
    return dg.MaterializeResult(asset_key=asset_key, metadata={"partitions": len(per_key)})


def _fetch_metadata(ep: EndpointConfig, result: IngestResult) -> dict[str, Any]:
    """The evidence of one partition's fetch, carried by each of its materializations."""
    stats = result.stats
    metadata: dict[str, Any] = {
        "pages": stats.pages,
        "requests": stats.requests,
        "retries": stats.retries,
        "throttled": stats.throttled,
        "fetched": stats.fetched,
        "concurrency": stats.concurrency,
        "elapsed_seconds": dg.MetadataValue.float(float(result.report.elapsed_s or 0.0)),
        "rate_limit_wait_seconds": dg.MetadataValue.float(round(stats.rate_limit_wait_s, 6)),
    }
    if ep.incremental is not None:
        metadata["high_water_mark"] = dg.MetadataValue.text(str(result.watermark_after))
        metadata["watermark_before"] = dg.MetadataValue.text(str(result.watermark_before))
    if stats.total_reported is not None:
        metadata["total_reported"] = stats.total_reported
    return metadata


def _materializations(
    context: dg.AssetExecutionContext,
    ep: EndpointConfig,
    results: list[tuple[str, IngestResult]],
    selected: set[dg.AssetKey],
    layout: DataLayout,
    rkey: dg.AssetKey,
    tkey: dg.AssetKey,
    skey: dg.AssetKey,
) -> Iterator[dg.MaterializeResult]:
    if not results:
        return
    common = {key: _fetch_metadata(ep, r) for key, r in results}
    yield _materialize(
        context,
        rkey,
        {
            key: {
                **common[key],
                "dagster/row_count": r.report.records or 0,
                "bytes": r.stats.bytes,
                "preview": _table_preview(r.table.df),
            }
            for key, r in results
        },
    )
    # A blocked schema drift keeps the table back: no `S/E` materialization in that run.
    if tkey in selected and all(r.published for _, r in results):
        yield _materialize(
            context,
            tkey,
            {
                key: {
                    **common[key],
                    "dagster/row_count": r.table.records,
                    "dagster/column_schema": _column_schema(r.table.df),
                    "duplicates": r.report.duplicates or 0,
                    "dagster/uri": _uri(layout, tkey, key),
                    "preview": _table_preview(r.table.df),
                }
                for key, r in results
            },
        )
    if skey in selected:
        yield _materialize(
            context,
            skey,
            {
                key: {
                    **common[key],
                    "dagster/row_count": r.schema.records,
                    "fields": len(r.schema.fields),
                    "records": r.schema.records,
                }
                for key, r in results
            },
        )
