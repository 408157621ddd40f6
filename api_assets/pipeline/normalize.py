"""Where a record becomes a row: JSON records → one Polars DataFrame per partition.

The shape of a table:
- top-level scalar fields keep their names; nested objects are flattened recursively as
  `parent__child` (an empty object contributes no column);
- lists of scalars stay Polars list columns (`List(Int64)`, `List(String)`, ...);
- lists that hold objects anywhere inside are stored as JSON text (a `String` column). Why: the
  objects in a list vary from page to page (new keys, a field that is an int on one page and a
  string on the next), and a `List(Struct)` column would need struct-to-struct casts that Polars
  cannot always do; JSON text survives any variation, and `str.json_decode` gets the structure
  back. The text is Polars' rendering of the objects: a key missing from one object reads back
  as null, and a field whose type varies within one page (or within a batch of pages whose
  object types merge) is unified by Polars, e.g. `1` next to `"a"` reads back as `"1"`;
- lists mixing scalar types (`[1, "x"]`) become lists of strings;
- the values of a child endpoint's placeholders (`parent`) are columns named after the
  placeholders, first in the row; when a record has a field of the same name the parent value wins;
- `_partition` (String) and `_ingested_at` (Datetime UTC) are added.

Types across pages: each page becomes its own DataFrame (Polars' JSON reader on the page's records
re-serialized by orjson: ~4x faster than `pl.from_dicts` on nested records); when a column's type differs between pages it is widened — integers mixed with floats
become Float64, anything else mixed (string, boolean vs number, list vs scalar) becomes String,
lists widen their item type — and each widening is recorded as `{column, from, to}`. Within one
page, Polars does the same widening silently (int+str → String, int+float → Float64; note that it
turns booleans mixed with integers into 0/1); those are not recorded here, but the schema
snapshot (schema.py) lists every JSON type seen. A page Polars refuses (an object on one record
and a scalar on another, ints beyond 128 bits, ...) goes through a slower pure-Python path
that applies the same rules and records its widenings.

Deduplication: by primary key within the partition, the last occurrence wins (later pages win).
`duplicates` counts the records dropped that way. Records whose key has a null are all kept
(counted in `null_keys`). Without a primary key, nothing is deduplicated.

Memory stays bounded by the data itself: pages are kept as columnar DataFrames (never as dicts),
and every COMPACT_PAGES pages are concatenated into one batch.
"""

import contextlib
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeAlias, TypeVar

import orjson
import polars as pl
from polars.datatypes.classes import DataTypeClass

from api_assets.errors import FetchError
from api_assets.records import NotRecords, records_in
from api_assets.storage.archive import ArchiveReader
from api_assets.storage.tables import (
    INGESTED_AT_COLUMN,
    PARTITION_COLUMN,
    SEPARATOR,
    json_text,
    write_table,
)

INGESTED_AT_DTYPE = pl.Datetime("us", "UTC")
COMPACT_PAGES = 256
SPILL_ROWS = 50_000  # with a spill dir, rows held in memory before a part goes to disk
PREVIEW_ROWS = 100

# Polars hands out both data type classes (`pl.String`) and instances (`pl.List(pl.Int64)`).
DType: TypeAlias = DataTypeClass | pl.DataType

_NONE = type(None)
_KIND_DTYPE = {int: "Int64", float: "Float64", bool: "Boolean", str: "String", list: "List"}


