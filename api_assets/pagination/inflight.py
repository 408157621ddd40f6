"""How many of a known set of page requests to keep in flight, and fetching them in order.

When the first page makes the page set known (a total or a page count), the rest of the series
is fetched concurrently: `InFlight` sizes the window from what the pages so far cost, and
`fetch_planned` keeps that many requests running while it yields pages in order.
"""

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

from api_assets.pages import Page, PageRequest, Response


class InFlight:
    """How many of a known set of requests to keep in flight: enough to hide the wait for the
    network, and no more, up to `max_concurrency`.

    Each request's wall time splits into CPU time (`time.thread_time`: building, parsing,
    preparing the page) and the rest: waiting for the server, the network, the rate limiter and
    the GIL. To keep the pipeline busy, `ceil(wait / serial) + 1` requests must be in flight
    (Little's law), where `serial` is the part of a page's CPU time (fetching and consuming
    thread) that holds the GIL, taken as half: compression and Polars' parsing release it. The
    wait is the smallest of the last `SAMPLES` requests: waits for the GIL grow with the number of
    threads, so the minimum (some request always gets through without queueing) stays close to
    what the server and the network take, where a mean would talk itself into more threads.

    On a fast local API (a fraction of a millisecond per answer) that is 2, where a fixed 4 or 8
    threads only fought over the GIL and the two cores (10 % slower at 100k records, measured in
    `benchmarks/`); at 20 ms per answer it is `max_concurrency`. Recomputed after every page, so
    an API that slows down gets more requests in flight within a few pages."""

    SAMPLES = 16

    def __init__(self, limit: int):
        self.limit = max(1, limit)
        self.size = self.limit  # until a page has been measured: the configured concurrency
        self.peak = 1
        self._waits: deque[float] = deque(maxlen=self.SAMPLES)
        self._cpu: deque[float] = deque(maxlen=self.SAMPLES)
        self._consumer: deque[float] = deque(maxlen=self.SAMPLES)
        self._lock = threading.Lock()
        self._running = 0

    def timed(
        self,
        get: Callable[[PageRequest, int], tuple[Page, Response]],
        req: PageRequest,
        index: int,
    ) -> tuple[Page, Response]:
        """`get(req, index)`, its wall and CPU time recorded (in the thread that runs it)."""
        with self._lock:
            self._running += 1
            self.peak = max(self.peak, self._running)
        wall, cpu = time.perf_counter(), time.thread_time()
        try:
            return get(req, index)
        finally:
            cpu = time.thread_time() - cpu
            wall = time.perf_counter() - wall
            with self._lock:
                self._running -= 1
                self._waits.append(max(wall - cpu, 0.0))
                self._cpu.append(cpu)
                self._resize()

    def hand_over(self, page: Page) -> Iterator[Page]:
        """Yield `page` to the consumer (`yield from`) and record the CPU time the consuming
        thread spent on it before asking for the next."""
        started = time.thread_time()
        yield page
        self.consumed(time.thread_time() - started)

    def consumed(self, cpu: float) -> None:
        """The consuming thread's CPU time for one page (archive, table, schema)."""
        with self._lock:
            self._consumer.append(cpu)
            self._resize()

    def _resize(self) -> None:
        if self.limit == 1 or not self._waits:
            return
        cpu = sum(self._cpu) / len(self._cpu)
        if self._consumer:
            cpu += sum(self._consumer) / len(self._consumer)
        wait = min(self._waits)
        # Half of a page's CPU time (gzip, sha256, Polars' parsing) runs beside other pages'
        # work with the GIL released: what the pages queue for is the other half.
        serial = cpu / 2
        want = math.ceil(wait / serial) + 1 if serial > 0 else self.limit
        self.size = max(1, min(self.limit, want))


def fetch_planned(
    planned: list[PageRequest],
    get: Callable[[PageRequest, int], tuple[Page, Response]],
    first_index: int,
    window: InFlight,
) -> Iterator[Page]:
    """Fetch known requests concurrently and yield pages in order; `window` says how many to
    keep in flight (at most `max_concurrency`) from what the pages so far cost."""
    workers = window.limit
    if workers == 1 or len(planned) == 1:
        for i, req in enumerate(planned):
            yield from window.hand_over(window.timed(get, req, first_index + i)[0])
        return
    # Pages come out in order, so a slow page holds up those behind it: the window counts
    # requests still running, and as many again may wait, fetched, for the consumer (at the
    # full window that is `2 * max_concurrency` pages, the fixed lookahead this replaced).
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="api-assets-page") as pool:
        futures: deque[Future[tuple[Page, Response]]] = deque()
        it = iter(enumerate(planned))

        def top_up() -> None:
            running = sum(1 for f in futures if not f.done())
            while running < window.size and len(futures) < 2 * window.size:
                nxt = next(it, None)
                if nxt is None:
                    return
                futures.append(pool.submit(window.timed, get, nxt[1], first_index + nxt[0]))
                running += 1

        try:
            top_up()
            while futures:
                head = futures[0]
                while not head.done():
                    wait([f for f in futures if not f.done()], return_when=FIRST_COMPLETED)
                    top_up()
                futures.popleft()
                page = head.result()[0]
                top_up()
                yield from window.hand_over(page)
        finally:
            for f in futures:
                f.cancel()
