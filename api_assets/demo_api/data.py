"""The demo shop's data: generated from a seed, held in memory, indexed for every page style.

`Shop(config)` generates products, customers, orders (with their lines), events, customer
addresses and categories with one `random.Random(seed)`: the same seed and the same clock anchor
(`DemoConfig.now`) give the same records, byte for byte. Every record is serialized once with
orjson when it is created or changed, so that a page is a join of ready-made bytes: cursor pages
walk records in `updated_at` order, scattered in memory, and serializing those dicts per
request costs several times more than joining their bytes.

Timestamps are whole seconds, written `YYYY-MM-DDTHH:MM:SSZ`. Every seeded timestamp is at or
before the anchor; a mutation stamps the wall clock (never earlier than the last stamp), so an
incremental client that asks for `updated_since >= watermark` always sees what changed.

Indexes, kept up to date by `mutate`:
- `Collection.order`: live ids sorted (offset, page-number, keyset and next-URL pages).
- `orders.stream`: `(updated_ts, id)` of live orders and tombstones, sorted (cursor pages).
- `events.occurred`: `occurred_at` parallel to `events.order` (ids are given in time order).
"""

from __future__ import annotations

import gc
import random
import time
from bisect import bisect_left, bisect_right, insort
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from api_assets.demo_api import DemoConfig

DAY = 86_400

COLLECTIONS = ("products", "customers", "orders", "events")
CHILD_COLLECTIONS = ("order_lines", "customer_addresses", "categories")


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


_FIRST = _words(
    "Ada Alan Amara Ana Ben Bruno Chen Chloe Dara David Elena Emil Farah Felix Grace Hana Ivan "
    "Jade Jonas Kai Kenji Lara Leo Lina Maya Mateo Nia Noah Omar Priya Rosa Sam Sara Tariq Uma "
    "Vera Wei Yara Zoe"
)
_LAST = _words(
    "Adams Baker Berg Costa Diaz Dubois Evans Fischer Garcia Hansen Ito Jensen Kim Kowalski "
    "Larsen Lopez Martin Meyer Moreau Nakamura Nguyen Novak Okafor Patel Perez Rossi Sato Schmidt "
    "Silva Smith Tanaka Weber Wong Yilmaz Young Zhang"
)
_PLACES: tuple[tuple[str, str], ...] = tuple(
    (city, country)
    for city, _, country in (
        place.partition(":")
        for place in _words(
            "Amsterdam:NL Austin:US Barcelona:ES Berlin:DE Boston:US Dublin:IE Hamburg:DE Lagos:NG "
            "Lisbon:PT London:GB Lyon:FR Madrid:ES Melbourne:AU Milan:IT Montreal:CA Mumbai:IN "
            "Nairobi:KE Osaka:JP Paris:FR Prague:CZ Seattle:US Seoul:KR Singapore:SG Stockholm:SE "
            "Sydney:AU Tokyo:JP Toronto:CA Vienna:AT Warsaw:PL Zurich:CH"
        )
    )
)
_STREETS = _words("Main Oak Pine Maple Cedar Elm Lake Hill Park River Station Market Church Mill")
_ADJECTIVES = _words(
    "Classic Compact Deluxe Eco Essential Everyday Fresh Grand Light Modern Nordic Organic "
    "Premium Pro Rapid Rustic Smart Soft Sturdy Ultra Urban Vintage Wild Zen"
)
_NOUNS = _words(
    "Backpack Blender Bottle Candle Chair Desk Headphones Jacket Kettle Lamp Mug Notebook Pan "
    "Pillow Plant Rug Scarf Sneakers Speaker Teapot Tent Towel Umbrella Watch"
)
_TAGS = _words(
    "new sale eco bestseller gift limited outdoor kitchen office travel home sport kids premium "
    "handmade"
)
_CATEGORIES = (
    (1, "home", "Home", None),
    (2, "kitchen", "Kitchen", 1),
    (3, "living", "Living room", 1),
    (4, "outdoor", "Outdoor", None),
    (5, "camping", "Camping", 4),
    (6, "fashion", "Fashion", None),
    (7, "shoes", "Shoes", 6),
    (8, "accessories", "Accessories", 6),
    (9, "electronics", "Electronics", None),
    (10, "audio", "Audio", 9),
    (11, "office", "Office", None),
    (12, "stationery", "Stationery", 11),
)
_ORDER_STATUSES = ("pending", "paid", "shipped", "delivered", "cancelled", "refunded")
_EVENT_TYPES = (
    "page_view",
    "search",
    "add_to_cart",
    "checkout_started",
    "order_placed",
    "signup",
    "login",
)
_CURRENCIES = ("USD", "EUR", "GBP")


