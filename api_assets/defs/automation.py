"""Schedules, sensors and declarative automation per source.

- `schedule:` → a schedule that materializes the source's latest complete partition (the tick,
  in UTC, decides which), plus a freshness policy matching it.
- an incremental endpoint → a sensor that asks the API, with one small request under the
  source's rate limit, whether records past the watermark exist, and requests a run of today's
  partition when they do (`run_key` = endpoint + newest cursor value, so never twice).
- `S/E` and `S/schema/E` follow `S/raw/E` with eager + blocking checks passed; one automation
  sensor, running by default, evaluates them.
"""

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg

from api_assets.config.models import SourceConfig
from api_assets.defs.assets import raw_key, resource_key, schema_key, table_key
from api_assets.defs.partitions import latest_complete_partition, partitions_def_for
from api_assets.defs.resources import ApiSource, DataStore
from api_assets.pipeline.ingest import probe_new_data
from api_assets.pipeline.watermark import latest_watermark


def job_name(source: str) -> str:
    return f"{source}_job"


def source_job(source: SourceConfig) -> Any:
    return dg.define_asset_job(
        job_name(source.name),
        selection=dg.AssetSelection.groups(source.name),
        description=f"Every asset of source `{source.name}`.",
        tags={"source": source.name},
    )


def source_schedule(source: SourceConfig) -> dg.ScheduleDefinition | None:
    if not source.schedule:
        return None
    name = f"{source.name}_schedule"

    @dg.schedule(
        name=name,
        cron_schedule=source.schedule,
        execution_timezone="UTC",
        job_name=job_name(source.name),
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=f"Materializes `{source.name}`'s latest complete partition ({source.schedule} UTC).",
    )
    def _schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
        tick = context.scheduled_execution_time or datetime.now(UTC)
        partition = latest_complete_partition(source, tick)
        run_key = f"{name}:{partition or tick.isoformat()}"
        if partition is None:
            return dg.RunRequest(run_key=run_key)
        if partition < source.partitions.start.isoformat():
            return dg.SkipReason(
                f"partition {partition} is before the source's start {source.partitions.start}"
            )
        return dg.RunRequest(run_key=run_key, partition_key=partition)

    return _schedule


RETRY_AFTER = timedelta(hours=1)  # re-ask for the same news when the watermark has not moved


def incremental_sensor(source: SourceConfig) -> dg.SensorDefinition | None:
    endpoints = [e for e in source.endpoints if e.incremental is not None and e.parent is None]
    if not endpoints:
        return None
    name = f"{source.name}_new_data_sensor"

    @dg.sensor(
        name=name,
        minimum_interval_seconds=300,
        default_status=dg.DefaultSensorStatus.STOPPED,
        asset_selection=dg.AssetSelection.assets(
            *[raw_key(source.name, e.name) for e in endpoints]
        ).downstream(),
        required_resource_keys={resource_key(source.name), "data_store"},
        description=(
            f"Asks `{source.name}` for records past each incremental endpoint's watermark "
            f"(one small request each) and runs today's partition when there are."
        ),
    )
    def _sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        api: ApiSource = getattr(context.resources, resource_key(source.name))
        store: DataStore = context.resources.data_store
        layout = store.layout()
        seen = json.loads(context.cursor) if context.cursor else {}
        config = api.config()
        client = api.client()
        requests = []
        partitions_def = partitions_def_for(source)
        # The newest partition (today, or this hour): `end_offset=1` makes it materializable.
        partition = partitions_def.get_last_partition_key() if partitions_def else None
        for ep in config.endpoints:
            if ep.incremental is None or ep.parent is not None:
                continue
            watermark = latest_watermark(layout, config, ep)
            newest = probe_new_data(client, ep, watermark)
            if newest is None:
                continue
            last = seen.get(ep.name)
            last = last if isinstance(last, dict) else {"newest": last}
            now = datetime.now(UTC)
            if str(newest) == last.get("newest"):
                # Same news as last time. If the watermark has not moved since, the run we asked
                # for failed or never ran: ask again, at most once per RETRY_AFTER.
                asked = last.get("asked_at")
                stale = str(watermark) == last.get("watermark") and (
                    asked is None or now - datetime.fromisoformat(asked) >= RETRY_AFTER
                )
                if not stale:
                    continue
            attempt = int(last.get("attempt", 0)) + 1 if str(newest) == last.get("newest") else 1
            seen[ep.name] = {
                "newest": str(newest),
                "watermark": str(watermark),
                "asked_at": now.isoformat(),
                "attempt": attempt,
            }
            requests.append(
                dg.RunRequest(
                    run_key=f"{ep.name}:{newest}:{attempt}",
                    partition_key=partition,
                    # the endpoint's three assets: its table and schema land in the same run
                    asset_selection=[
                        raw_key(source.name, ep.name),
                        table_key(source.name, ep.name),
                        schema_key(source.name, ep.name),
                    ],
                    tags={"source": source.name, "reason": f"new data past {watermark}"},
                )
            )
        if not requests:
            return dg.SensorResult(
                skip_reason="no records past the watermarks", cursor=json.dumps(seen)
            )
        return dg.SensorResult(run_requests=requests, cursor=json.dumps(seen))

    return _sensor


def automation_sensor(sources: list[SourceConfig]) -> dg.AutomationConditionSensorDefinition:
    return dg.AutomationConditionSensorDefinition(
        "api_assets_automation_sensor",
        target=dg.AssetSelection.groups(*[s.name for s in sources])
        if sources
        else dg.AssetSelection.all(),
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=60,
        description="Evaluates the tables' and schemas' eager + blocking-checks conditions.",
    )
