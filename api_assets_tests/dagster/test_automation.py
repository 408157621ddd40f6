"""Schedules, sensors and declarative automation (issue 5), evaluated the way the daemon does.

The sensor requests, and eager automation follows, the latest daily partition: today, by the
clock at the moment Dagster evaluates. So that a test sees one "today" from start to end (and not
two, across midnight), every test here runs at a fixed noon (time-machine, ticking), against a
demo server started there."""

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import time_machine

from api_assets.demo_api import DemoConfig, DemoServer

from .conftest import SIZES, SOURCES, Project, asset_keys, make_project, utc_day

ORDERS = [("shop", "orders")]
MIDDAY = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def midday() -> Iterator[None]:
    """The clock at MIDDAY, ticking, for the whole test (fixtures included: autouse fixtures
    start first), in every thread of this process."""
    with time_machine.travel(MIDDAY, tick=True):
        assert utc_day(0) == "2026-03-15"
        yield


@pytest.fixture
def server(midday: None) -> Iterator[DemoServer]:
    """A demo server of the test's own, started at MIDDAY: its data lie before the test's clock,
    as the module's server (started at the real time) would not, and its mutations are stamped
    with that clock."""
    with DemoServer(DemoConfig(**SIZES)) as demo:
        yield demo


def tick(project: Project, instance: Any, cursor: str | None = None) -> Any:
    """One evaluation of `shop_new_data_sensor` (SensorExecutionData)."""
    sensor = project.defs.resolve_sensor_def("shop_new_data_sensor")
    # resources as the daemon's code server builds them for a sensor that requires them
    resources = {k: project.defs.resources[k] for k in sensor.required_resource_keys}  # type: ignore[index]
    with dg.build_sensor_context(
        instance=instance, cursor=cursor, definitions=project.defs, resources=resources
    ) as context:
        return sensor.evaluate_tick(context)


def test_the_3am_tick_runs_yesterdays_partition(project: Project, instance: Any) -> None:
    schedule = project.defs.resolve_schedule_def("shop_schedule")
    assert schedule.cron_schedule == "0 3 * * *" and schedule.execution_timezone == "UTC"
    assert schedule.job_name == "shop_job"
    with dg.build_schedule_context(
        instance=instance,
        scheduled_execution_time=datetime(2026, 11, 28, 3, 0, tzinfo=UTC),
        repository_def=project.defs.get_repository_def(),
    ) as context:
        data = schedule.evaluate_tick(context)
    [request] = data.run_requests
    assert request.partition_key == "2026-11-27"
    assert request.run_key == "shop_schedule:2026-11-27"
    assert request.tags["dagster/partition"] == "2026-11-27"
    # a tick whose partition would precede the source's start is skipped, not an error
    with dg.build_schedule_context(
        instance=instance,
        scheduled_execution_time=datetime(2026, 1, 1, 3, 0, tzinfo=UTC),
        repository_def=project.defs.get_repository_def(),
    ) as context:
        early = schedule.evaluate_tick(context)
    assert early.run_requests == [] and "before the source's start" in early.skip_message


def test_the_sensor_requests_a_run_only_for_data_past_the_watermark(
    project: Project, instance: Any
) -> None:
    server = project.server
    today = utc_day(0)
    # nothing committed yet: every order is new data
    first = tick(project, instance)
    [request] = first.run_requests
    updated_at = server.truth("orders")["updated_at"]
    # keyed by the newest cursor value the probe saw (its one page holds the oldest changes)
    seen = json.loads(first.cursor)["orders"]
    assert seen["newest"] in updated_at.values()
    assert request.run_key == f"orders:{seen['newest']}:1"
    assert request.partition_key == today
    assert set(request.asset_selection) == set(asset_keys("shop", "orders"))

    # the run did not happen (failed, or never launched): within the hour nothing is re-asked…
    assert tick(project, instance, first.cursor).run_requests == []
    # …after it, the same news with an unmoved watermark is asked for again, under a new key
    stale = {"orders": {**seen, "asked_at": "2000-01-01T00:00:00+00:00"}}
    [retry] = tick(project, instance, json.dumps(stale)).run_requests
    assert retry.run_key == f"orders:{seen['newest']}:2"

    # the requested run commits the data and its watermark
    assert project.run(instance, ORDERS, partition=today).success
    newest = max(updated_at.values())

    # nothing past the watermark: skip, and the cursor persists
    server.clear_requests()
    idle = tick(project, instance, first.cursor)
    assert idle.run_requests == [] and idle.skip_message
    assert json.loads(idle.cursor) == {"orders": seen}
    # the probe is one small request from the watermark, not a fetch of everything
    [probe] = server.requests("/v1/orders")
    assert probe["params"]["updated_since"] == newest

    # new data: one run request, keyed by the newest cursor value
    changed = server.mutate("orders", updates=3)["updated"]
    stamp = server.truth("orders")["updated_at"][str(changed[0])]
    fresh = tick(project, instance, idle.cursor)
    [request] = fresh.run_requests
    assert request.run_key == f"orders:{stamp}:1" and request.partition_key == today
    assert request.tags["source"] == "shop"
    # the same data seen again (a repeated tick) asks for nothing more
    again = tick(project, instance, fresh.cursor)
    assert again.run_requests == []
    assert json.loads(again.cursor)["orders"]["newest"] == stamp


