"""`InFlight`, the window of requests kept in flight for a known page set: as many as hide the
wait, never more than `max_concurrency`. Driven by real sleeps and real CPU work (a fast local
server cannot be made slow and fast on cue in one run; the HTTP side is in test_client_http)."""

import threading
import time
from collections.abc import Callable
from typing import Any

from api_assets.client import InFlight


def _spin(seconds: float) -> None:
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def _get(wait: float, cpu: float) -> Callable[[Any, int], Any]:
    """A stand-in for one request: `wait` seconds off the CPU, then `cpu` seconds on it."""

    def get(req: Any, index: int) -> Any:
        time.sleep(wait)
        _spin(cpu)
        return index, None

    return get


def test_before_any_page_the_window_is_the_configured_concurrency() -> None:
    assert InFlight(8).size == 8
    assert InFlight(0).size == InFlight(1).size == 1


def test_waiting_requests_open_the_window_to_the_limit() -> None:
    window = InFlight(6)
    for i in range(4):
        window.timed(_get(0.03, 0.001), None, i)
    # 30 ms waiting per millisecond of work: 31 would be needed, 6 are allowed
    assert window.size == 6


def test_cpu_bound_requests_close_the_window() -> None:
    window = InFlight(8)
    for i in range(4):
        window.timed(_get(0.0, 0.004), None, i)
        window.consumed(0.001)
    # no wait to hide: one page being worked on and one being fetched
    assert window.size <= 2


def test_the_window_follows_an_api_that_slows_down() -> None:
    window = InFlight(8)
    for i in range(4):
        window.timed(_get(0.0, 0.004), None, i)
    assert window.size <= 2
    # the smallest recent wait decides: once every recent request waited, the window opens
    for i in range(InFlight.SAMPLES):
        window.timed(_get(0.04, 0.002), None, i)
    assert window.size == 8


def test_peak_counts_requests_running_at_once() -> None:
    window = InFlight(4)
    threads = [
        threading.Thread(target=window.timed, args=(_get(0.05, 0.0), None, i)) for i in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert window.peak == 3
