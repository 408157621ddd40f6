"""Partitions per source: daily or hourly in UTC, today included, or none."""

from datetime import UTC, datetime, timedelta

import dagster as dg

from api_assets.config.models import SourceConfig

CURRENT = "current"


def partitions_def_for(source: SourceConfig) -> dg.TimeWindowPartitionsDefinition | None:
    """`end_offset=1` makes today's (this hour's) partition materializable."""
    spec = source.partitions
    if spec.type == "daily":
        return dg.DailyPartitionsDefinition(
            start_date=spec.start.isoformat(), timezone="UTC", end_offset=1
        )
    if spec.type == "hourly":
        return dg.HourlyPartitionsDefinition(
            start_date=f"{spec.start.isoformat()}-00:00", timezone="UTC", end_offset=1
        )
    return None


def window_of(
    partitions_def: dg.TimeWindowPartitionsDefinition | None, key: str
) -> tuple[datetime, datetime] | None:
    """The UTC time window of a partition key, end exclusive."""
    if partitions_def is None:
        return None
    tw = partitions_def.time_window_for_partition_key(key)
    return tw.start.astimezone(UTC), tw.end.astimezone(UTC)


def latest_complete_partition(source: SourceConfig, tick: datetime) -> str | None:
    """The newest partition whose window has ended by `tick` (UTC): what a schedule runs."""
    tick = tick.astimezone(UTC)
    if source.partitions.type == "daily":
        return (tick - timedelta(days=1)).strftime("%Y-%m-%d")
    if source.partitions.type == "hourly":
        return (tick - timedelta(hours=1)).strftime("%Y-%m-%d-%H:00")
    return None
