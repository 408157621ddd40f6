"""The Dagster side: `S/webhook_events` and `S_webhook_sensor`."""

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg
import polars as pl
import pytest
import time_machine

from api_assets.defs.webhooks import SensorCursor, build_webhook_defs, sensor_name
from api_assets.storage.layout import DataLayout
from api_assets.webhooks.landing import LandingWriter

from .schemes import source

DAILY = dg.DailyPartitionsDefinition(start_date="2026-01-01", timezone="UTC", end_offset=1)
KEY = dg.AssetKey(["gh", "webhook_events"])


def land(layout: DataLayout, name: str, events: list[tuple[str, datetime]]) -> None:
    with LandingWriter(layout, name) as writer:
        for event_id, at in events:
            payload = json.dumps({"id": event_id, "n": 1})
            writer.submit(event_id, "push", payload, received_at=at.isoformat()).result(timeout=30)


def day(d: str, hour: int = 12) -> datetime:
    return datetime.fromisoformat(d).replace(hour=hour, tzinfo=UTC)


def evaluate(defs: dg.Definitions, cursor: str | None, instance: dg.DagsterInstance) -> Any:
    """One tick of the sensor, as the daemon runs it (SensorExecutionData)."""
    sensor = defs.resolve_sensor_def(sensor_name("gh"))
    with dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs) as ctx:
        data = sensor.evaluate_tick(ctx)
    return data


def test_the_definitions_load_and_carry_the_contract() -> None:
    defs = build_webhook_defs(source("gh"), DAILY)
    dg.Definitions.validate_loadable(defs)
    asset = defs.resolve_assets_def(KEY)
    assert asset.group_names_by_key[KEY] == "gh"
    assert asset.partitions_def == DAILY
    sensor = defs.resolve_sensor_def("gh_webhook_sensor")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert sensor.minimum_interval_seconds == 30


def test_only_time_partitions_are_accepted() -> None:
    with pytest.raises(ValueError, match="partitioned by time"):
        build_webhook_defs(source("gh"), dg.StaticPartitionsDefinition(["a"]))


def test_the_sensor_requests_each_new_partition_once_then_skips(layout: DataLayout) -> None:
    defs = build_webhook_defs(source("gh"), DAILY)
    land(
        layout,
        "gh",
        [("a", day("2026-03-01")), ("b", day("2026-03-02")), ("c", day("2026-03-02", 23))],
    )
    with dg.instance_for_test() as instance:
        first = evaluate(defs, None, instance)
        assert sorted(r.partition_key for r in first.run_requests) == ["2026-03-01", "2026-03-02"]
        run_keys = [r.run_key for r in first.run_requests]
        assert len(set(run_keys)) == 2
        assert all(r.asset_selection == [KEY] for r in first.run_requests)
        # a tick evaluated again from the same cursor asks for the same run keys: Dagster
        # launches a run key once, so a repeated tick cannot duplicate runs
        again = evaluate(defs, None, instance)
        assert [r.run_key for r in again.run_requests] == run_keys
        # nothing new: skip, and the cursor stays
        idle = evaluate(defs, first.cursor, instance)
        assert idle.run_requests == [] and idle.skip_message
        assert (
            SensorCursor.from_json(idle.cursor).offset
            == SensorCursor.from_json(first.cursor).offset
        )
        # one more event: only its partition, under a new run key
        land(layout, "gh", [("d", day("2026-03-02", 1))])
        later = evaluate(defs, first.cursor, instance)
        assert [r.partition_key for r in later.run_requests] == ["2026-03-02"]
        assert later.run_requests[0].run_key not in run_keys


@time_machine.travel(datetime(2026, 3, 15, 23, 59, 59, tzinfo=UTC), tick=False)
def test_the_sensor_keeps_a_partition_that_does_not_exist_yet(layout: DataLayout) -> None:
    # the clock stopped (time-machine) at the last second of a day: which partitions exist
    # depends on it, and a day read twice across midnight would be two days
    today = datetime.now(UTC)
    ends_yesterday = dg.DailyPartitionsDefinition(start_date="2026-01-01", timezone="UTC")
    land(layout, "gh", [("now", today), ("early", datetime(2025, 6, 1, tzinfo=UTC))])
    with dg.instance_for_test() as instance:
        waiting = evaluate(build_webhook_defs(source("gh"), ends_yesterday), None, instance)
        assert waiting.run_requests == []
        assert SensorCursor.from_json(waiting.cursor).pending == [today.strftime("%Y-%m-%d")]
        # once the partition exists (here: a definition that ends today), it is requested
        ready = evaluate(build_webhook_defs(source("gh"), DAILY), waiting.cursor, instance)
        assert [r.partition_key for r in ready.run_requests] == [today.strftime("%Y-%m-%d")]
        assert SensorCursor.from_json(ready.cursor).pending == []


