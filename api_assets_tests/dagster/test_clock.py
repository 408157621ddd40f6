"""The Dagster tests at the hours they used to fail: at 00:30 UTC, and with midnight passing in
the middle of a test.

time-machine moves the clock of this whole process: `time.time`, `datetime.now`, `time.gmtime`...
in every thread, so the demo server (served from a thread of this process) and
`execute_in_process` read the faked clock as the test does. It leaves `time.monotonic` alone
(time-machine 3 stopped faking it: asyncio and uvicorn need it to run normally), and it cannot
reach subprocesses: the CLI and UI tests are not replayed here (they materialize today's
`orders` and `order_lines`, whose content does not depend on the hour, and whole past days of
`events`).

- At 00:30, the demo server started then (its data anchored at 00:30, as the module's server is
  when the suite starts at that hour) holds half an hour of today's events: less than a page.
  Today's partition of the whole source job still matches the ground truth over several pages
  (its test pins a server of its own to the last minute of today), and so do the whole days
  before it and an incremental run.
- With midnight passing after every run of a test (the clock pushed a day on), a test that names
  a partition by its day names the same partition throughout.
"""

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import time_machine

from api_assets.demo_api import DemoConfig, DemoServer

from . import test_checks, test_materialize
from .conftest import SIZES, Project, day_window, utc_day

HALF_PAST_MIDNIGHT = datetime(2026, 3, 15, 0, 30, tzinfo=UTC)
TODAY = "2026-03-15"


@pytest.fixture(autouse=True)
def clock() -> Iterator[time_machine.Traveller]:
    """00:30 UTC, ticking, from before the test's other fixtures start (autouse) to its end."""
    with time_machine.travel(HALF_PAST_MIDNIGHT, tick=True) as traveller:
        yield traveller


@pytest.fixture
def server(clock: time_machine.Traveller) -> Iterator[DemoServer]:
    """The module's demo server as a suite started at 00:30 has it: started then, anchored then."""
    with DemoServer(DemoConfig(**SIZES)) as demo:
        anchor = httpx.get(f"{demo.url}/admin/config").json()["anchor"]
        assert anchor == HALF_PAST_MIDNIGHT.timestamp()
        yield demo


def test_at_half_past_midnight_today_holds_less_than_a_page(server: DemoServer) -> None:
    """Why the ground-truth test pins a server of its own: today's window of this one is one
    page (of the 40 `events` asks for), and a source job run of it could not span several."""
    assert utc_day(0) == TODAY
    since, until = day_window(TODAY)
    assert 0 < server.truth("events", since=since, until=until)["count"] < 40


def test_todays_partition_matches_the_ground_truth(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, instance: Any
) -> None:
    assert utc_day(0) == TODAY
    test_materialize.test_a_source_job_run_matches_the_ground_truth(tmp_path, monkeypatch, instance)


def test_the_days_before_today_are_whole(project: Project, instance: Any) -> None:
    test_materialize.test_a_range_run_materializes_each_partition_with_its_own_metadata(
        project, instance
    )


def test_an_incremental_run_from_yesterday_to_today(project: Project, instance: Any) -> None:
    test_materialize.test_an_incremental_run_asks_only_for_the_delta(project, instance)


@pytest.fixture
def midnight_after_each_run(
    clock: time_machine.Traveller, monkeypatch: pytest.MonkeyPatch
) -> list[str]:
    """`Project.run`, then the clock a day on: between any two runs of a test, "today" changes,
    as it does once when midnight passes during a test. The days the runs started on."""
    run = Project.run
    days: list[str] = []

    def run_then_midnight(self: Project, *args: Any, **kwargs: Any) -> Any:
        days.append(utc_day(0))
        try:
            return run(self, *args, **kwargs)
        finally:
            clock.shift(timedelta(days=1))

    monkeypatch.setattr(Project, "run", run_then_midnight)
    return days


@pytest.mark.parametrize(
    "scenario",
    [
        test_checks.test_page_count_anomaly_warns_on_a_drop_and_errors_on_zero,
        test_checks.test_page_count_history_is_per_partition_after_a_range_run,
        test_materialize.test_an_incremental_run_asks_only_for_the_delta,
        test_materialize.test_rematerializing_a_partition_is_idempotent,
    ],
    ids=lambda f: f.__name__,
)
def test_midnight_between_two_runs(
    project: Project,
    instance: Any,
    midnight_after_each_run: list[str],
    scenario: Callable[[Project, Any], None],
) -> None:
    scenario(project, instance)
    assert len(set(midnight_after_each_run)) >= 2  # the runs did start on different days
