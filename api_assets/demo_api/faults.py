"""Fault profiles: the ways the demo API misbehaves on purpose, each limited to a path prefix.

A fault is set at start (`DemoConfig(faults=...)`, `api-assets demo-api --faults NAME`) or per
test (`server.set_faults(NAME, path=..., **options)`, `POST /admin/faults`). Setting a fault
replaces the faults in force unless `add=True`; `server.clear_faults()` / `DELETE /admin/faults`
removes them all.

Every fault counts the requests it is *eligible* for: a request whose path starts with `path`
(default `/v1`, and `/oauth/token` is a path too) and, for page faults, that is not the first page
of a series (it carries `cursor`, `after`, `since_id`, an `offset` > 0 or a `page` > 1). It fires
on an eligible request when all of these hold:

| option | default | meaning |
| --- | --- | --- |
| `after` | 0 | let this many eligible requests through first |
| `every` | 1 | then fire on every k-th eligible request (1: consecutive ones) |
| `count` | per profile | fire this many times, then behave (transient); 0 = forever |
| `persistent` | false | same as `count=0` |
| `after_seconds` | 0 | stay dormant this long after the fault is set ("from a given moment") |

So `5xx_burst` with `count=2` is recovered by a client that retries twice, and with
`persistent=True` it is not recoverable at all.

Profiles and their own options (the `count` default in brackets):

- `5xx_burst` [2]: answer `status` (default 503; a list is cycled, e.g. `[503, 500, 502]`) with a
  JSON error body instead of the page: `count` consecutive failures after `after` requests.
- `429_storm` [3]: answer 429 with `Retry-After: retry_after` (default 1 s), as seconds or, with
  `format="http_date"` (default: the server's `retry_after_format`), as an HTTP date.
- `slow` [1]: sleep `delay` seconds (default 2.0) before answering, to trip client timeouts.
- `drop` [1]: send the status line and headers (`mode="body"`, the default, also sends part of
  the body) and then close the connection: the client sees an incomplete response.
- `truncated_json` [1]: answer 200 with only the first `keep` fraction (default 0.5) of the body.
- `error_body` [1]: answer `status` (default 200) with `{"error": {"message": message}}`.
- `empty_page` [1]: a page after the first answers with no records, while its pagination signals
  (next cursor, next link, totals) are those of the real page: later pages exist.
- `repeated_cursor` [0]: cursor-like endpoints answer with a next cursor / next URL / Link
  `rel="next"` equal to the one the client just sent, so a naive client loops.
- `repeat_page` [1]: a page after the first repeats the records of the previous page served on
  the same path (its own signals unchanged, so those records appear twice).
- `schema_change` [0]: the records of paged routes (not categories or the child routes) change
  shape. `change="add"` adds `field` (default
  `loyalty_tier`) with `value` (default `"gold"`); `change="remove"` drops `field`; `change=
  "retype"` turns `field` into another JSON type (number ↔ string, object/list → string, bool →
  string). `field` may be dotted (`price.amount`); defaults per collection for remove/retype:
  products `price.amount`, customers `email`, orders `total.amount`, events `type`. Combine with
  `after` or `after_seconds` for "from request N on" or "from a moment on".
- `total_mismatch` [0]: the stated total (body `total`, `X-Total-Count`, `total_pages`) is off by
  `delta` (default 7).
- `offset_drift` [0]: the mutation driver. Before serving a page after the first of an
  offset/page-number endpoint, delete `deletes` (default 1) records that sort before the requested
  offset and insert `inserts` (default 1) new ones, so offsets shift under the client.
- `ignore_filter` [0]: the server ignores `updated_since`, `since` and `until`.
- `wrong_encoding` [1]: the answer declares `Content-Encoding: encoding` (default `gzip`) that
  does not hold: with `mode="plain"` (the default) the body is sent as it is, with
  `mode="garbled"` it is compressed and then a third of its bytes are flipped.
- `bomb` [1]: a decompression bomb: answer 200 with a body in `encoding` (default `gzip`; `br`,
  `zstd`) that decodes to `size` bytes of zeros (default 1 GiB) from about a thousandth of that.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from api_assets.demo_api.compression import PREFERENCE
from api_assets.demo_api.ratelimit import retry_after_value

COMMON_OPTIONS = {"after": 0, "every": 1, "count": None, "persistent": False, "after_seconds": 0.0}

PROFILES: dict[str, dict[str, Any]] = {
    "5xx_burst": {"count": 2, "status": 503},
    "429_storm": {"count": 3, "retry_after": 1.0, "format": None},
    "slow": {"count": 1, "delay": 2.0},
    "drop": {"count": 1, "mode": "body"},
    "truncated_json": {"count": 1, "keep": 0.5},
    "wrong_encoding": {"count": 1, "encoding": "gzip", "mode": "plain"},
    "bomb": {"count": 1, "encoding": "gzip", "size": 1 << 30},
    "error_body": {"count": 1, "status": 200, "message": "internal error: please try again"},
    "empty_page": {"count": 1},
    "repeated_cursor": {"count": 0},
    "repeat_page": {"count": 1},
    "schema_change": {"count": 0, "change": "add", "field": None, "value": "gold"},
    "total_mismatch": {"count": 0, "delta": 7},
    "offset_drift": {"count": 0, "inserts": 1, "deletes": 1},
    "ignore_filter": {"count": 0},
}

# faults that only make sense on a page after the first of a series
PAGE_FAULTS = {"empty_page", "repeated_cursor", "repeat_page", "offset_drift"}

SCHEMA_FIELDS = {
    "products": "price.amount",
    "customers": "email",
    "orders": "total.amount",
    "events": "type",
}


class FaultError(ValueError):
    """A fault request names an unknown profile or option, or a bad value."""


@dataclass
class Fault:
    profile: str
    path: str
    options: dict[str, Any]
    set_at: float = field(default_factory=time.monotonic)
    seen: int = 0  # eligible requests
    fired: int = 0

    def describe(self) -> dict[str, Any]:
        return {
            "profile": self.profile,
            "path": self.path,
            "options": self.options,
            "seen": self.seen,
            "fired": self.fired,
        }

    def fires(self) -> bool:
        o = self.options
        if o["after_seconds"] and time.monotonic() - self.set_at < o["after_seconds"]:
            return False
        self.seen += 1
        k = self.seen - o["after"]
        if k <= 0 or (k - 1) % o["every"]:
            return False
        if o["count"] and self.fired >= o["count"]:
            return False
        self.fired += 1
        return True


@dataclass
class Effects:
    """What the faults that fired on one request ask of the response."""

    fired: list[str] = field(default_factory=list)
    status: int | None = None  # replace the answer by an error with this status
    retry_after: str | None = None
    slow: float = 0.0
    drop: str | None = None
    keep: float | None = None  # truncate the body to this fraction
    error_body: tuple[int, str] | None = None
    empty_page: bool = False
    repeated_cursor: bool = False
    repeat_page: bool = False
    schema_change: tuple[str, str | None, Any] | None = None
    total_delta: int = 0
    ignore_filter: bool = False
    drift: tuple[int, int] | None = None  # (inserts, deletes)
    wrong_encoding: tuple[str, str] | None = None  # (declared coding, plain | garbled)
    bomb: tuple[str, int] | None = None  # (coding, decoded size)


def make_fault(profile: str, path: str | None = None, **options: Any) -> Fault:
    """Validate a fault request and fill in its defaults."""
    if profile not in PROFILES:
        raise FaultError(f"unknown fault profile {profile!r}; known: {', '.join(PROFILES)}")
    allowed = {**COMMON_OPTIONS, **PROFILES[profile]}
    unknown = set(options) - set(allowed)
    if unknown:
        raise FaultError(
            f"unknown option(s) {sorted(unknown)} for {profile}; known: {sorted(allowed)}"
        )
    merged = {**allowed, **options}
    try:
        for name in ("after", "every"):
            merged[name] = int(merged[name])
        merged["count"] = 0 if merged["persistent"] else int(merged["count"] or 0)
        merged["after_seconds"] = float(merged["after_seconds"])
    except (TypeError, ValueError) as e:
        raise FaultError(f"bad option value for {profile}: {e}") from None
    if merged["every"] < 1 or merged["after"] < 0 or merged["count"] < 0:
        raise FaultError("`every` must be >= 1, `after` and `count` >= 0")
    if profile == "schema_change" and merged["change"] not in ("add", "remove", "retype"):
        raise FaultError("schema_change `change` is one of add, remove, retype")
    if profile == "wrong_encoding" and (
        merged["mode"] not in ("plain", "garbled") or merged["encoding"] not in PREFERENCE
    ):
        raise FaultError(
            f"wrong_encoding `mode` is plain or garbled, `encoding` one of {', '.join(PREFERENCE)}"
        )
    if profile == "bomb" and merged["encoding"] not in ("gzip", "br", "zstd"):
        raise FaultError("bomb `encoding` is one of gzip, br, zstd")
    if profile == "drop" and merged["mode"] not in ("body", "headers"):
        raise FaultError("drop `mode` is `body` or `headers`")
    return Fault(profile, path or "/v1", merged)


def parse_fault_spec(spec: str) -> Fault:
    """`NAME` or `NAME:key=value,key=value` (the CLI's `--faults`) → a Fault. Values that read
    as JSON numbers or booleans become those."""
    name, _, rest = spec.partition(":")
    options: dict[str, Any] = {}
    for part in filter(None, rest.split(",")):
        key, _, raw = part.partition("=")
        options[key.strip()] = _scalar(raw.strip())
    path = options.pop("path", None)
    return make_fault(name.strip(), path, **options)


def _scalar(raw: str) -> Any:
    if raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    for cast in (int, float):
        try:
            return cast(raw)
        except ValueError:
            pass
    return raw


def is_first_page(query: Any) -> bool:
    """Whether a request starts a page series (no cursor-like param, offset 0, page 1)."""
    for name in ("cursor", "after"):
        if query.get(name):
            return False
    since_id = query.get("since_id")
    if since_id and since_id != "0":
        return False
    for name, first in (("offset", 0), ("page", 1)):
        raw = query.get(name)
        if raw:
            try:
                if int(raw) > first:
                    return False
            except ValueError:
                return True
    return True


class FaultSet:
    """The faults in force. `decide(path, query)` counts the request and collects the effects
    of the faults that fire on it; it is called once per request."""

    def __init__(self, retry_after_format: str = "seconds"):
        self.faults: list[Fault] = []
        self.retry_after_format = retry_after_format

    def __bool__(self) -> bool:
        return bool(self.faults)

    def set(self, fault: Fault, *, add: bool = False) -> None:
        if not add:
            self.faults = []
        self.faults.append(fault)

    def clear(self) -> None:
        self.faults = []

    def describe(self) -> list[dict[str, Any]]:
        return [f.describe() for f in self.faults]

    def decide(self, path: str, query: Any) -> Effects:
        fx = Effects()
        first: bool | None = None
        for f in self.faults:
            if not path.startswith(f.path):
                continue
            if f.profile in PAGE_FAULTS:
                if first is None:
                    first = is_first_page(query)
                if first:
                    continue
            if not f.fires():
                continue
            o, p = f.options, f.profile
            fx.fired.append(p)
            if p == "5xx_burst":
                statuses = o["status"] if isinstance(o["status"], list) else [o["status"]]
                fx.status = int(statuses[(f.fired - 1) % len(statuses)])
            elif p == "429_storm":
                fx.status = 429
                fx.retry_after = retry_after_value(
                    float(o["retry_after"]), o["format"] or self.retry_after_format
                )
            elif p == "slow":
                fx.slow = max(fx.slow, float(o["delay"]))
            elif p == "drop":
                fx.drop = o["mode"]
            elif p == "truncated_json":
                fx.keep = float(o["keep"])
            elif p == "error_body":
                fx.error_body = (int(o["status"]), str(o["message"]))
            elif p == "empty_page":
                fx.empty_page = True
            elif p == "repeated_cursor":
                fx.repeated_cursor = True
            elif p == "repeat_page":
                fx.repeat_page = True
            elif p == "schema_change":
                fx.schema_change = (o["change"], o["field"], o["value"])
            elif p == "total_mismatch":
                fx.total_delta += int(o["delta"])
            elif p == "offset_drift":
                fx.drift = (int(o["inserts"]), int(o["deletes"]))
            elif p == "ignore_filter":
                fx.ignore_filter = True
            elif p == "wrong_encoding":
                fx.wrong_encoding = (str(o["encoding"]), str(o["mode"]))
            elif p == "bomb":
                fx.bomb = (str(o["encoding"]), int(o["size"]))
        return fx


# --- schema change ---------------------------------------------------------------------------


def change_record(rec: dict[str, Any], change: str, fieldpath: str, value: Any) -> dict[str, Any]:
    """A copy of `rec` with `fieldpath` added, removed or retyped (dotted paths reach into
    nested objects). Tombstones and records without the field are returned unchanged."""
    if rec.get("deleted"):
        return rec
    out = dict(rec)
    parts = fieldpath.split(".")
    holder = out
    for part in parts[:-1]:
        inner = holder.get(part)
        if not isinstance(inner, dict):
            if change != "add":
                return out
            inner = {}
        holder[part] = dict(inner)
        holder = holder[part]
    leaf = parts[-1]
    if change == "add":
        holder[leaf] = value
    elif leaf in holder:
        if change == "remove":
            del holder[leaf]
        else:
            holder[leaf] = retype(holder[leaf])
    return out


def retype(v: Any) -> Any:
    """A value of another JSON type that a reader could mistake for the same field."""
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, int | float):
        return str(v)
    if isinstance(v, str):
        try:
            return float(v) if "." in v else int(v)
        except ValueError:
            return {"value": v}
    return orjson.dumps(v).decode()
