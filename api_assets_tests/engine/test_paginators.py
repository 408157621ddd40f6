"""The paginators' stop rules, driven by simulated APIs (hypothesis) — no HTTP needed here."""

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from api_assets.config import models as cfg
from api_assets.errors import PaginationError
from api_assets.pagination.paginators import PageRequest, Response, make_paginator
from api_assets.records import lookup


def _walk(paginator: Any, serve: Any, limit: int = 10_000) -> list[dict[str, Any]]:
    """Drive a paginator sequentially against `serve(request) -> Response`."""
    out: list[dict[str, Any]] = []
    req: PageRequest | None = paginator.first()
    n = 0
    while req is not None:
        n += 1
        assert n < limit, "paginator never stopped"
        resp = serve(req)
        out.extend(resp.records)
        req = paginator.next(resp)
    return out


def _offset_api(total: int, *, with_total: bool):
    rows = [{"id": i} for i in range(total)]

    def serve(req: PageRequest) -> Response:
        off, lim = int(req.params["offset"]), int(req.params["limit"])
        page = rows[off : off + lim]
        body: dict[str, Any] = {"data": page}
        if with_total:
            body["total"] = total
        return Response(body=body, headers={}, url="http://x/v1", records=page)

    return serve


@settings(max_examples=60, deadline=None)
@given(total=st.integers(0, 450), limit=st.integers(1, 60), with_total=st.booleans())
def test_offset_fetches_everything_and_stops(total: int, limit: int, with_total: bool) -> None:
    p = make_paginator(
        cfg.OffsetPaginator(type="offset", limit=limit, total_path="total" if with_total else None)
    )
    got = _walk(p, _offset_api(total, with_total=with_total))
    assert [r["id"] for r in got] == list(range(total))
    assert p.stop_reason in ({"total_reached", "empty_page"} if with_total else {"empty_page"})


@settings(max_examples=40, deadline=None)
@given(total=st.integers(1, 300), limit=st.integers(2, 50))
def test_offset_short_page_alone_never_stops(total: int, limit: int) -> None:
    # An API that serves one record less than asked on every page (a server-side cap).
    rows = [{"id": i} for i in range(total)]

    def serve(req: PageRequest) -> Response:
        off, lim = int(req.params["offset"]), int(req.params["limit"])
        page = rows[off : off + lim - 1] if lim > 1 else rows[off : off + lim]
        return Response(body={"data": page}, headers={}, url="http://x", records=page)

    p = make_paginator(cfg.OffsetPaginator(type="offset", limit=limit))
    got = _walk(p, serve)
    # records are skipped by this API (it under-fills), but the paginator kept going to the end
    assert p.stop_reason == "empty_page"
    assert got[0]["id"] == 0 and got[-1]["id"] >= total - limit


@settings(max_examples=40, deadline=None)
@given(total=st.integers(0, 400), size=st.integers(1, 60))
def test_page_number_plan_covers_every_page(total: int, size: int) -> None:
    rows = [{"id": i} for i in range(total)]
    pages = max(1, -(-total // size))

    def serve(req: PageRequest) -> Response:
        n = int(req.params["page"])
        page = rows[(n - 1) * size : n * size]
        return Response(
            body={"results": page, "total_pages": pages}, headers={}, url="http://x", records=page
        )

    p = make_paginator(
        cfg.PageNumberPaginator(type="page_number", size=size, total_pages_path="total_pages")
    )
    first = serve(p.first())
    got = list(first.records)
    for req in p.plan(first) or []:
        got.extend(serve(req).records)
    if not first.records:
        assert p.next(first) is None
    assert [r["id"] for r in got] == list(range(total))


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 30), loop_to=st.integers(0, 29))
def test_cursor_cycle_is_detected(n: int, loop_to: int) -> None:
    loop_to = min(loop_to, n - 1)

    # cursors c0..c{n-1}; the last page points back to an earlier cursor: A→B→…→A
    def serve(req: PageRequest) -> Response:
        i = int(str(req.params.get("cursor", "c-1"))[1:]) + 1
        nxt = f"c{i}" if i < n - 1 else f"c{loop_to}"
        return Response(
            body={"data": [{"id": i}], "next_cursor": nxt},
            headers={},
            url="http://x",
            records=[{"id": i}],
        )

    p = make_paginator(cfg.CursorPaginator(type="cursor", cursor_path="next_cursor"))
    with pytest.raises(PaginationError, match="loop"):
        _walk(p, serve)


def test_cursor_stops_on_absent_empty_or_null_cursor() -> None:
    for last in (None, "", False):
        p = make_paginator(cfg.CursorPaginator(type="cursor", cursor_path="meta.next"))
        pages = [({"meta": {"next": "a"}}, [{"id": 1}]), ({"meta": {"next": last}}, [{"id": 2}])]
        it = iter(pages)

        def serve(req: PageRequest, it: Any = it) -> Response:
            body, recs = next(it)
            return Response(body=body, headers={}, url="http://x", records=recs)

        assert [r["id"] for r in _walk(p, serve)] == [1, 2]
        assert p.stop_reason == "signal"


def test_keyset_that_does_not_advance_fails() -> None:
    p = make_paginator(cfg.KeysetPaginator(type="keyset", param="since_id", field="id"))
    stuck = Response(body=[], headers={}, url="http://x", records=[{"id": 5}])
    assert p.next(stuck) is not None
    with pytest.raises(PaginationError, match="did not advance"):
        p.next(Response(body=[], headers={}, url="http://x", records=[{"id": 3}]))


def test_inclusive_keyset_ends_on_a_page_of_only_the_bound() -> None:
    p = make_paginator(cfg.KeysetPaginator(type="keyset", field="id", inclusive=True))
    assert (
        p.next(Response(body=[], headers={}, url="u", records=[{"id": 1}, {"id": 2}])) is not None
    )
    assert p.next(Response(body=[], headers={}, url="u", records=[{"id": 2}])) is None
    assert p.stop_reason == "empty_page"


def test_link_header_relative_url_and_loop() -> None:
    p = make_paginator(cfg.LinkHeaderPaginator(type="link_header"))
    r = Response(
        body=[],
        headers={},
        url="http://h/v1/e?page=1",
        records=[{"id": 1}],
        links={"next": "/v1/e?page=2"},
    )
    req = p.next(r)
    assert req is not None and req.url == "http://h/v1/e?page=2"
    with pytest.raises(PaginationError):
        p.next(r)


def test_lookup_paths() -> None:
    body = {"a": {"b": [{"c": 1}, {"c": 2}]}}
    assert lookup(body, "a.b.1.c") == 2
    assert lookup(body, "a.x") is None
    assert lookup(body, "a.b.9") is None
    assert lookup(body, None) is body


def test_total_shrank_uses_happens_before_not_arrival_order() -> None:
    from api_assets.pagination.series import total_shrank

    # concurrent pages: overlapping requests may report totals out of order (growth only)
    overlapping = [(0.0, 1.0, 503), (0.1, 0.9, 500), (0.2, 1.1, 506)]
    assert total_shrank(overlapping) is None
    # the later request was sent after the earlier one was answered, with a smaller total
    sequential = [(0.0, 1.0, 500), (1.5, 2.0, 499)]
    assert total_shrank(sequential) == (500, 499)
    assert total_shrank([]) is None
