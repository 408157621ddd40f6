"""Dagster definitions for a source's webhooks: the `S/webhook_events` asset and the sensor that
requests it when events land.

- `S/webhook_events` writes `tables/S/webhook_events/P.parquet` (atomically and durably, as every table) with
  one row per event id received in partition P's time window: `event_id`, `event_type`,
  `received_at` (UTC), `payload` (the JSON text), `_partition`, `_ingested_at`. Unpartitioned
  sources have the single partition `current`, holding every event. A range run writes each
  partition of the range on its own (single-run backfill policy, so `--partition-range` works).
- `S_webhook_sensor` reads the landing from its cursor (a `LandingOffset` as JSON) and requests
  one run per partition that received new events, with `run_key = "<partition>@<offset>"`, so a
  re-evaluated tick can never launch a partition twice. Events for a partition that does not
  exist yet (today's, when the partitions end yesterday) wait in the cursor until it does.

The data root comes from `DataLayout.from_env()` when the asset or sensor runs, never at import.
"""

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import dagster as dg
import polars as pl

from api_assets.config.models import SourceConfig
from api_assets.storage.layout import DataLayout
from api_assets.storage.tables import write_table
from api_assets.webhooks.landing import LandedEvent, LandingOffset, LandingReader

ASSET_NAME = "webhook_events"
UNPARTITIONED_KEY = "current"
SENSOR_INTERVAL_SECONDS = 30
MAX_EVENTS_PER_TICK = 200_000
PREVIEW_ROWS = 5
PREVIEW_PAYLOAD_CHARS = 160

SCHEMA: dict[str, pl.DataType | type[pl.DataType]] = {
    "event_id": pl.String,
    "event_type": pl.String,
    "received_at": pl.Datetime("us", "UTC"),
    "payload": pl.String,
    "_partition": pl.String,
    "_ingested_at": pl.Datetime("us", "UTC"),
}


def sensor_name(source: str) -> str:
    return f"{source}_webhook_sensor"


def webhook_events_key(source: str) -> dg.AssetKey:
    return dg.AssetKey([source, ASSET_NAME])


def build_webhook_defs(
    source: SourceConfig, partitions_def: dg.PartitionsDefinition | None
) -> dg.Definitions:
    """The asset and sensor of `source`'s webhooks; `partitions_def` is the source's own (a
    UTC daily/hourly time-window definition) or None for `partitions: none`."""
    if partitions_def is not None and not isinstance(
        partitions_def, dg.TimeWindowPartitionsDefinition
    ):
        raise ValueError(
            f"source {source.name!r}: webhook events are partitioned by time; got "
            f"{type(partitions_def).__name__}"
        )
    time_partitions = partitions_def
    name = source.name
    key = webhook_events_key(name)

    @dg.asset(
        key=key,
        group_name=name,
        partitions_def=partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run() if partitions_def is not None else None,
        kinds={"polars", "parquet"},
        description=(
            f"Webhook events of `{name}` received in the partition's time window: one row per "
            f"event id (event_id, event_type, received_at UTC, payload JSON text)."
        ),
    )
    def webhook_events(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        layout = DataLayout.from_env()
        reader = LandingReader(layout, name)
        ingested_at = datetime.now(UTC)
        if time_partitions is None:
            windows: dict[str, tuple[datetime | None, datetime | None]] = {
                UNPARTITIONED_KEY: (None, None)
            }
        else:
            windows = {}
            for partition in context.partition_keys:
                w = time_partitions.time_window_for_partition_key(partition)
                windows[partition] = (w.start, w.end)
        starts = [s for s, _ in windows.values()]
        ends = [e for _, e in windows.values()]
        events = reader.events_in_window(
            None if None in starts else min(s for s in starts if s is not None),
            None if None in ends else max(e for e in ends if e is not None),
        )
        per_partition = _bucket(events, windows, time_partitions)
        column_schema = dg.TableSchema(
            columns=[dg.TableColumn(c, str(t)) for c, t in SCHEMA.items()]
        )
        per_key: dict[str, dict[str, Any]] = {}
        for partition, bucket in per_partition.items():
            frame = _frame(bucket, partition, ingested_at)
            path = layout.table_path(name, ASSET_NAME, partition)
            write_table(frame, path, {})
            context.log.info(f"{name}/{ASSET_NAME} {partition}: {frame.height} events → {path}")
            # each partition its own count: a range run must not stamp its total on every one
            per_key[partition] = {
                "dagster/row_count": frame.height,
                "dagster/column_schema": column_schema,
                "dagster/uri": path.resolve().as_uri(),
                "path": dg.MetadataValue.path(str(path)),
                "preview": _preview(frame),
            }
        if len(per_key) == 1:
            return dg.MaterializeResult(metadata=next(iter(per_key.values())))
        for partition, metadata in per_key.items():
            context.add_asset_metadata(metadata, partition_key=partition)
        return dg.MaterializeResult(metadata={"partitions": len(per_key)})

    @dg.sensor(
        name=sensor_name(name),
        target=webhook_events,
        minimum_interval_seconds=SENSOR_INTERVAL_SECONDS,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            f"Requests `{name}/{ASSET_NAME}` for every partition that received webhook events "
            f"since the last tick (cursor: the landing offset)."
        ),
    )
    def webhook_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        cursor = SensorCursor.from_json(context.cursor)
        reader = LandingReader(DataLayout.from_env(), name)
        events, offset = reader.read_from(cursor.offset, limit=MAX_EVENTS_PER_TICK)
        pending = set(cursor.pending)
        if time_partitions is None:
            ready = {UNPARTITIONED_KEY} if events else set()
        else:
            ready = set()
            first = time_partitions.start.timestamp()
            for partition in sorted(
                pending | _partitions_of(events, time_partitions, first, context)
            ):
                if time_partitions.has_partition_key(partition):
                    ready.add(partition)
                    pending.discard(partition)
                else:
                    pending.add(partition)  # not materializable yet: ask again next tick
        new_cursor = SensorCursor(offset, sorted(pending)).to_json()
        if not ready:
            return dg.SensorResult(
                skip_reason=f"no new webhook events for {name} (offset {offset.token()})",
                cursor=new_cursor,
            )
        requests = [
            dg.RunRequest(
                run_key=f"{partition}@{offset.token()}",
                partition_key=None if time_partitions is None else partition,
                asset_selection=[key],
                tags={"api_assets/landing_offset": offset.token()},
            )
            for partition in sorted(ready)
        ]
        context.log.info(f"{len(events)} new {name} webhook events → {', '.join(sorted(ready))}")
        return dg.SensorResult(run_requests=requests, cursor=new_cursor)

    return dg.Definitions(assets=[webhook_events], sensors=[webhook_sensor])