@dataclass
class NormalizedTable:
    """The table of one partition and what normalization saw on the way."""

    df: pl.DataFrame
    fetched: int  # records received, duplicates included
    records: int  # rows stored, after deduplication
    duplicates: int  # records dropped because a later one had the same primary key
    widened: list[dict[str, str]] = field(default_factory=list)  # {column, from, to}
    null_keys: int = 0  # rows kept without deduplication because their key has a null
    # Set when the builder spilled to disk: the whole table, streamed from the spilled parts;
    # `df` then holds only its first PREVIEW_ROWS rows (every column), for previews and schemas.
    lazy: pl.LazyFrame | None = None
    spill_dir: Path | None = None

    def collect(self) -> pl.DataFrame:
        """The whole table in memory (for callers that need it; `write` does not)."""
        if self.lazy is not None:
            self.df, self.lazy = self.lazy.collect(), None
        return self.df

    def write(self, path: Path, metadata: dict[str, str]) -> None:
        """Write the table atomically (see `write_table`), streaming when it was spilled."""
        write_table(self.df if self.lazy is None else self.lazy, path, metadata)

    def cleanup(self) -> None:
        """Remove the spilled parts (after the table is written, or on failure)."""
        if self.spill_dir is not None:
            shutil.rmtree(self.spill_dir, ignore_errors=True)
            self.lazy = None


# --- one page → one flat DataFrame -----------------------------------------------------------


def _holds_struct(dtype: DType) -> bool:
    if isinstance(dtype, pl.Struct):
        return True
    if isinstance(dtype, pl.List | pl.Array):
        return _holds_struct(dtype.inner)
    return False


def _untyped(dtype: DType) -> bool:
    """No evidence of a type: null-only, or lists that were always empty."""
    if dtype == pl.Null:
        return True
    if isinstance(dtype, pl.List):
        return _untyped(dtype.inner)
    return False


def _unnest(df: pl.DataFrame) -> pl.DataFrame:
    """Flatten struct columns recursively as `parent__child`; lists are left as they are."""
    while True:
        structs = [name for name, dtype in df.schema.items() if isinstance(dtype, pl.Struct)]
        if not structs:
            return df
        df = df.unnest(structs, separator=SEPARATOR)


def page_frame(records: list[dict[str, Any]]) -> "PageFrame":
    """One page of records as a flat DataFrame (lists of objects still raw: they become JSON
    text per batch, see `_concat`), plus the widenings done inside the page (reported by the
    slow path only)."""
    try:
        # Polars' own JSON reader is ~4x faster than `pl.from_dicts` on nested records (which
        # builds a Series per list value); re-serializing with orjson costs little.
        df = pl.read_json(orjson.dumps(records), infer_schema_length=None)
        if df.height == len(records):
            return _unnest(df), []
    except (pl.exceptions.PolarsError, TypeError, ValueError, OverflowError):
        pass
    return _page_frame_slow(records)


def _flatten_into(record: dict[str, Any], prefix: str, out: dict[str, Any]) -> None:
    for key, value in record.items():
        if type(value) is dict:
            _flatten_into(value, f"{prefix}{key}{SEPARATOR}", out)
        else:
            out[prefix + key] = value


def _as_text(value: Any) -> str | None:
    if value is None or type(value) is str:
        return value
    if type(value) is bool:
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return orjson.dumps(value, default=str).decode()


def _column(name: str, values: list[Any]) -> tuple[pl.Series, list[tuple[str, str, str]]]:
    kinds = {type(v) for v in values} - {_NONE}
    if not kinds:
        return pl.Series(name, values, dtype=pl.Null), []
    with contextlib.suppress(pl.exceptions.PolarsError, TypeError, ValueError, OverflowError):
        if kinds == {int}:
            return pl.Series(name, values), []
        if kinds <= {int, float}:
            widened = [(name, "Int64", "Float64")] if int in kinds else []
            return pl.Series(name, values, dtype=pl.Float64), widened
        if kinds == {bool}:
            return pl.Series(name, values, dtype=pl.Boolean), []
        if kinds == {str}:
            return pl.Series(name, values, dtype=pl.String), []
        if kinds == {list}:
            series = pl.Series(name, values, strict=True)
            if _holds_struct(series.dtype):
                series = series.to_frame().select(json_text(pl.col(name)).alias(name)).to_series()
            return series, []
    widened = [(name, _KIND_DTYPE.get(k, k.__name__), "String") for k in kinds if k is not str]
    return pl.Series(name, [_as_text(v) for v in values], dtype=pl.String), sorted(widened)