def test_the_sensor_run_key_is_stable_without_a_cursor(project: Project, instance: Any) -> None:
    """A tick whose cursor was lost asks again under the same run key: Dagster launches a run
    key once, so no duplicate run."""
    keys = {tick(project, instance).run_requests[0].run_key for _ in range(2)}
    assert len(keys) == 1


def test_automation_follows_the_parent_table_to_the_child(project: Project, instance: Any) -> None:
    defs, today = project.defs, utc_day(0)
    first = dg.evaluate_automation_conditions(defs=defs, instance=instance)
    assert first.total_requested == 0  # nothing materialized: nothing eager can do
    assert project.run(instance, ORDERS, partition=today).success
    result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=first.cursor)
    requested = {
        key.to_user_string(): result.get_requested_partitions(key)
        for key in defs.resolve_asset_graph().get_all_asset_keys()
        if result.get_requested_partitions(key)
    }
    # the child's raw responses follow its parent's table, for the same (latest) partition, and
    # bring the child's table and schema along in the same request; the parent's own table and
    # schema were materialized with its raw responses
    assert requested == {
        "shop/raw/order_lines": {today},
        "shop/order_lines": {today},
        "shop/schema/order_lines": {today},
    }
    # an older partition of the parent does not cascade (eager is for the latest window)
    assert project.run(instance, ORDERS, partition=utc_day(-1)).success
    later = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=result.cursor)
    assert later.total_requested == 0


def test_raw_alone_brings_its_table_and_schema_along(project: Project, instance: Any) -> None:
    defs, today = project.defs, utc_day(0)
    raw = dg.AssetKey(["shop", "raw", "products"])
    cursor = dg.evaluate_automation_conditions(defs=defs, instance=instance).cursor
    assert project.run(instance, keys=[raw], partition=today).success
    result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor)
    assert result.get_requested_partitions(dg.AssetKey(["shop", "products"])) == {today}
    assert result.get_requested_partitions(dg.AssetKey(["shop", "schema", "products"])) == {today}
    assert result.total_requested == 2


def test_an_hourly_schedule_runs_the_last_complete_hour(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: DemoServer, instance: Any
) -> None:
    sources = SOURCES.replace(
        'partitions: {type: daily, start: "2026-01-01"}\n    schedule: "0 3 * * *"',
        'partitions: {type: hourly, start: "2026-01-01"}\n    schedule: "5 * * * *"',
    )
    assert sources != SOURCES
    defs = make_project(tmp_path, monkeypatch, server, sources).defs
    schedule = defs.resolve_schedule_def("shop_schedule")
    at = datetime(2026, 11, 28, 13, 5, tzinfo=UTC)
    with dg.build_schedule_context(
        instance=instance, scheduled_execution_time=at, repository_def=defs.get_repository_def()
    ) as context:
        [request] = schedule.evaluate_tick(context).run_requests
    assert request.partition_key == "2026-11-28-12:00"
    assets_def = defs.resolve_assets_def(dg.AssetKey(["shop", "raw", "orders"]))
    assert assets_def.partitions_def is not None
    # the partition exists when the tick runs (which partitions exist depends on the clock)
    with time_machine.travel(at, tick=False):
        assert assets_def.partitions_def.has_partition_key(request.partition_key)
