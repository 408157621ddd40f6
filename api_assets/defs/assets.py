"""Per endpoint, one subsettable multi-asset step producing `S/raw/E`, `S/E` and `S/schema/E`
(CONTRACT §5), with the checks `completeness`, `page_count_anomaly` and `schema_drift`.

One step per endpoint keeps process starts low; the three assets stay separately selectable:
the table or the schema alone are rebuilt from the archive without a request.
"""

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import dagster as dg
import polars as pl

from api_assets import checks as evidence
from api_assets import engine
from api_assets.defs.partitions import CURRENT, partitions_def_for, window_of
from api_assets.defs.resources import ApiSource, DataStore
from api_assets.errors import IncompleteError
from api_assets.report import CheckOutcome
from api_assets.sources import EndpointConfig, SourceConfig

HISTORY = 7  # trailing materializations the page-count check compares with

AUTOMATION = (
    dg.AutomationCondition.eager() & dg.AutomationCondition.all_deps_blocking_checks_passed()
)


def freshness_policy(source: SourceConfig) -> dg.FreshnessPolicy | None:
    """A scheduled source's table is stale when a day passes after a tick without new data."""
    if not source.schedule:
        return None
    return dg.FreshnessPolicy.cron(
        deadline_cron=source.schedule, lower_bound_delta=timedelta(days=1), timezone="UTC"
    )


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


def _md_preview(df: pl.DataFrame, rows: int = 5) -> dg.MetadataValue:
    head = df.head(rows)
    cols = [c for c in head.columns if not c.startswith("_")][:12]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in head.select(cols).iter_rows():
        lines.append("| " + " | ".join(str(v)[:40].replace("|", "\\|") for v in row) + " |")
    return dg.MetadataValue.md("\n".join(lines))


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
    raw_deps: list[dg.AssetKey] = []
    if endpoint.parent is not None:
        raw_deps.append(table_key(s, endpoint.parent.endpoint))
    specs = [
        dg.AssetSpec(
            rkey,
            deps=raw_deps,
            description=f"Raw responses of `{endpoint.path}` ({kind_word}), gzip bodies and manifest.",
            group_name=s,
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
            kinds={"polars", "parquet"},
            skippable=True,
            automation_condition=AUTOMATION,
            freshness_policy=freshness_policy(source),
        ),
        dg.AssetSpec(
            skey,
            deps=[rkey],
            description=f"Structural schema snapshot of `{endpoint.path}`.",
            group_name=s,
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
        per_partition: list[engine.IngestResult] = []
        outcomes: dict[str, list[tuple[str, CheckOutcome]]] = {}
        config = api.config()
        ep = config.endpoint(e)
        for key in keys:
            window = window_of(partitions_def, key) if partitions_def else None
            if rkey in selected:
                parent_rows = None
                if ep.parent is not None:
                    parent_path = layout.table_path(s, ep.parent.endpoint, key)
                    if not parent_path.exists():
                        raise dg.Failure(
                            f"`{s}/{e}` needs the table of its parent `{s}/{ep.parent.endpoint}` "
                            f"for partition {key}; materialize the parent first"
                        )
                    parent_rows = engine.parent_values(ep, pl.read_parquet(parent_path))
                try:
                    result = engine.ingest(
                        config,
                        ep,
                        key,
                        layout=layout,
                        run_id=context.run_id,
                        window=window,
                        parent_rows=parent_rows,
                        client=api.client(),
                        emit=context.log.info,
                        history=_history(context, rkey, key),
                    )
                except IncompleteError as exc:
                    raise dg.Failure(str(exc)) from None
                per_partition.append(result)
                for outcome in result.checks:
                    outcomes.setdefault(outcome.name, []).append((key, outcome))
                context.log.info(
                    f"{s}/{e} {key}: {result.report.records} records, {result.stats.pages} pages, "
                    f"{result.stats.requests} requests, {result.stats.retries} retries, "
                    f"{result.stats.throttled} throttled"
                )
            else:
                if tkey in selected:
                    engine.rebuild_table(config, ep, key, layout=layout)
                if skey in selected:
                    engine.rebuild_schema(config, ep, key, layout=layout)

        if rkey in selected:
            yield from _materializations(s, ep, per_partition, selected, rkey, tkey, skey)
            for name, items in outcomes.items():
                key_for = skey if name == evidence.SCHEMA_DRIFT else rkey
                if key_for not in selected:
                    continue
                yield _check_result(
                    _worst(items), key_for, items[0][0] if len(items) == 1 else None
                )
        else:
            for key_sel in (tkey, skey):
                if key_sel in selected:
                    yield dg.MaterializeResult(
                        asset_key=key_sel, metadata={"rebuilt_from_archive": True}
                    )

    return _endpoint


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


def _materializations(
    s: str,
    ep: EndpointConfig,
    results: list[engine.IngestResult],
    selected: set[dg.AssetKey],
    rkey: dg.AssetKey,
    tkey: dg.AssetKey,
    skey: dg.AssetKey,
) -> Iterator[dg.MaterializeResult]:
    pages = sum(r.stats.pages for r in results)
    records = sum(r.report.records or 0 for r in results)
    common: dict[str, Any] = {
        "pages": pages,
        "requests": sum(r.stats.requests for r in results),
        "retries": sum(r.stats.retries for r in results),
        "throttled": sum(r.stats.throttled for r in results),
        "fetched": sum(r.stats.fetched for r in results),
        "partitions": len(results),
    }
    last = results[-1] if results else None
    if ep.incremental is not None and last is not None:
        common["high_water_mark"] = dg.MetadataValue.text(str(last.watermark_after))
        common["watermark_before"] = dg.MetadataValue.text(str(last.watermark_before))
    if last is not None and last.stats.total_reported is not None:
        common["total_reported"] = last.stats.total_reported
    yield dg.MaterializeResult(
        asset_key=rkey,
        metadata={
            **common,
            "dagster/row_count": records,
            "bytes": sum(r.stats.bytes for r in results),
        },
    )
    published = [r for r in results if r.published]
    if tkey in selected and published and len(published) == len(results):
        df = published[-1].table.df
        yield dg.MaterializeResult(
            asset_key=tkey,
            metadata={
                **common,
                "dagster/row_count": sum(r.table.df.height for r in published),
                "dagster/column_schema": _column_schema(df),
                "duplicates": sum(r.report.duplicates or 0 for r in published),
                "preview": _md_preview(df),
            },
        )
    if skey in selected and last is not None:
        yield dg.MaterializeResult(
            asset_key=skey,
            metadata={"fields": len(last.schema.fields), "records": last.schema.records},
        )