def _page_frame_slow(
    records: list[dict[str, Any]],
) -> tuple[pl.DataFrame, list[tuple[str, str, str]]]:
    rows = []
    for record in records:
        flat: dict[str, Any] = {}
        _flatten_into(record, "", flat)
        rows.append(flat)
    names = list(dict.fromkeys(name for row in rows for name in row))
    columns = []
    widened: list[tuple[str, str, str]] = []
    for name in names:
        series, mixed = _column(name, [row.get(name) for row in rows])
        columns.append(series)
        widened += mixed
    return pl.DataFrame(columns), widened


PageFrame: TypeAlias = tuple[pl.DataFrame, list[tuple[str, str, str]]]
FrameT = TypeVar("FrameT", pl.DataFrame, pl.LazyFrame)


def page_table(records: list[dict[str, Any]], parent: dict[str, Any] | None = None) -> PageFrame:
    """`page_frame` with a child endpoint's placeholder values (`parent`) as the first columns.
    Pure: safe to call from any thread."""
    df, widened = page_frame(records)
    if parent:
        values, _ = page_frame([parent])
        df = df.drop([c for c in values.columns if c in df.columns])
        df = df.select(
            *(pl.lit(values.get_column(c)).first().alias(c) for c in values.columns),
            pl.all(),
        )
    return df, widened


# --- types across pages ----------------------------------------------------------------------


def widen(a: DType, b: DType) -> DType:
    """The type both `a` and `b` fit in, by the rules of the module docstring."""
    if a == b:
        return a
    if a == pl.Null:
        return b
    if b == pl.Null:
        return a
    if a.is_integer() and b.is_integer():
        # JSON integers arrive as Int64, UInt64 (> 2**63) or Int128: Int128 holds them all
        return pl.Int128 if {a, b} & {pl.Int128, pl.UInt64} else pl.Int64
    if a.is_numeric() and b.is_numeric():
        return pl.Float64
    if isinstance(a, pl.List) and isinstance(b, pl.List):
        inner = widen(a.inner, b.inner)
        if inner == pl.String and (a.inner.is_nested() or b.inner.is_nested()):
            return pl.String
        return pl.List(inner)
    return pl.String


def _merge_nested(a: DType, b: DType) -> DType | None:
    """The union of two nested types when they differ only by null-only parts and missing
    struct fields (safe for a relaxed concat); None on a real conflict."""
    if a == b:
        return a
    if a == pl.Null:
        return b
    if b == pl.Null:
        return a
    if isinstance(a, pl.List) and isinstance(b, pl.List):
        inner = _merge_nested(a.inner, b.inner)
        return None if inner is None else pl.List(inner)
    if isinstance(a, pl.Struct) and isinstance(b, pl.Struct):
        fields: dict[str, DType] = {f.name: f.dtype for f in a.fields}
        for f in b.fields:
            if f.name in fields:
                merged = _merge_nested(fields[f.name], f.dtype)
                if merged is None:
                    return None
                fields[f.name] = merged
            else:
                fields[f.name] = f.dtype
        return pl.Struct(fields)
    return None


