"""Parent → child fan-out: one series per parent record, concurrently under the source's limit,
pages yielded in parent order and re-indexed as one sequence."""

import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from api_assets.config.models import EndpointConfig
from api_assets.http.client import NotFound, SourceClient
from api_assets.pages import FetchStats, Page
from api_assets.pagination.series import Prepare, combine_stop, fetch


# long: the per-parent worker shares the lock and counters of the scheduling loop it runs under
def fetch_children(
    client: SourceClient,
    endpoint: EndpointConfig,
    parents: Iterable[dict[str, Any]],
    stats: FetchStats,
    *,
    params: dict[str, Any] | None = None,
    prepare: Prepare | None = None,
) -> Iterator[Page]:
    """One series per parent (placeholder values), concurrently; pages re-indexed in the order
    they are yielded. A 404 is recorded in `stats.not_found` unless the endpoint says fail.
    `prepare` as in `series.fetch`."""
    assert endpoint.parent is not None
    fail_on_404 = endpoint.parent.on_not_found == "fail"

    lock = threading.Lock()
    running = 0  # series being fetched right now

    def one(values: dict[str, Any]) -> list[Page]:
        nonlocal running
        series = FetchStats()
        with lock:
            running += 1
            stats.concurrency = max(stats.concurrency, running)
        try:
            pages = list(
                fetch(
                    client,
                    endpoint,
                    series,
                    params=params,
                    path_values=values,
                    concurrent=False,
                    prepare=prepare,
                )
            )
        except NotFound:
            if fail_on_404:
                raise
            with lock:
                stats.not_found.append(values)
            pages = []
        finally:
            with lock:
                running -= 1
        with lock:
            for name in ("requests", "retries", "throttled", "pages", "fetched", "bytes"):
                setattr(stats, name, getattr(stats, name) + getattr(series, name))
            stats.empty_pages.extend(series.empty_pages)
            stats.short_pages.extend(series.short_pages)
            stats.stop_reason = combine_stop(stats.stop_reason, series.stop_reason)
        return pages

    workers = max(1, client.source.rate_limit.max_concurrency)
    index = 0
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="api-assets-child") as pool:
        futures: list[Future[list[Page]]] = []
        it = iter(parents)
        try:
            for values in it:
                futures.append(pool.submit(one, values))
                if len(futures) >= workers * 4:
                    break
            while futures:
                pages = futures.pop(0).result()
                nxt = next(it, None)
                if nxt is not None:
                    futures.append(pool.submit(one, nxt))
                for page in pages:
                    page.index = index
                    index += 1
                    yield page
        finally:
            for f in futures:
                f.cancel()
    if stats.stop_reason is None:
        stats.stop_reason = "signal"
