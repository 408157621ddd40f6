"""read_table: the union of a table's partitions, and the newest row per primary key."""

from datetime import UTC, datetime
from pathlib import Path

import orjson
import polars as pl
import pytest

from api_assets.pipeline.normalize import TableBuilder
from api_assets.storage.layout import DataLayout
from api_assets.storage.tables import read_table, write_table

S, E = "shop", "products"


def publish(
    layout: DataLayout,
    partition: str,
    records: list[dict],
    ingested_at: datetime,
    primary_key: list[str] | None = None,
) -> None:
    key = ["id"] if primary_key is None else primary_key
    builder = TableBuilder(key, partition, ingested_at)
    builder.add(records)
    meta = {"api_assets": orjson.dumps({"primary_key": key, "partition": partition}).decode()}
    write_table(builder.finish().df, layout.table_path(S, E, partition), meta)


def at(day: int, hour: int = 3) -> datetime:
    return datetime(2026, 11, day, hour, tzinfo=UTC)


def test_union_of_partitions_with_different_columns(tmp_path: Path) -> None:
    layout = DataLayout(tmp_path)
    publish(layout, "2026-11-01", [{"id": 1, "price": 10}, {"id": 2, "price": 11}], at(1))
    publish(layout, "2026-11-02", [{"id": 3, "price": "12.5", "color": "red"}], at(2))
    publish(layout, "2026-11-03", [{"id": 4, "meta": {"a": True}}], at(3))

    lf = read_table(S, E, data_dir=tmp_path)
    assert isinstance(lf, pl.LazyFrame)
    df = lf.collect().sort("id")
    assert df["id"].to_list() == [1, 2, 3, 4]
    assert df["_partition"].to_list() == ["2026-11-01", "2026-11-01", "2026-11-02", "2026-11-03"]
    assert df["color"].to_list() == [None, None, "red", None]
    assert df["meta__a"].to_list() == [None, None, None, True]
    assert df.schema["price"] == pl.String  # an int partition and a string partition
    assert df["price"].to_list() == ["10", "11", "12.5", None]
    assert df.schema["_ingested_at"] == pl.Datetime("us", "UTC")


def test_current_is_the_newest_row_per_key(tmp_path: Path) -> None:
    layout = DataLayout(tmp_path)
    publish(layout, "2026-11-01", [{"id": 1, "v": "a"}, {"id": 2, "v": "b"}], at(1))
    publish(layout, "2026-11-02", [{"id": 1, "v": "a2"}, {"id": 3, "v": "c"}], at(2))
    # a backfill of an older partition, ingested last, holds the newest row of id 2
    publish(layout, "2026-10-31", [{"id": 2, "v": "b-backfilled"}], at(5))

    df = read_table(S, E, current=True, data_dir=tmp_path).collect().sort("id")
    assert dict(zip(df["id"], df["v"], strict=True)) == {1: "a2", 2: "b-backfilled", 3: "c"}
    assert read_table(S, E, data_dir=tmp_path).collect().height == 5


def test_current_with_a_composite_key(tmp_path: Path) -> None:
    layout = DataLayout(tmp_path)
    key = ["order_id", "line_no"]
    publish(layout, "2026-11-01", [{"order_id": 1, "line_no": 1, "q": 1}], at(1), key)
    publish(
        layout,
        "2026-11-02",
        [{"order_id": 1, "line_no": 1, "q": 5}, {"order_id": 2, "line_no": 1, "q": 7}],
        at(2),
        key,
    )
    df = read_table(S, E, current=True, data_dir=tmp_path).collect().sort("order_id")
    assert df.select("order_id", "line_no", "q").rows() == [(1, 1, 5), (2, 1, 7)]


def test_data_dir_defaults_to_the_environment(tmp_path: Path, monkeypatch) -> None:
    publish(DataLayout(tmp_path), "2026-11-01", [{"id": 1}], at(1))
    monkeypatch.setenv("API_ASSETS_DATA_DIR", str(tmp_path))
    assert read_table(S, E).collect()["id"].to_list() == [1]


def test_temp_files_are_not_read(tmp_path: Path) -> None:
    layout = DataLayout(tmp_path)
    publish(layout, "2026-11-01", [{"id": 1}], at(1))
    directory = layout.table_dir(S, E)
    (directory / ".2026-11-02.parquet.tmp-1-abc").write_bytes(b"half written")
    assert read_table(S, E, data_dir=tmp_path).collect()["id"].to_list() == [1]


def test_missing_table_and_missing_key_are_explained(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="shop/products"):
        read_table(S, E, data_dir=tmp_path)
    publish(DataLayout(tmp_path), "2026-11-01", [{"id": 1}], at(1), primary_key=[])
    assert read_table(S, E, data_dir=tmp_path).collect().height == 1
    with pytest.raises(ValueError, match="primary key"):
        read_table(S, E, current=True, data_dir=tmp_path)


def test_list_in_one_partition_scalar_in_another(tmp_path: Path) -> None:
    layout = DataLayout(tmp_path)
    publish(layout, "2026-11-01", [{"id": 1, "code": [1, 2]}], at(1))
    publish(layout, "2026-11-02", [{"id": 2, "code": 7}], at(2))
    df = read_table(S, E, data_dir=tmp_path).collect().sort("id")
    assert df["code"].to_list() == ["[1,2]", "7"]


def test_current_keeps_rows_whose_key_is_null(tmp_path: Path) -> None:
    layout = DataLayout(tmp_path)
    publish(layout, "2026-11-01", [{"id": None, "v": 1}, {"id": 1, "v": 2}], at(1))
    publish(layout, "2026-11-02", [{"id": None, "v": 3}, {"id": 1, "v": 4}], at(2))
    df = read_table(S, E, current=True, data_dir=tmp_path).collect()
    assert sorted(df["v"].to_list()) == [1, 3, 4]