def _concat(frames: list[pl.DataFrame], schema: dict[str, DType]) -> pl.DataFrame:
    """Concatenate page frames under the widened `schema`.

    Nested columns headed for JSON text are encoded once per batch when their types across the
    frames merge safely (the common case: the same objects, some fields null on some pages);
    otherwise each frame is encoded on its own, which keeps every value as it was.
    """
    schemas = [f.schema for f in frames]
    deferred: set[str] = set()
    for name, target in schema.items():
        if target != pl.String:
            continue
        dtypes = {s[name] for s in schemas if name in s}
        nested = [d for d in dtypes if d.is_nested()]
        if not nested or dtypes - set(nested) - {pl.Null}:
            continue
        merged: DType | None = nested[0]
        for d in nested[1:]:
            merged = _merge_nested(merged, d) if merged is not None else None
        if merged is not None:
            deferred.add(name)
    prepared = []
    for frame, frame_schema in zip(frames, schemas, strict=True):
        exprs = []
        for name, dtype in frame_schema.items():
            target = schema[name]
            if dtype == target or name in deferred:
                continue
            if target == pl.String and dtype.is_nested():
                exprs.append(json_text(pl.col(name)).alias(name))
            else:
                exprs.append(pl.col(name).cast(target))
        prepared.append(frame.with_columns(exprs) if exprs else frame)
    if len(prepared) == 1:
        df = prepared[0]
    else:
        df = pl.concat(prepared, how="diagonal_relaxed" if deferred else "diagonal")
    encode = [name for name in deferred if df.schema[name].is_nested()]
    if encode:
        df = df.with_columns(json_text(pl.col(name)).alias(name) for name in encode)
    return df


# --- the builder -----------------------------------------------------------------------------


def _utc(dt: datetime) -> datetime:
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


