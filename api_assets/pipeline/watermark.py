"""Watermarks: where an incremental endpoint's next fetch starts, kept with the data they describe.

A watermark is the newest cursor value a committed partition holds, as the API wrote it
(`WatermarkValue`: what is stored in the table file's metadata, reported, and sent back to the
API as `incremental.param`). Comparisons go through `Watermark`, which pairs the value with its
comparable key (an aware UTC datetime for the time formats, the value itself for `raw`).

The watermark lives in the metadata of the table file it describes (`watermark_before`,
`watermark_after`), so it is committed with the data in one rename and can never run ahead of
it; `watermark_for` reads it back.
"""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from api_assets.config.models import EndpointConfig, IncrementalConfig, SourceConfig
from api_assets.errors import ApiAssetsError, FetchError
from api_assets.pages import Page
from api_assets.records import lookup
from api_assets.storage.layout import DataLayout
from api_assets.storage.tables import read_table_metadata

WatermarkValue = str | int | float  # a cursor value as the API wrote it
TableMeta = dict[str, Any]


@dataclass(frozen=True)
class Watermark:
    """A cursor value and its comparable key."""

    value: WatermarkValue
    key: Any  # datetime (time formats) or the value (raw): compare these, never the values

    @classmethod
    def of(cls, value: WatermarkValue | None, inc: IncrementalConfig) -> "Watermark | None":
        """The watermark of a stored or received value; None for None. Raises `ApiAssetsError`
        when a time-format value cannot be read as a time."""
        if value is None:
            return None
        key = cursor_key(value, inc)
        if key is None:
            raise ApiAssetsError(f"watermark {value!r} is not a {inc.format} value")
        return cls(value, key)


# --- time formats ------------------------------------------------------------------------------


def parse_time(value: Any, fmt: str) -> datetime | None:
    """A cursor or window value as an aware UTC datetime (None if it cannot be read as one)."""
    try:
        if fmt == "epoch_seconds":
            return datetime.fromtimestamp(float(value), UTC)
        if fmt == "epoch_millis":
            return datetime.fromtimestamp(float(value) / 1000.0, UTC)
        if isinstance(value, int | float):
            return datetime.fromtimestamp(float(value), UTC)
        text = str(value).strip().replace("Z", "+00:00")
        dt = datetime.fromisoformat(text)
        return dt if dt.tzinfo else dt.replace(tzinfo=UTC)
    except (ValueError, TypeError, OverflowError, OSError):
        return None


def format_time(dt: datetime, fmt: str) -> WatermarkValue:
    dt = dt.astimezone(UTC)
    if fmt == "epoch_seconds":
        return int(dt.timestamp())
    if fmt == "epoch_millis":
        return int(dt.timestamp() * 1000)
    return dt.isoformat().replace("+00:00", "Z")


def cursor_key(value: Any, inc: IncrementalConfig) -> Any:
    """A comparable form of a cursor value."""
    if inc.format == "raw":
        return value
    return parse_time(value, inc.format)


# --- committed watermarks --------------------------------------------------------------------------------


def committed_tables(layout: DataLayout, source: str, endpoint: str) -> dict[str, TableMeta]:
    """Partition → the `api_assets` metadata of its committed table file."""
    out: dict[str, TableMeta] = {}
    directory = layout.table_dir(source, endpoint)
    if not directory.exists():
        return out
    for path in sorted(directory.glob("*.parquet")):
        try:
            meta = read_table_metadata(path)
        except Exception:  # an unreadable file is not a commit
            continue
        if meta:
            out[str(meta.get("partition", path.stem))] = meta
    return out


def watermark_for(
    layout: DataLayout, source: SourceConfig, endpoint: EndpointConfig, partition: str
) -> WatermarkValue | None:
    """The watermark partition `partition` starts from.

    Re-materializing a committed partition starts from the watermark it started from before (it
    never loses what it held); a new partition starts from the highest watermark committed by an
    earlier partition (`current` merges, so it continues from its own); else `initial_value`.
    """
    inc = endpoint.incremental
    assert inc is not None
    committed = committed_tables(layout, source.name, endpoint.name)
    if partition == "current":
        meta = committed.get("current")
        return meta.get("watermark_after") if meta else inc.initial_value
    if partition in committed:
        return committed[partition].get("watermark_before")
    best: Any = None
    for key, meta in committed.items():
        if key >= partition:
            continue
        wm = meta.get("watermark_after")
        if wm is None:
            continue
        if best is None or cursor_key(wm, inc) > cursor_key(best, inc):
            best = wm
    return best if best is not None else inc.initial_value


def lower_bound(watermark: WatermarkValue | None, inc: IncrementalConfig) -> WatermarkValue | None:
    """The value sent as `inc.param`: the watermark minus the lookback (time formats only)."""
    if watermark is None:
        return None
    if inc.format == "raw":
        return watermark
    dt = parse_time(watermark, inc.format)
    if dt is None:
        raise ApiAssetsError(f"watermark {watermark!r} is not a {inc.format} value")
    return format_time(dt - timedelta(seconds=inc.lookback_seconds), inc.format)


def latest_watermark(
    layout: DataLayout, source: SourceConfig, endpoint: EndpointConfig
) -> WatermarkValue | None:
    """The highest watermark any committed partition reached (or `initial_value`)."""
    inc = endpoint.incremental
    assert inc is not None
    best: Any = None
    for meta in committed_tables(layout, source.name, endpoint.name).values():
        wm = meta.get("watermark_after")
        if wm is not None and (best is None or cursor_key(wm, inc) > cursor_key(best, inc)):
            best = wm
    return best if best is not None else inc.initial_value


def far_below(oldest: Any, bound: Any, inc: IncrementalConfig) -> bool:
    """Records much older than the bound sent (a day past the lookback): the filter was ignored."""
    if oldest is None or bound is None:
        return False
    try:
        return bool(oldest < bound - timedelta(days=1))
    except TypeError:
        return False


class WatermarkTracker:
    """Reads the cursor field of every record of a run: the newest value (the watermark the run
    commits), the oldest (evidence that the API ignored the filter) and how many records the
    lookback fetched again (at or before the watermark the run started from)."""

    def __init__(
        self, source: str, endpoint: str, inc: IncrementalConfig, before: Watermark | None
    ):
        self.where = f"source `{source}`, endpoint `{endpoint}`"
        self.inc, self.before = inc, before
        self.after = before
        self.oldest: Watermark | None = None
        self.lookback_duplicates = 0

    def prepare(self, page: Page) -> None:
        return None

    def add(self, page: Page, prepared: object) -> None:
        inc, before = self.inc, self.before
        for rec in page.records:
            value = lookup(rec, inc.cursor_field)
            if value is None:
                continue
            key = cursor_key(value, inc)
            if key is None:
                raise FetchError(
                    f"{self.where}: cursor field `{inc.cursor_field}` holds {value!r}, not a "
                    f"{inc.format} value"
                )
            if before is not None and key <= before.key:
                self.lookback_duplicates += 1
            if self.oldest is None or key < self.oldest.key:
                self.oldest = Watermark(value, key)
            if self.after is None or key > self.after.key:
                self.after = Watermark(value, key)

    @property
    def went_backwards(self) -> bool:
        """The newest cursor of this run is older than where it started: the API reordered."""
        return bool(self.before and self.after and self.after.key < self.before.key)

    def filter_ignored(self, bound: WatermarkValue | None) -> bool:
        """Records far older than the lower bound sent: the API ignored the filter."""
        if bound is None or self.oldest is None or self.inc.format == "raw":
            return False
        return far_below(self.oldest.key, cursor_key(bound, self.inc), self.inc)