class Draw:
    """Fast seeded draws: everything comes from `random.Random.random()`, which is C-fast,
    instead of `randint`/`choice`/`choices`, whose Python layers dominate generation time."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.r = rng.random

    def int(self, lo: int, hi: int) -> int:
        """Uniform in [lo, hi]."""
        return lo + int(self.r() * (hi - lo + 1))

    def pick(self, seq: Any) -> Any:
        return seq[int(self.r() * len(seq))]

    def weighted(self, seq: Any, cumulative: list[float]) -> Any:
        return seq[bisect_right(cumulative, self.r() * cumulative[-1])]

    def uniform(self, lo: float, hi: float) -> float:
        return lo + (hi - lo) * self.r()


def _cumulative(weights: tuple[int, ...]) -> list[float]:
    out, acc = [], 0.0
    for w in weights:
        acc += w
        out.append(acc)
    return out


_ORDER_CUM = _cumulative((10, 20, 20, 40, 6, 4))
_EVENT_CUM = _cumulative((45, 15, 15, 8, 7, 4, 6))


_DAYS: dict[int, str] = {}


def iso(ts: int) -> str:
    """Epoch seconds → `YYYY-MM-DDTHH:MM:SSZ` (the date part cached per day: generation
    formats hundreds of thousands of these)."""
    day, secs = divmod(int(ts), DAY)
    date = _DAYS.get(day)
    if date is None:
        date = _DAYS[day] = time.strftime("%Y-%m-%d", time.gmtime(day * DAY))
    h, rest = divmod(secs, 3600)
    m, s = divmod(rest, 60)
    return f"{date}T{h:02d}:{m:02d}:{s:02d}Z"


def parse_time(value: str) -> float:
    """A timestamp parameter → epoch seconds. Accepts ISO-8601 (`Z` or an offset; naive means
    UTC; a bare date means its midnight UTC) and epoch seconds or milliseconds (digits, >1e11
    read as milliseconds). Raises ValueError otherwise."""
    v = value.strip()
    if not v:
        raise ValueError("empty timestamp")
    if v.replace(".", "", 1).isdigit():
        n = float(v)
        return n / 1000.0 if n > 1e11 else n
    if v.endswith(("Z", "z")):
        v = v[:-1] + "+00:00"
    dt = datetime.fromisoformat(v)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def _time_or_none(value: str | None) -> float | None:
    return parse_time(value) if value else None


def anchor_of(now: str | None) -> int:
    """The clock anchor: `now` (any `parse_time` form) or the wall clock, floored to the minute
    so that two servers started in the same minute generate the same bytes."""
    ts = parse_time(now) if now else time.time()
    return int(ts) // 60 * 60


@dataclass
class Collection:
    """One top-level collection: live records by id, their bytes, versions and sorted ids."""

    name: str
    records: dict[Any, dict[str, Any]] = field(default_factory=dict)
    blobs: dict[Any, bytes] = field(default_factory=dict)  # live records (and order tombstones)
    versions: dict[Any, int] = field(default_factory=dict)
    order: list[Any] = field(default_factory=list)  # live ids, sorted
    next_n: int = 1  # the number the next inserted id is made from; ids are never reused
    revision: int = 0  # bumped by every change; invalidates derived indexes

    def put(self, rec: dict[str, Any]) -> None:
        self.records[rec["id"]] = rec
        self.blobs[rec["id"]] = orjson.dumps(rec)

    def page_bytes(self, ids: list[Any]) -> bytes:
        """`[rec,...]` for these ids, joined from the ready-made bytes."""
        blobs = self.blobs
        return b"[" + b",".join([blobs[i] for i in ids]) + b"]"

    def record(self, rid: Any) -> dict[str, Any]:
        """A live record, or the tombstone of a deleted order, as a dict."""
        rec = self.records.get(rid)
        return rec if rec is not None else dict(orjson.loads(self.blobs[rid]))


class Shop:
    """All the demo data of one server, generated from `config.seed` at construction, with
    timestamps up to `anchor` (epoch seconds; default `anchor_of(config.now)`)."""

    def __init__(self, config: DemoConfig, anchor: int | None = None):
        self.config = config
        # a server keeps its anchor for life, so that a reset brings back the same bytes
        self.anchor = anchor if anchor is not None else anchor_of(config.now)
        self.rng = Draw(random.Random(config.seed))
        # mutations draw from their own stream, so the seeded data never depends on them
        self.mutation_rng = Draw(random.Random(config.seed * 7919 + 1))
        self._last_stamp = self.anchor
        self.products = Collection("products")
        self.customers = Collection("customers")
        self.orders = Collection("orders")
        self.events = Collection("events")
        self.tombstones: dict[int, dict[str, Any]] = {}  # deleted orders
        self.order_ts: dict[int, int] = {}  # updated_at of live orders and tombstones
        self.stream: list[tuple[int, int]] = []  # (updated_ts, id), sorted
        self.occurred: list[int] = []  # parallel to events.order
        self.lines: dict[int, list[dict[str, Any]]] = {}  # order id → its lines
        self.addresses: dict[int, list[dict[str, Any]]] = {}  # customer id → its addresses
        self.categories = [
            {"id": i, "slug": s, "name": n, "parent_id": p} for i, s, n, p in _CATEGORIES
        ]
        self.categories_bytes = orjson.dumps(self.categories)
        self._status_index: dict[str, tuple[int, list[int]]] = {}
        # hundreds of thousands of small dicts and no cycles: the cyclic GC would only rescan them
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            self._generate()
        finally:
            if was_enabled:
                gc.enable()

    # --- generation ---------------------------------------------------------------------

    def _generate(self) -> None:
        cfg, rng, a = self.config, self.rng, self.anchor
        for _ in range(cfg.products):
            self._add_product(rng, created=a - rng.int(30 * DAY, 730 * DAY), now=a)
        for _ in range(cfg.customers):
            self._add_customer(rng, created=a - rng.int(DAY, 1000 * DAY))
        if cfg.orders and (not self.products.order or not self.customers.order):
            raise ValueError("orders need at least one product and one customer")
        for _ in range(cfg.orders):
            self._add_order(rng, created=a - rng.int(0, 365 * DAY), now=a)
        self.stream.sort()
        self._generate_events(rng)

    def _generate_events(self, rng: Draw) -> None:
        cfg, a = self.config, self.anchor
        n = cfg.events
        if n and not self.customers.order:
            raise ValueError("events need at least one customer")
        today = a - a % DAY
        start = today - (max(cfg.event_days, 1) - 1) * DAY
        # about an hour's share lands in today even right after midnight, so today has events
        n_today = min(n, max(1, n // (max(cfg.event_days, 1) * 24))) if n else 0
        stamps = [rng.int(start, a) for _ in range(n - n_today)]
        stamps += [rng.int(today, a) for _ in range(n_today)]
        stamps.sort()
        for ts in stamps:
            self._add_event(rng, ts)

    def _new_id(self, coll: Collection) -> int:
        n = coll.next_n
        coll.next_n += 1
        return n

    def _product_fields(self, rng: Draw) -> dict[str, Any]:
        return {
            "name": f"{rng.pick(_ADJECTIVES)} {rng.pick(_NOUNS)}",
            "status": "active" if rng.r() < 0.85 else "archived",
            "price": {
                "amount": round(rng.uniform(2, 500), 2),
                "currency": _CURRENCIES[0] if rng.r() < 0.8 else rng.pick(_CURRENCIES),
            },
            "tags": sorted(rng.rng.sample(_TAGS, rng.int(0, 3))),
            "category_id": rng.int(1, len(_CATEGORIES)),
        }

    def _add_product(self, rng: Draw, created: int, now: int) -> dict[str, Any]:
        pid = self._new_id(self.products)
        updated = created + rng.int(0, now - created)
        rec = {
            "id": pid,
            "sku": f"SKU-{pid:06d}",
            **self._product_fields(rng),
            "created_at": iso(created),
            "updated_at": iso(updated),
        }
        self.products.put(rec)
        self.products.versions[pid] = 1
        self.products.order.append(pid)
        return rec

    def _customer_fields(self, rng: Draw, cid: int) -> tuple[dict[str, Any], tuple[str, str]]:
        first, last = rng.pick(_FIRST), rng.pick(_LAST)
        place = rng.pick(_PLACES)
        return {
            "email": f"{first.lower()}.{last.lower()}{cid}@example.com",
            "name": f"{first} {last}",
            "address": {"city": place[0], "country": place[1]},
        }, place

    def _add_customer(self, rng: Draw, created: int) -> dict[str, Any]:
        cid = self._new_id(self.customers)
        fields, place = self._customer_fields(rng, cid)
        rec = {"id": cid, **fields, "created_at": iso(created)}
        self.customers.put(rec)
        self.customers.versions[cid] = 1
        self.customers.order.append(cid)
        self._set_addresses(rng, cid, place)
        return rec

    def _set_addresses(self, rng: Draw, cid: int, first_place: tuple[str, str]) -> None:
        k = rng.int(1, 3)
        addresses = []
        for n in range(1, k + 1):
            city, country = first_place if n == 1 else rng.pick(_PLACES)
            addresses.append(
                {
                    "address_id": n,
                    "kind": "billing" if n == 1 else "shipping",
                    "line1": f"{rng.int(1, 400)} {rng.pick(_STREETS)} Street",
                    "city": city,
                    "country": country,
                    "postal_code": f"{rng.int(1000, 99999):05d}",
                    "is_default": n == 1,
                }
            )
        self.addresses[cid] = addresses

    def _add_order(self, rng: Draw, created: int, now: int) -> dict[str, Any]:
        oid = self._new_id(self.orders)
        updated = created + rng.int(0, min(30 * DAY, now - created))
        products = self.products
        items, lines, total = [], [], 0.0
        for line_no in range(1, rng.int(1, 5) + 1):
            pid = rng.pick(products.order)
            qty = rng.int(1, 5)
            price = products.records[pid]["price"]["amount"]
            items.append({"product_id": pid, "qty": qty})
            lines.append({"line_no": line_no, "product_id": pid, "qty": qty, "unit_price": price})
            total += qty * price
        rec = {
            "id": oid,
            "customer_id": rng.pick(self.customers.order),
            "status": rng.weighted(_ORDER_STATUSES, _ORDER_CUM),
            "total": {"amount": round(total, 2), "currency": "USD"},
            "items": items,
            "created_at": iso(created),
            "updated_at": iso(updated),
        }
        self.orders.put(rec)
        self.orders.versions[oid] = 1
        self.orders.order.append(oid)
        self.order_ts[oid] = updated
        self.stream.append((updated, oid))
        self.lines[oid] = lines
        return rec

    def _event_properties(self, rng: Draw, etype: str) -> dict[str, Any]:
        if etype == "page_view":
            target = rng.pick(self.products.order) if self.products.order else 1
            return {
                "path": f"/products/{target}",
                "referrer": rng.pick(("search", "email", "ads", "direct")),
            }
        if etype == "search":
            return {"query": rng.pick(_NOUNS).lower(), "results": rng.int(0, 120)}
        if etype == "add_to_cart":
            target = rng.pick(self.products.order) if self.products.order else 1
            return {"product_id": target, "qty": rng.int(1, 4)}
        if etype == "checkout_started":
            return {"cart_value": round(rng.uniform(5, 900), 2), "items": rng.int(1, 6)}
        if etype == "order_placed":
            target = rng.pick(self.orders.order) if self.orders.order else 1
            return {"order_id": target, "amount": round(rng.uniform(5, 900), 2)}
        if etype == "signup":
            return {"plan": rng.pick(("free", "plus", "pro"))}
        return {"method": rng.pick(("password", "sso", "magic_link"))}

    def _add_event(self, rng: Draw, ts: int) -> dict[str, Any]:
        n = self._new_id(self.events)
        eid = f"evt_{n:08d}"
        etype = rng.weighted(_EVENT_TYPES, _EVENT_CUM)
        rec = {
            "id": eid,
            "type": etype,
            "occurred_at": iso(ts),
            "customer_id": rng.pick(self.customers.order),
            "properties": self._event_properties(rng, etype),
        }
        self.events.put(rec)
        self.events.versions[eid] = 1
        self.events.order.append(eid)
        self.occurred.append(ts)
        return rec

    # --- queries ------------------------------------------------------------------------

    def collection(self, name: str) -> Collection:
        if name not in COLLECTIONS:
            raise KeyError(name)
        coll: Collection = getattr(self, name)
        return coll

    def products_with_status(self, status: str | None) -> list[int]:
        """Live product ids (sorted), optionally only those with `status`."""
        if status is None:
            return self.products.order
        cached = self._status_index.get(status)
        if cached is None or cached[0] != self.products.revision:
            recs = self.products.records
            cached = (
                self.products.revision,
                [i for i in self.products.order if recs[i]["status"] == status],
            )
            self._status_index[status] = cached
        return cached[1]

    def events_window(self, since: float | None, until: float | None) -> tuple[int, int]:
        """Positions `[lo, hi)` in `events.order` of events with since <= occurred_at < until."""
        lo = 0 if since is None else bisect_left(self.occurred, since)
        hi = len(self.occurred) if until is None else bisect_left(self.occurred, until)
        return lo, max(lo, hi)

    def stream_start(self, updated_since: float | None) -> int:
        return 0 if updated_since is None else bisect_left(self.stream, (updated_since,))

    def truth(self, name: str, params: dict[str, str] | None = None) -> dict[str, Any]:
        """Live ids (sorted), versions and count of a collection; filters as the endpoints do:
        products `status`, orders `updated_since` (tombstones listed apart), events `since` /
        `until`. Child collections list `[parent_id, n]` pairs."""
        params = params or {}
        if name in ("order_lines", "customer_addresses"):
            children = self.lines if name == "order_lines" else self.addresses
            parents = self.orders.order if name == "order_lines" else self.customers.order
            pairs = [[p, n] for p in parents for n in range(1, len(children[p]) + 1)]
            return {"collection": name, "ids": pairs, "versions": {}, "count": len(pairs)}
        if name == "categories":
            cats = [c["id"] for c in self.categories]
            versions = {str(i): 1 for i in cats}
            return {"collection": name, "ids": cats, "versions": versions, "count": len(cats)}
        coll = self.collection(name)
        out: dict[str, Any] = {"collection": name}
        ids: list[Any]
        if name == "products":
            ids = list(self.products_with_status(params.get("status")))
        elif name == "events":
            lo, hi = self.events_window(
                _time_or_none(params.get("since")), _time_or_none(params.get("until"))
            )
            ids = self.events.order[lo:hi]
        elif name == "orders":
            since = _time_or_none(params.get("updated_since"))
            ts = self.order_ts
            ids = [i for i in self.orders.order if since is None or ts[i] >= since]
            out["tombstones"] = sorted(
                i for i in self.tombstones if since is None or ts[i] >= since
            )
            out["updated_at"] = {str(i): iso(ts[i]) for i in ids}
        else:
            ids = list(coll.order)
        versions = {str(i): coll.versions[i] for i in ids}
        out.update({"ids": ids, "versions": versions, "count": len(ids)})
        return out

    # --- mutations ----------------------------------------------------------------------

    def stamp(self) -> int:
        """The timestamp of a change: the wall clock, never before the previous stamp."""
        self._last_stamp = max(int(time.time()), self._last_stamp)
        return self._last_stamp

    def mutate(
        self,
        name: str,
        inserts: int = 0,
        updates: int = 0,
        deletes: int = 0,
        *,
        update_ids: list[Any] | None = None,
        delete_ids: list[Any] | None = None,
        delete_before: int | None = None,
    ) -> dict[str, list[Any]]:
        """Insert, update and delete records of a top-level collection; returns the ids touched.

        Updates and deletes pick live records with the mutation RNG unless ids are given;
        `delete_before=k` picks deletes among the first k live ids (offset drift). Updates bump
        `version` and `updated_at`; deleted orders become tombstones."""
        coll = self.collection(name)
        rng = self.mutation_rng
        now = self.stamp()
        inserted, updated, deleted = [], [], []
        for _ in range(max(0, inserts)):
            inserted.append(self._insert(name, rng, now)["id"])
        if update_ids is None:
            pool = coll.order
            update_ids = rng.rng.sample(pool, min(max(0, updates), len(pool)))
        for rid in update_ids:
            if rid in coll.records:
                self._update(name, rng, rid, now)
                updated.append(rid)
        if delete_ids is None:
            pool = coll.order[:delete_before] if delete_before is not None else coll.order
            delete_ids = rng.rng.sample(pool, min(max(0, deletes), len(pool)))
        for rid in delete_ids:
            if rid in coll.records:
                self._delete(name, rid, now)
                deleted.append(rid)
        coll.revision += 1
        return {"inserted": inserted, "updated": updated, "deleted": deleted}

    def _insert(self, name: str, rng: Draw, now: int) -> dict[str, Any]:
        if name == "products":
            return self._add_product(rng, created=now, now=now)
        if name == "customers":
            return self._add_customer(rng, created=now)
        if name == "orders":
            rec = self._add_order(rng, created=now, now=now)
            self.stream.pop()  # _add_order appended; keep the index sorted
            insort(self.stream, (now, rec["id"]))
            return rec
        return self._add_event(rng, max(now, self.occurred[-1] if self.occurred else now))

    def _update(self, name: str, rng: Draw, rid: Any, now: int) -> None:
        coll = self.collection(name)
        rec = dict(coll.records[rid])
        if name == "products":
            rec["price"] = {**rec["price"], "amount": round(rng.uniform(2, 500), 2)}
            rec["status"] = "archived" if rec["status"] == "active" else "active"
            rec["updated_at"] = iso(now)
        elif name == "customers":
            fields, place = self._customer_fields(rng, rid)
            rec.update(fields)
            self._set_addresses(rng, rid, place)
        elif name == "orders":
            i = _ORDER_STATUSES.index(rec["status"])
            rec["status"] = _ORDER_STATUSES[(i + 1) % len(_ORDER_STATUSES)]
            self._move_order(rid, now)
            rec["updated_at"] = iso(now)
        else:
            rec["properties"] = {**rec["properties"], "revised": True}
        coll.versions[rid] += 1
        coll.put(rec)

    def _move_order(self, oid: int, now: int) -> None:
        old = (self.order_ts[oid], oid)
        del self.stream[bisect_left(self.stream, old)]
        insort(self.stream, (now, oid))
        self.order_ts[oid] = now

    def _delete(self, name: str, rid: Any, now: int) -> None:
        coll = self.collection(name)
        pos = bisect_left(coll.order, rid)
        del coll.order[pos]
        del coll.records[rid]
        coll.versions[rid] += 1
        if name == "orders":
            self._move_order(rid, now)
            tomb = {"id": rid, "deleted": True, "updated_at": iso(now)}
            self.tombstones[rid] = tomb
            coll.blobs[rid] = orjson.dumps(tomb)
            self.lines.pop(rid, None)
            return
        del coll.blobs[rid]
        if name == "customers":
            self.addresses.pop(rid, None)
        elif name == "events":
            del self.occurred[pos]
