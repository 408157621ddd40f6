"""Helpers for the data-side tests (archive, normalize, schema, report, tables): pages and
records built in memory, and a hypothesis strategy for JSON records."""

from datetime import UTC, datetime
from typing import Any

import orjson
from hypothesis import strategies as st

from api_assets.pages import Page

FETCHED_AT = datetime(2026, 11, 28, 3, 0, tzinfo=UTC)


def make_page(
    records: list[dict[str, Any]],
    *,
    index: int = 0,
    records_path: str | None = "data",
    url: str = "https://api.example.test/v1/items",
    params: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    parent: dict[str, Any] | None = None,
    status: int = 200,
    total: int | None = None,
    extra: dict[str, Any] | None = None,
) -> Page:
    """A Page whose body holds `records` at `records_path` (the body is the list when None)."""
    payload: Any = records if records_path is None else {records_path: records, **(extra or {})}
    return Page(
        index=index,
        url=url,
        params=dict(params or {"limit": 100, "offset": index * 100}),
        status=status,
        headers=dict(headers or {"date": "Sat, 28 Nov 2026 03:00:00 GMT"}),
        fetched_at=FETCHED_AT,
        body=orjson.dumps(payload),
        records=records,
        attempts=1,
        elapsed_s=0.01,
        parent=parent,
        total_reported=total,
    )


def nested_record(i: int) -> dict[str, Any]:
    return {
        "id": i,
        "name": f"item {i}",
        "price": i * 1.5,
        "active": i % 2 == 0,
        "customer": {"id": i % 7, "address": {"city": "Lyon", "zip": "69001"}},
        "tags": ["a", "b"] if i % 3 else [],
        "lines": [{"sku": f"s{i}", "qty": 1}, {"sku": "x", "qty": 2, "note": None}],
        "note": None,
    }


# JSON values as orjson gives them back: keys are short to make collisions (same field, other
# types) likely across records.
_keys = st.sampled_from(["a", "b", "c", "d", "e"])
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**62), max_value=2**62),
    st.floats(allow_nan=False, allow_infinity=False, width=64),
    st.text(max_size=5),
)
json_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(_keys, inner, max_size=3),
    ),
    max_leaves=8,
)
json_records = st.dictionaries(_keys, json_values, max_size=5)
