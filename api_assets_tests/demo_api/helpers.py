"""Page walkers over real HTTP: each follows one endpoint's own next-page signal to the end."""

from typing import Any

import httpx

MAX_PAGES = 10_000


def walk_offset(
    client: httpx.Client, path: str, limit: int = 100, **params: Any
) -> list[dict[str, Any]]:
    """`/v1/products` style: `{"data", "total"}`; `/v1/customers` style: `X-Total-Count`."""
    records: list[dict[str, Any]] = []
    offset = 0
    for _ in range(MAX_PAGES):
        r = client.get(path, params={**params, "offset": offset, "limit": limit})
        r.raise_for_status()
        body = r.json()
        total = body["total"] if "total" in body else int(r.headers["X-Total-Count"])
        records += body["data"]
        offset += limit
        if offset >= total:
            return records
    raise AssertionError("too many pages")


def walk_pages(client: httpx.Client, per_page: int = 50) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    page = 1
    for _ in range(MAX_PAGES):
        body = client.get("/v1/customers/pages", params={"page": page, "per_page": per_page}).json()
        records += body["results"]
        if page >= body["total_pages"]:
            return records
        page += 1
    raise AssertionError("too many pages")


def walk_cursor(client: httpx.Client, limit: int = 100, **params: Any) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    cursor = None
    for _ in range(MAX_PAGES):
        r = client.get(
            "/v1/orders",
            params={**params, "limit": limit, **({"cursor": cursor} if cursor else {})},
        )
        r.raise_for_status()
        body = r.json()
        records += body["data"]
        cursor = body["next_cursor"]
        if cursor is None:
            return records
    raise AssertionError("too many pages")


def walk_cursor_header(
    client: httpx.Client, limit: int = 100, **params: Any
) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    cursor: str | None = None
    for _ in range(MAX_PAGES):
        extra: dict[str, str] = {"cursor": cursor} if cursor else {}
        r = client.get("/v1/orders/stream", params={**params, "limit": limit, **extra})
        r.raise_for_status()
        records += r.json()
        cursor = r.headers.get("X-Next-Cursor")
        if cursor is None:
            return records
    raise AssertionError("too many pages")


def walk_next_url(client: httpx.Client, limit: int = 100) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    url: str | None = f"/v1/products/feed?limit={limit}"
    for _ in range(MAX_PAGES):
        assert url is not None
        body = client.get(url).json()
        records += body["data"]
        url = body["next"]
        if url is None:
            return records
    raise AssertionError("too many pages")


def walk_link(client: httpx.Client, per_page: int = 100, **params: Any) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    r = client.get("/v1/events", params={**params, "per_page": per_page})
    for _ in range(MAX_PAGES):
        r.raise_for_status()
        records += r.json()
        nxt = r.links.get("next")
        if nxt is None:
            return records
        r = client.get(nxt["url"])
    raise AssertionError("too many pages")


def walk_keyset(client: httpx.Client, limit: int = 100) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    since_id = 0
    for _ in range(MAX_PAGES):
        page = client.get(
            "/v1/customers/keyset", params={"since_id": since_id, "limit": limit}
        ).json()
        records += page
        if len(page) < limit:
            return records
        since_id = page[-1]["id"]
    raise AssertionError("too many pages")


def ids(records: list[dict[str, Any]]) -> list[Any]:
    return [r["id"] for r in records]


class ManualClock:
    """A stopped clock that the test moves by hand (`clock.now += seconds`), to stand in for the
    `time` module of a demo API module running in this process (`monkeypatch.setattr(module,
    "time", clock)`): its `monotonic()` is `now`, and its `time()` moves with it, `wall` at
    `start`. What the server does then depends on the clock the test sets, not on how long
    requests take on a loaded machine."""

    def __init__(self, start: float = 1_000.0, wall: float = 1_800_000_000.0):
        self.now = start
        self._offset = wall - start

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return self.now + self._offset