class TableBuilder:
    """Accumulate the records of one partition, page by page; `finish()` gives the table."""

    def __init__(
        self,
        primary_key: str | list[str] | None,
        partition: str,
        ingested_at: datetime,
        *,
        spill_dir: Path | None = None,
        spill_rows: int = SPILL_ROWS,
    ):
        """With `spill_dir`, memory stays bounded: every `spill_rows` rows go to a Parquet part
        there, and `finish()` streams the parts into the table (see NormalizedTable.lazy)."""
        keys = [primary_key] if isinstance(primary_key, str) else list(primary_key or [])
        # A dotted key (`customer.id`) names its flattened column (`customer__id`).
        self.primary_key = [k.replace(".", SEPARATOR) for k in keys]
        self.partition = partition
        self.ingested_at = _utc(ingested_at)
        self._schema: dict[str, DType] = {}
        self._pending: list[pl.DataFrame] = []
        self._batches: list[pl.DataFrame] = []
        self._widened: dict[tuple[str, str, str], None] = {}
        self._fetched = 0
        self._spill_dir = spill_dir
        self._spill_rows = spill_rows
        self._parts: list[Path] = []
        self._part_rows: list[int] = []
        self._spilled_rows = 0
        self._mem_rows = 0  # rows in `_pending` and `_batches`

    @property
    def fetched(self) -> int:
        return self._fetched

    def add(
        self,
        records: list[dict[str, Any]],
        parent: dict[str, Any] | None = None,
        *,
        frame: "PageFrame | None" = None,
    ) -> None:
        """Add one page of records; `parent` holds a child endpoint's placeholder values.
        `frame` is `page_table(records, parent)` when the caller made it already (in a fetch
        thread, say)."""
        self._fetched += len(records)
        if not records:
            return
        df, widened = frame if frame is not None else page_table(records, parent)
        for item in widened:
            self._widened[item] = None
        if df.width == 0:  # records without any field: nothing to store
            return
        self._absorb(df)

    def _note(self, column: str, before: DType, after: DType) -> None:
        if before != after and not _untyped(before):
            self._widened[(column, str(before), str(after))] = None

    def _absorb(self, df: pl.DataFrame) -> None:
        schema = self._schema
        for name, page_dtype in df.schema.items():
            # lists of objects are JSON text by design: not a widening
            dtype = pl.String if _holds_struct(page_dtype) else page_dtype
            current = schema.get(name)
            if current is None:
                schema[name] = dtype
            elif current != dtype:
                wide = widen(current, dtype)
                self._note(name, current, wide)
                self._note(name, dtype, wide)
                schema[name] = wide
        self._pending.append(df)
        self._mem_rows += df.height
        if self._spill_dir is not None and self._mem_rows >= self._spill_rows:
            self._spill()
        elif len(self._pending) >= COMPACT_PAGES:
            self._batches.append(_concat(self._pending, schema))
            self._pending = []

    def _spill(self) -> None:
        """Write what is in memory as one Parquet part (under the schema known so far)."""
        assert self._spill_dir is not None
        if self._pending:
            self._batches.append(_concat(self._pending, self._schema))
            self._pending = []
        if not self._batches:
            return
        df = _concat(self._batches, self._schema)
        self._batches = []
        self._mem_rows = 0
        self._spill_dir.mkdir(parents=True, exist_ok=True)
        part = self._spill_dir / f"part-{len(self._parts):05d}.parquet"
        df.write_parquet(part, compression="lz4")
        self._parts.append(part)
        self._part_rows.append(df.height)
        self._spilled_rows += df.height

    def finish(self) -> NormalizedTable:
        """The deduplicated table with `_partition` and `_ingested_at`."""
        if self._parts:
            self._spill()
            return self._finish_spilled()
        if self._pending:
            self._batches.append(_concat(self._pending, self._schema))
        frames, self._batches, self._pending = self._batches, [], []
        df = _concat(frames, self._schema).select(list(self._schema)) if frames else pl.DataFrame()
        received = df.height
        duplicates = null_keys = 0
        if self.primary_key and received:
            missing = [k for k in self.primary_key if k not in df.columns]
            if missing:
                raise FetchError(
                    f"primary key field(s) {missing} are in none of the {received} records of "
                    f"partition {self.partition}; fix `primary_key` in the sources file "
                    f"(columns seen: {', '.join(df.columns[:20])})"
                )
            keyed = pl.all_horizontal(pl.col(k).is_not_null() for k in self.primary_key)
            null_keys = df.select((~keyed).sum()).item()
            if null_keys:
                df = pl.concat(
                    [
                        df.filter(keyed).unique(self.primary_key, keep="last", maintain_order=True),
                        df.filter(~keyed),
                    ]
                )
            else:
                df = df.unique(self.primary_key, keep="last", maintain_order=True)
            duplicates = received - df.height
        df = self._stamp(df)
        return NormalizedTable(
            df=df,
            fetched=self._fetched,
            records=df.height,
            duplicates=duplicates,
            widened=self._widened_list(),
            null_keys=null_keys,
        )

    def _stamp(self, frame: FrameT) -> FrameT:
        """`_partition` and `_ingested_at` added to a table (eager or lazy)."""
        return frame.with_columns(
            pl.lit(self.partition, dtype=pl.String).alias(PARTITION_COLUMN),
            pl.lit(self.ingested_at, dtype=INGESTED_AT_DTYPE).alias(INGESTED_AT_COLUMN),
        )

    def _widened_list(self) -> list[dict[str, str]]:
        return [{"column": c, "from": a, "to": b} for c, a, b in self._widened]

    # long: the steps of finishing a spilled table share the parts list and must run in this order;
    # each is commented
    def _finish_spilled(self) -> NormalizedTable:
        """The same table as `finish()`, streamed from the parts: only the key columns (and a
        row index) are ever whole in memory, and deduplication works part by part."""
        target = self._schema
        frames = []
        for part in self._parts:
            exprs = []
            for name, dtype in pl.read_parquet_schema(part).items():
                want = target[name]
                if dtype == want:
                    continue
                if want == pl.String and dtype.is_nested():
                    exprs.append(json_text(pl.col(name)).alias(name))
                else:
                    exprs.append(pl.col(name).cast(want))
            lf = pl.scan_parquet(part)
            frames.append(lf.with_columns(exprs) if exprs else lf)
        received = self._spilled_rows
        duplicates = null_keys = 0
        if self.primary_key:
            missing = [k for k in self.primary_key if k not in target]
            if missing:
                raise FetchError(
                    f"primary key field(s) {missing} are in none of the {received} records of "
                    f"partition {self.partition}; fix `primary_key` in the sources file"
                )
            # Part by part: a row index over the concatenation would defeat the projection
            # and read every column of every part.
            keys = (
                pl.concat(
                    [
                        f.select(pl.col(k) for k in self.primary_key if k in f.collect_schema())
                        for f in frames
                    ],
                    how="diagonal",
                )
                .collect()
                .with_row_index("_row")
            )
            keyed = pl.all_horizontal(pl.col(k).is_not_null() for k in self.primary_key)
            # The last row of each key, found by sorting rather than hashing: a hash `unique`
            # over a million keys took ~150 MB; the sort holds a few copies of the key columns.
            ordered = keys.filter(keyed).sort([*self.primary_key, "_row"])
            is_last = pl.any_horizontal(pl.col(k) != pl.col(k).shift(-1) for k in self.primary_key)
            kept = ordered.filter(is_last.fill_null(True)).select("_row")
            nulls = keys.filter(~keyed).select("_row")
            del keys, ordered
            null_keys = nulls.height
            duplicates = received - kept.height - null_keys
            if duplicates:
                # Each part keeps its own rows that survived: a join per part, bounded by the
                # part's size, never one over the whole table.
                keep = pl.concat([kept, nulls]).sort("_row")
                start = 0
                for i, rows in enumerate(self._part_rows):
                    mine = keep.filter(pl.col("_row").is_between(start, start + rows - 1))
                    frames[i] = (
                        frames[i]
                        .with_row_index("_row", offset=start)
                        .join(mine.lazy(), on="_row", how="semi", maintain_order="left")
                        .drop("_row")
                    )
                    start += rows

        def finish(lf: pl.LazyFrame) -> pl.LazyFrame:
            return self._stamp(lf.select(list(target)))

        # The preview: the first rows, from the first parts only.
        head: list[pl.DataFrame] = []
        for frame in frames:
            head.append(frame.head(PREVIEW_ROWS).collect())
            if sum(h.height for h in head) >= PREVIEW_ROWS:
                break
        columns = pl.DataFrame(schema=target)  # a column first seen in a later part is null
        preview = finish(pl.concat([columns, *head], how="diagonal").lazy()).head(PREVIEW_ROWS)
        return NormalizedTable(
            df=preview.collect(),
            fetched=self._fetched,
            records=received - duplicates,
            duplicates=duplicates,
            widened=self._widened_list(),
            null_keys=null_keys,
            lazy=finish(pl.concat(frames, how="diagonal")),
            spill_dir=self._spill_dir,
        )