@dataclass
class SensorCursor:
    """The sensor's cursor: the landing offset read up to, and partitions that received events
    but do not exist yet."""

    offset: LandingOffset = field(default_factory=LandingOffset)
    pending: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(
            {
                "segment": self.offset.segment,
                "position": self.offset.position,
                "pending": self.pending,
            }
        )

    @classmethod
    def from_json(cls, text: str | None) -> "SensorCursor":
        if not text:
            return cls()
        data = json.loads(text)
        return cls(
            LandingOffset(str(data.get("segment", "")), int(data.get("position", 0))),
            [str(p) for p in data.get("pending", [])],
        )


def _received_at(event: LandedEvent) -> datetime:
    at = datetime.fromisoformat(event["received_at"])
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def _partitions_of(
    events: list[LandedEvent],
    partitions_def: dg.TimeWindowPartitionsDefinition,
    first_timestamp: float,
    context: dg.SensorEvaluationContext,
) -> set[str]:
    keys: set[str] = set()
    early = 0
    for event in events:
        ts = _received_at(event).timestamp()
        if ts < first_timestamp:
            early += 1  # before the first partition: no partition will ever hold it
            continue
        keys.add(partitions_def.get_partition_key_for_timestamp(ts))
    if early:
        context.log.warning(f"{early} webhook events were received before the first partition")
    return keys


def _bucket(
    events: list[LandedEvent],
    windows: dict[str, tuple[datetime | None, datetime | None]],
    partitions_def: dg.TimeWindowPartitionsDefinition | None,
) -> dict[str, list[tuple[LandedEvent, datetime]]]:
    buckets: dict[str, list[tuple[LandedEvent, datetime]]] = {p: [] for p in windows}
    for event in events:
        at = _received_at(event)
        if partitions_def is None:
            buckets[UNPARTITIONED_KEY].append((event, at))
            continue
        partition = partitions_def.get_partition_key_for_timestamp(at.timestamp())
        if partition in buckets:
            buckets[partition].append((event, at))
    return buckets


def _frame(
    bucket: list[tuple[LandedEvent, datetime]], partition: str, ingested_at: datetime
) -> pl.DataFrame:
    n = len(bucket)
    return pl.DataFrame(
        {
            "event_id": [e["event_id"] for e, _ in bucket],
            "event_type": [e["event_type"] for e, _ in bucket],
            "received_at": [at for _, at in bucket],
            "payload": [e["payload"] for e, _ in bucket],
            "_partition": [partition] * n,
            "_ingested_at": [ingested_at] * n,
        },
        schema=SCHEMA,
    )


def _preview(frame: pl.DataFrame) -> dg.MetadataValue:
    head = frame.head(PREVIEW_ROWS)
    records = [
        dg.TableRecord(
            {
                "event_id": row["event_id"],
                "event_type": row["event_type"] or "",
                "received_at": row["received_at"].isoformat(),
                "payload": _clip(row["payload"]),
            }
        )
        for row in head.iter_rows(named=True)
    ]
    schema = dg.TableSchema(
        columns=[dg.TableColumn(c) for c in ("event_id", "event_type", "received_at", "payload")]
    )
    return dg.MetadataValue.table(records=records, schema=schema)


def _clip(text: str) -> str:
    return text if len(text) <= PREVIEW_PAYLOAD_CHARS else text[: PREVIEW_PAYLOAD_CHARS - 1] + "…"
