"""Deterministic seed records shared by every conformance server.

Each record exercises what a table must keep intact: an integer key, text with non-ASCII
characters and quotes, floats, booleans, a nullable integer, a list of strings, a nested object
(flattened as `dimensions__width_cm`), and an ISO-8601 `updated_at` that grows with the id (one
minute apart) for incremental runs.
"""

import random
from datetime import UTC, datetime, timedelta
from typing import Any

BASE_TIME = datetime(2026, 1, 1, tzinfo=UTC)
COLORS = ["red", "green", "blue", "cyan", "magenta", "ochre"]
WORDS = ["Café", "naïve", "Straße", "日本", "“quoted”", "tab\tand\nnewline", "emoji 🚀", "plain"]


def timestamp(minutes: int) -> str:
    """`BASE_TIME` plus `minutes`, as `2026-01-01T00:05:00Z`."""
    return (BASE_TIME + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")


def make_record(
    record_id: int, *, rng: random.Random, minutes: int | None = None
) -> dict[str, Any]:
    """One record; `minutes` sets `updated_at` (default: `record_id` minutes past `BASE_TIME`)."""
    return {
        "id": record_id,
        "name": f"{rng.choice(WORDS)} #{record_id}",
        "price": round(rng.uniform(0.5, 999.0), 2),
        "in_stock": rng.random() < 0.7,
        "quantity": None if record_id % 7 == 0 else rng.randint(0, 10_000),
        "tags": rng.sample(COLORS, rng.randint(1, 3)),
        "dimensions": {
            "width_cm": round(rng.uniform(1, 200), 1),
            "height_cm": round(rng.uniform(1, 200), 1),
        },
        "updated_at": timestamp(record_id if minutes is None else minutes),
    }


def make_records(count: int, *, seed: int = 7, first_id: int = 1) -> list[dict[str, Any]]:
    """`count` records with ids `first_id`, `first_id + 1`, ...; the same for the same arguments."""
    rng = random.Random(seed)
    return [make_record(i, rng=rng) for i in range(first_id, first_id + count)]