def build_table(
    pages: Iterable[tuple[list[dict[str, Any]], dict[str, Any] | None]],
    primary_key: str | list[str] | None,
    partition: str,
    ingested_at: datetime,
) -> NormalizedTable:
    """Convenience: a TableBuilder fed with (records, parent) pairs."""
    builder = TableBuilder(primary_key, partition, ingested_at)
    for records, parent in pages:
        builder.add(records, parent)
    return builder.finish()


def archived_records(
    reader: ArchiveReader, records_path: str | None
) -> Iterator[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """(manifest entry, records) of every archived page, found by the live run's own rule
    (`records_in`). Error answers (status >= 400, e.g. a child's 404) and empty bodies hold no
    records and are skipped."""
    for entry, body in reader.iter_pages():
        if int(entry.get("status") or 200) >= 400 or not body.strip():
            continue
        where = f"{reader.dir / entry['file']} ({entry.get('url')})"
        try:
            yield entry, records_in(orjson.loads(body), records_path)
        except orjson.JSONDecodeError as exc:
            raise FetchError(f"{where}: body is not JSON: {exc}") from None
        except NotRecords as exc:
            raise FetchError(f"{where}: {exc}") from None


def normalize_archive(
    reader: ArchiveReader,
    records_path: str | None,
    primary_key: str | list[str] | None,
    partition: str,
    ingested_at: datetime,
) -> NormalizedTable:
    """Rebuild a partition's table from its raw archive alone (see `archived_records`)."""
    builder = TableBuilder(primary_key, partition, ingested_at)
    for entry, records in archived_records(reader, records_path):
        builder.add(records, entry.get("parent"))
    return builder.finish()