def test_the_asset_writes_one_row_per_event_of_its_window(layout: DataLayout) -> None:
    land(
        layout,
        "gh",
        [
            ("a", day("2026-03-01", 0)),
            ("b", day("2026-03-01", 23)),
            ("x", day("2026-03-02", 0)),
            ("z", day("2026-02-28", 23)),
        ],
    )
    defs = build_webhook_defs(source("gh"), DAILY)
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [defs.resolve_assets_def(KEY)], instance=instance, partition_key="2026-03-01"
        )
    assert result.success
    path = layout.table_path("gh", "webhook_events", "2026-03-01")
    frame = pl.read_parquet(path)
    assert frame["event_id"].to_list() == ["a", "b"]
    assert frame.schema["received_at"] == pl.Datetime("us", "UTC")
    assert frame.schema["_ingested_at"] == pl.Datetime("us", "UTC")
    assert frame["_partition"].unique().to_list() == ["2026-03-01"]
    assert json.loads(frame["payload"][0]) == {"id": "a", "n": 1}
    assert frame["event_type"].to_list() == ["push", "push"]
    [mat] = result.asset_materializations_for_node("gh__webhook_events")
    assert mat.metadata["dagster/row_count"].value == 2
    preview: Any = mat.metadata["preview"].value
    assert [r.data["event_id"] for r in preview.records] == ["a", "b"]
    assert not list(path.parent.glob(".*"))  # no temp file left behind


def test_rematerializing_replaces_the_partition(layout: DataLayout) -> None:
    defs = build_webhook_defs(source("gh"), DAILY)
    land(layout, "gh", [("a", day("2026-03-01"))])
    with dg.instance_for_test() as instance:
        dg.materialize(
            [defs.resolve_assets_def(KEY)], instance=instance, partition_key="2026-03-01"
        )
        land(layout, "gh", [("b", day("2026-03-01")), ("a", day("2026-03-01"))])
        dg.materialize(
            [defs.resolve_assets_def(KEY)], instance=instance, partition_key="2026-03-01"
        )
    frame = pl.read_parquet(layout.table_path("gh", "webhook_events", "2026-03-01"))
    assert sorted(frame["event_id"].to_list()) == ["a", "b"]


def test_a_range_run_writes_each_partition_on_its_own(layout: DataLayout) -> None:
    defs = build_webhook_defs(source("gh"), DAILY)
    land(
        layout, "gh", [("a", day("2026-03-01")), ("b", day("2026-03-03")), ("c", day("2026-03-03"))]
    )
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [defs.resolve_assets_def(KEY)],
            instance=instance,
            tags={
                "dagster/asset_partition_range_start": "2026-03-01",
                "dagster/asset_partition_range_end": "2026-03-03",
            },
        )
    assert result.success
    counts = {
        p: pl.read_parquet(layout.table_path("gh", "webhook_events", p)).height
        for p in ["2026-03-01", "2026-03-02", "2026-03-03"]
    }
    assert counts == {"2026-03-01": 1, "2026-03-02": 0, "2026-03-03": 2}
    # each partition's materialization carries its own count, not the range's total
    recorded = {
        mat.partition: mat.metadata["dagster/row_count"].value
        for mat in result.asset_materializations_for_node("gh__webhook_events")
    }
    assert recorded == counts
    [mat] = [
        m
        for m in result.asset_materializations_for_node("gh__webhook_events")
        if m.partition == "2026-03-03"
    ]
    uri = mat.metadata["dagster/uri"].value
    assert uri == layout.table_path("gh", "webhook_events", "2026-03-03").resolve().as_uri()
    preview: Any = mat.metadata["preview"].value
    assert sorted(r.data["event_id"] for r in preview.records) == ["b", "c"]


def test_hourly_partitions(layout: DataLayout) -> None:
    hourly = dg.HourlyPartitionsDefinition(start_date="2026-01-01-00:00", timezone="UTC")
    defs = build_webhook_defs(source("gh"), hourly)
    land(layout, "gh", [("a", day("2026-03-01", 5)), ("b", day("2026-03-01", 6))])
    with dg.instance_for_test() as instance:
        tick = evaluate(defs, None, instance)
        assert sorted(r.partition_key for r in tick.run_requests) == [
            "2026-03-01-05:00",
            "2026-03-01-06:00",
        ]
        dg.materialize(
            [defs.resolve_assets_def(KEY)], instance=instance, partition_key="2026-03-01-05:00"
        )
    frame = pl.read_parquet(layout.table_path("gh", "webhook_events", "2026-03-01-05:00"))
    assert frame["event_id"].to_list() == ["a"]


def test_unpartitioned_sources_hold_every_event_in_current(layout: DataLayout) -> None:
    defs = build_webhook_defs(source("gh"), None)
    land(layout, "gh", [("a", day("2026-03-01")), ("b", day("2020-01-01") + timedelta(days=1))])
    with dg.instance_for_test() as instance:
        tick = evaluate(defs, None, instance)
        assert [r.partition_key for r in tick.run_requests] == [None]
        assert tick.run_requests[0].run_key.startswith("current@")
        assert dg.materialize([defs.resolve_assets_def(KEY)], instance=instance).success
    frame = pl.read_parquet(layout.table_path("gh", "webhook_events", "current"))
    assert sorted(frame["event_id"].to_list()) == ["a", "b"]
    assert frame["_partition"].unique().to_list() == ["current"]
