"""`InFlight`, the window of requests kept in flight for a known page set: as many as hide the
wait, never more than `max_concurrency`. Driven by a clock the test sets (`StepClock` in place of
the client module's `time`): each stand-in request takes exactly the wait and the CPU time it is
given, so the window's size is what its rule says, on an idle or a loaded machine alike (with
real sleeps and spins, a busy machine stretches the wall time of CPU-bound requests into "wait"
and opens the window). The HTTP side is in test_client_http."""

import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from api_assets.pagination.inflight import InFlight

MS = 2**-10  # about a millisecond; a power of two, so that the clock's sums are exact


class StepClock:
    """`perf_counter()`, a wall clock, and `thread_time()`, a CPU clock per thread, both moved
    only by `spend`."""

    def __init__(self) -> None:
        self.wall = 0.0
        self._cpu = threading.local()

    def perf_counter(self) -> float:
        return self.wall

    def thread_time(self) -> float:
        return float(getattr(self._cpu, "seconds", 0.0))

    def spend(self, wait: float, cpu: float) -> None:
        """`wait` seconds off the CPU, then `cpu` seconds on it, in the calling thread."""
        self._cpu.seconds = self.thread_time() + cpu
        self.wall += wait + cpu


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[StepClock]:
    fake = StepClock()
    # the `time` of the module that defines InFlight (wherever it lives)
    monkeypatch.setattr(sys.modules[InFlight.__module__], "time", fake)
    yield fake


def _get(clock: StepClock, wait: float, cpu: float) -> Callable[[Any, int], Any]:
    """A stand-in for one request: `wait` seconds off the CPU, then `cpu` seconds on it."""

    def get(req: Any, index: int) -> Any:
        clock.spend(wait, cpu)
        return index, None

    return get


def test_before_any_page_the_window_is_the_configured_concurrency() -> None:
    assert InFlight(8).size == 8
    assert InFlight(0).size == InFlight(1).size == 1


def test_waiting_requests_open_the_window_to_the_limit(clock: StepClock) -> None:
    window = InFlight(6)
    for i in range(4):
        window.timed(_get(clock, 30 * MS, 1 * MS), None, i)
    # 30 ms waiting per millisecond of work: 61 would be needed, 6 are allowed
    assert window.size == 6


def test_a_short_wait_opens_the_window_by_its_ratio_to_the_work(clock: StepClock) -> None:
    window = InFlight(8)
    for i in range(4):
        window.timed(_get(clock, 5 * MS, 4 * MS), None, i)
    # 5 ms waiting per 2 ms holding the GIL (half of 4 ms of work): ceil(5 / 2) + 1
    assert window.size == 4


def test_cpu_bound_requests_close_the_window(clock: StepClock) -> None:
    window = InFlight(8)
    for i in range(4):
        window.timed(_get(clock, MS / 16, 4 * MS), None, i)
        window.consumed(1 * MS)
    # next to no wait to hide: one page being worked on and one being fetched
    assert window.size == 2


def test_the_window_follows_an_api_that_slows_down(clock: StepClock) -> None:
    window = InFlight(8)
    for i in range(4):
        window.timed(_get(clock, MS / 16, 4 * MS), None, i)
    assert window.size == 2
    # the smallest recent wait decides: while one recent request did not wait, it stays shut
    for i in range(InFlight.SAMPLES - 1):
        window.timed(_get(clock, 40 * MS, 2 * MS), None, i)
    assert window.size == 2
    # once every recent request waited, the window opens
    window.timed(_get(clock, 40 * MS, 2 * MS), None, InFlight.SAMPLES)
    assert window.size == 8


def test_peak_counts_requests_running_at_once(clock: StepClock) -> None:
    window = InFlight(4)
    # each stand-in request waits inside `timed` until all three are in it
    together = threading.Barrier(3, timeout=30)

    def get(req: Any, index: int) -> Any:
        together.wait()
        return index, None

    threads = [threading.Thread(target=window.timed, args=(get, None, i)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert window.peak == 3
    window.timed(_get(clock, 0.0, 1 * MS), None, 3)  # one alone afterwards: the peak stays
    assert window.peak == 3
