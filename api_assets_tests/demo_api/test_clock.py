"""The demo API's clock-sensitive test at 00:30 UTC, with the server started then and with one
started before midnight (a session that began on the day before).

time-machine moves `time.time`, `datetime.now`... in every thread of this process, the demo
server's included (it serves from a thread here); `time.monotonic`, which asyncio and uvicorn
run on, is left alone."""

from datetime import UTC, datetime

import httpx
import pytest
import time_machine

from api_assets.demo_api import DEMO_CREDENTIALS, DemoConfig, DemoServer

from . import test_pagination

HALF_PAST_MIDNIGHT = datetime(2026, 3, 15, 0, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    "started", [HALF_PAST_MIDNIGHT, datetime(2026, 3, 14, 23, 59, 30, tzinfo=UTC)]
)
def test_todays_events_at_half_past_midnight(started: datetime) -> None:
    headers = {"X-API-Key": DEMO_CREDENTIALS["api_keys"][0]}
    with (
        time_machine.travel(started, tick=True) as clock,
        DemoServer(DemoConfig.small()) as server,
    ):
        clock.move_to(HALF_PAST_MIDNIGHT)
        with httpx.Client(base_url=server.url, headers=headers, timeout=30.0) as client:
            test_pagination.test_events_today_has_events(server, client)
