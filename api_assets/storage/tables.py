"""The published tables: `read_table(source, endpoint)`, and the Parquet files they are made of
(`write_table` writes one atomically, `read_table_metadata` reads what it was committed with).

A table is every `tables/S/E/*.parquet` file, one per partition, read as one with
`pl.concat([pl.scan_parquet(f) for f in files], how="diagonal_relaxed")`: partitions written
while the API evolved may have different columns (missing ones read as null) or wider types.
"""

from pathlib import Path
from typing import Any

import orjson
import polars as pl

from api_assets.storage.durable import replacing
from api_assets.storage.layout import DataLayout, data_root

SEPARATOR = "__"  # nested fields flattened as `parent__child`
METADATA_KEY = "api_assets"  # the Parquet key-value metadata of a committed table file
PARTITION_COLUMN = "_partition"
INGESTED_AT_COLUMN = "_ingested_at"


def table_files(source: str, endpoint: str, data_dir: str | Path | None = None) -> list[Path]:
    """The Parquet files of a table, oldest partition first (temp files never match)."""
    layout = DataLayout(Path(data_dir).resolve() if data_dir is not None else data_root())
    directory = layout.table_dir(source, endpoint)
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.glob("*.parquet") if not p.name.startswith("."))


def primary_key_of(files: list[Path]) -> list[str]:
    """The primary key stored in the newest file's metadata ([] when none is stored)."""
    for path in reversed(files):
        key = read_table_metadata(path).get("primary_key")
        if key:
            keys = [key] if isinstance(key, str) else list(key)
            return [k.replace(".", SEPARATOR) for k in keys]  # dotted keys name flat columns
    return []


def read_table(
    source: str,
    endpoint: str,
    *,
    current: bool = False,
    data_dir: str | Path | None = None,
) -> pl.LazyFrame:
    """Every partition of `S/E` as one LazyFrame. With `current=True`, only the newest row per
    primary key (newest by `_ingested_at`, then `_partition`).

    Raises FileNotFoundError when the table has no file yet, ValueError when `current=True` and
    the table declares no primary key.
    """
    files = table_files(source, endpoint, data_dir)
    if not files:
        root = Path(data_dir).resolve() if data_dir is not None else data_root()
        raise FileNotFoundError(
            f"no table for {source}/{endpoint} under {root / 'tables' / source / endpoint}: "
            "materialize the asset first, or point API_ASSETS_DATA_DIR (or data_dir=) at the "
            "data root that holds it"
        )
    frames = _reconcile([pl.scan_parquet(f) for f in files], files)
    lf = frames[0] if len(frames) == 1 else pl.concat(frames, how="diagonal_relaxed")
    if not current:
        return lf
    key = primary_key_of(files)
    if not key:
        raise ValueError(
            f"{source}/{endpoint} declares no primary key, so there is no 'newest row per key'; "
            "read it with current=False, or give the endpoint a `primary_key`"
        )
    newest_first = lf.sort([INGESTED_AT_COLUMN, PARTITION_COLUMN], maintain_order=True)
    keyed = pl.all_horizontal(pl.col(k).is_not_null() for k in key)
    # rows whose key has a null are not the same record: all of them are kept
    return pl.concat(
        [
            newest_first.filter(keyed).unique(subset=key, keep="last", maintain_order=True),
            newest_first.filter(~keyed),
        ]
    )


def _reconcile(frames: list[pl.LazyFrame], files: list[Path]) -> list[pl.LazyFrame]:
    """Make partitions concatenable where `diagonal_relaxed` alone cannot: a column that is a
    list in one partition and a scalar in another becomes JSON text where it is a list (the
    rule normalization applies within a partition)."""
    if len(frames) < 2:
        return frames
    schemas = [pl.read_parquet_schema(f) for f in files]
    kinds: dict[str, set[bool]] = {}
    for schema in schemas:
        for name, dtype in schema.items():
            if dtype != pl.Null:
                kinds.setdefault(name, set()).add(dtype.is_nested())
    mixed = {name for name, seen in kinds.items() if len(seen) == 2}
    if not mixed:
        return frames
    out = []
    for frame, schema in zip(frames, schemas, strict=True):
        exprs = [
            json_text(pl.col(name)).alias(name)
            for name in mixed
            if name in schema and schema[name].is_nested()
        ]
        out.append(frame.with_columns(exprs) if exprs else frame)
    return out


def json_text(expr: pl.Expr) -> pl.Expr:
    """A nested (list or struct) column as JSON text, null staying null."""
    encoded = (
        pl.struct(expr.alias("v"))
        .struct.json_encode()
        .str.strip_prefix('{"v":')
        .str.strip_suffix("}")
    )
    return pl.when(expr.is_null()).then(pl.lit(None, dtype=pl.String)).otherwise(encoded)


def write_table(df: pl.DataFrame | pl.LazyFrame, path: Path, metadata: dict[str, str]) -> None:
    """Write `df` to `path` as Parquet with key-value `metadata`, atomically: a hidden temp
    file in the same directory (never matched by `*.parquet`), fsync, `os.replace`. A LazyFrame
    is streamed (`sink_parquet`), never collected."""
    with replacing(path) as tmp:
        if isinstance(df, pl.LazyFrame):
            df.sink_parquet(tmp, metadata=dict(metadata))
        else:
            df.write_parquet(tmp, metadata=dict(metadata))


def read_table_metadata(path: str | Path) -> dict[str, Any]:
    """The `api_assets` JSON stored in a table file's metadata ({} when absent)."""
    raw = pl.read_parquet_metadata(path).get(METADATA_KEY)
    if not raw:
        return {}
    value = orjson.loads(raw)
    return value if isinstance(value, dict) else {}
