"""Normalization: records → one Polars DataFrame per partition."""

from datetime import UTC, datetime
from pathlib import Path

import orjson
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from api_assets.errors import FetchError
from api_assets.pipeline import normalize
from api_assets.pipeline.normalize import TableBuilder, normalize_archive
from api_assets.records import NotRecords, records_in
from api_assets.storage.archive import ArchiveReader, ArchiveWriter
from api_assets.storage.layout import DataLayout
from api_assets.storage.tables import read_table_metadata, write_table
from api_assets_tests.engine.datafixtures import json_records, make_page, nested_record

P = "2026-11-28"
AT = datetime(2026, 11, 28, 4, 0, tzinfo=UTC)


def build(pages, primary_key=None, parent=None):
    builder = TableBuilder(primary_key, P, AT)
    for records in pages:
        builder.add(records, parent)
    return builder.finish()


def test_nested_objects_flatten_and_scalars_keep_their_names() -> None:
    table = build([[nested_record(1), nested_record(2)]], "id")
    df = table.df
    assert df.columns[:4] == ["id", "name", "price", "active"]
    assert "customer__id" in df.columns
    assert "customer__address__city" in df.columns
    assert "customer" not in df.columns
    assert df.schema["id"] == pl.Int64
    assert df.schema["price"] == pl.Float64
    assert df.schema["active"] == pl.Boolean
    assert df["customer__address__city"].to_list() == ["Lyon", "Lyon"]
    assert df.schema["note"] == pl.Null


def test_lists_of_scalars_are_list_columns_and_lists_of_objects_json_text() -> None:
    records = [nested_record(1), nested_record(3)]
    df = build([records], "id").df
    assert df.schema["tags"] == pl.List(pl.String)
    assert df["tags"].to_list() == [["a", "b"], []]
    assert df.schema["lines"] == pl.String
    decoded = [orjson.loads(text) for text in df["lines"].to_list()]
    # missing keys of list items read back as null; every value survives
    assert decoded[0] == [
        {"sku": "s1", "qty": 1, "note": None},
        {"sku": "x", "qty": 2, "note": None},
    ]


def test_lists_of_objects_varying_across_pages_survive() -> None:
    pages = [
        [{"id": 1, "lines": [{"x": 1}]}],
        [{"id": 2, "lines": [{"x": 2, "y": [1, 2]}]}],
        [{"id": 3, "lines": []}],
        [{"id": 4, "lines": [{"x": "text", "z": {"k": True}}]}],
        [{"id": 5, "lines": [1, 2]}],
    ]
    df = build(pages, "id").df
    assert df.schema["lines"] == pl.String
    values = [orjson.loads(v) for v in df["lines"].to_list()]
    assert values[0] == [{"x": 1}]
    assert values[1] == [{"x": 2, "y": [1, 2]}]
    assert values[2] == []
    assert values[3] == [{"x": "text", "z": {"k": True}}]
    assert values[4] == [1, 2]


def test_int_then_string_across_pages_widens_to_string() -> None:
    table = build([[{"id": 1, "code": 10}], [{"id": 2, "code": "A-7"}]], "id")
    assert table.df.schema["code"] == pl.String
    assert table.df["code"].to_list() == ["10", "A-7"]
    assert {"column": "code", "from": "Int64", "to": "String"} in table.widened


def test_int_then_float_widens_to_float() -> None:
    table = build([[{"id": 1, "amount": 3}], [{"id": 2, "amount": 2.5}]], "id")
    assert table.df.schema["amount"] == pl.Float64
    assert table.df["amount"].to_list() == [3.0, 2.5]
    assert table.widened == [{"column": "amount", "from": "Int64", "to": "Float64"}]


def test_null_only_then_typed_is_not_a_widening() -> None:
    table = build([[{"id": 1, "x": None, "l": []}], [{"id": 2, "x": 5, "l": [1]}]], "id")
    assert table.df.schema["x"] == pl.Int64
    assert table.df.schema["l"] == pl.List(pl.Int64)
    assert table.widened == []


def test_object_and_scalar_in_one_page_do_not_crash() -> None:
    records = [{"id": 1, "a": {"b": 1}}, {"id": 2, "a": "flat"}, {"id": 3, "n": 2**80}]
    table = build([records, [{"id": 4, "n": 2**130}]], "id")
    assert table.df["a__b"].to_list() == [1, None, None, None]
    assert table.df["a"].to_list() == [None, "flat", None, None]
    # beyond Int64: Int128 while it fits, then text
    assert table.df["n"].to_list() == [None, None, str(2**80), str(2**130)]
    assert {"column": "n", "from": "Int128", "to": "String"} in table.widened


def test_dedup_keeps_last_and_counts_duplicates() -> None:
    pages = [
        [{"id": 1, "v": "old"}, {"id": 2, "v": "two"}],
        [{"id": 3, "v": "three"}, {"id": 1, "v": "new"}],
        [{"id": 1, "v": "newest"}],
    ]
    table = build(pages, "id")
    rows = {r["id"]: r["v"] for r in table.df.iter_rows(named=True)}
    assert rows == {1: "newest", 2: "two", 3: "three"}
    assert (table.fetched, table.records, table.duplicates) == (5, 3, 2)


def test_without_primary_key_nothing_is_deduplicated() -> None:
    table = build([[{"id": 1}, {"id": 1}]], None)
    assert (table.records, table.duplicates) == (2, 0)


def test_null_keys_are_kept() -> None:
    table = build([[{"id": None, "v": 1}, {"id": None, "v": 2}, {"id": 1}, {"id": 1}]], "id")
    assert table.records == 3
    assert table.null_keys == 2
    assert table.duplicates == 1


def test_missing_primary_key_is_an_error() -> None:
    with pytest.raises(FetchError, match="primary key"):
        build([[{"other": 1}]], "id")


def test_dotted_primary_key_names_the_flat_column() -> None:
    table = build([[{"ref": {"id": 1}, "v": 1}], [{"ref": {"id": 1}, "v": 2}]], "ref.id")
    assert table.df["v"].to_list() == [2]
    assert table.duplicates == 1


def test_parent_values_become_columns_and_part_of_the_key() -> None:
    builder = TableBuilder(["order_id", "line_no"], P, AT)
    builder.add([{"line_no": 1, "sku": "a"}, {"line_no": 2, "sku": "b"}], {"order_id": 10})
    builder.add([{"line_no": 1, "sku": "c"}], {"order_id": 11})
    builder.add([{"line_no": 1, "sku": "a2", "order_id": 999}], {"order_id": 10})
    table = builder.finish()
    df = table.df
    assert df.columns[0] == "order_id"
    assert df.schema["order_id"] == pl.Int64
    rows = sorted((r["order_id"], r["line_no"], r["sku"]) for r in df.iter_rows(named=True))
    assert rows == [(10, 1, "a2"), (10, 2, "b"), (11, 1, "c")]
    assert table.duplicates == 1


def test_partition_and_ingested_at_columns() -> None:
    naive = datetime(2026, 11, 28, 4, 0)
    builder = TableBuilder("id", P, naive)
    builder.add([{"id": 1}])
    df = builder.finish().df
    assert df.schema["_partition"] == pl.String
    assert df.schema["_ingested_at"] == pl.Datetime("us", "UTC")
    assert df["_partition"].to_list() == [P]
    assert df["_ingested_at"].to_list() == [datetime(2026, 11, 28, 4, 0, tzinfo=UTC)]


def test_empty_partition_has_the_added_columns() -> None:
    table = build([[], []], "id")
    assert table.records == 0
    assert table.df.schema == pl.Schema(
        {"_partition": pl.String, "_ingested_at": pl.Datetime("us", "UTC")}
    )


def test_compaction_gives_the_same_table(monkeypatch) -> None:
    pages = [[{"id": i, "v": i if i < 5 else f"s{i}", "l": [{"k": i}]}] for i in range(9)]
    pages.append([{"id": 0, "v": 1.5, "l": [{"k": "x"}]}])
    whole = build(pages, "id")
    monkeypatch.setattr(normalize, "COMPACT_PAGES", 2)
    compacted = build(pages, "id")
    assert_frame_equal(whole.df, compacted.df)
    assert whole.widened == compacted.widened


def test_records_are_found_by_one_rule() -> None:
    """The rule the live run and a rebuild from the archive share (`records.records_in`): the
    lenient rebuild-only variant (scalars wrapped as `{"value": ...}`, `null` as no records)
    is gone, so a rebuild can never find other records than the run did."""
    assert records_in([{"a": 1}], None) == [{"a": 1}]
    assert records_in({"a": 1}, None) == [{"a": 1}]
    assert records_in({"data": {"items": [{"a": 1}]}}, "data.items") == [{"a": 1}]
    assert records_in({"data": {"id": 3}}, "data") == [{"id": 3}]
    assert records_in({"pages": [{"rows": [{"a": 1}]}]}, "pages.0.rows") == [{"a": 1}]
    assert records_in({"data": []}, "data") == []
    for body, path in [
        ({"data": None}, "data"),
        ({"data": [1, "x"]}, "data"),
        ({"other": []}, "data"),
        ({"data": 5}, "data.items"),
        ({"data": 5}, "data"),
        ({"error": "nope"}, "data"),
        ([{"a": 1}, 2], None),
    ]:
        with pytest.raises(NotRecords):
            records_in(body, path)


def test_normalize_archive_equals_the_direct_build(tmp_path: Path) -> None:
    layout = DataLayout(tmp_path)
    pages = [
        make_page([nested_record(i) for i in range(5)], index=0, parent={"order_id": 1}),
        make_page([nested_record(3), {"id": 9, "name": 5}], index=1, parent={"order_id": 2}),
        make_page([], index=2, parent={"order_id": 3}),
        make_page(
            [], index=3, status=404, parent={"order_id": 4}, records_path="error", extra={"x": 1}
        ),
    ]
    writer = ArchiveWriter(layout, "shop", "lines", P, "r1")
    direct = TableBuilder(["order_id", "id"], P, AT)
    for page in pages:
        writer.write(page)
        if page.status < 400:
            direct.add(page.records, page.parent)
    writer.commit()
    expected = direct.finish()
    rebuilt = normalize_archive(
        ArchiveReader(layout, "shop", "lines", P), "data", ["order_id", "id"], P, AT
    )
    assert_frame_equal(expected.df, rebuilt.df)
    assert (rebuilt.fetched, rebuilt.duplicates, rebuilt.widened) == (
        expected.fetched,
        expected.duplicates,
        expected.widened,
    )


def test_normalize_archive_refuses_a_body_without_its_records(tmp_path: Path) -> None:
    layout = DataLayout(tmp_path)
    writer = ArchiveWriter(layout, "shop", "items", P, "r1")
    writer.write(make_page([{"id": 1}], records_path="items"))
    writer.commit()
    with pytest.raises(FetchError, match="no `data`"):
        normalize_archive(ArchiveReader(layout, "shop", "items", P), "data", "id", P, AT)


def test_write_table_is_atomic_and_keeps_metadata(tmp_path: Path) -> None:
    path = tmp_path / "tables" / "shop" / "items" / f"{P}.parquet"
    first = build([[nested_record(1)]], "id").df
    meta = {"api_assets": orjson.dumps({"primary_key": ["id"], "run_id": "r1"}).decode()}
    write_table(first, path, meta)
    second = build([[nested_record(2), nested_record(3)]], "id").df
    write_table(second, path, {"api_assets": orjson.dumps({"primary_key": ["id"]}).decode()})
    assert_frame_equal(pl.read_parquet(path), second)
    assert read_table_metadata(path) == {"primary_key": ["id"]}
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left


def test_write_table_failure_keeps_the_old_file(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / f"{P}.parquet"
    write_table(pl.DataFrame({"id": [1]}), path, {})

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(pl.DataFrame, "write_parquet", boom)
    with pytest.raises(OSError):
        write_table(pl.DataFrame({"id": [2]}), path, {})
    monkeypatch.undo()
    assert pl.read_parquet(path)["id"].to_list() == [1]
    assert [p.name for p in tmp_path.iterdir()] == [path.name]
    assert read_table_metadata(path) == {}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    pages=st.lists(
        st.lists(st.tuples(st.integers(0, 6), json_records), max_size=6), min_size=1, max_size=4
    )
)
def test_any_json_pages_normalize_without_crash(pages) -> None:
    builder = TableBuilder("id", P, AT)
    seen: dict[int, int] = {}
    fetched = 0
    for page in pages:
        records = [{**record, "id": key} for key, record in page]
        builder.add(records)
        fetched += len(records)
        for key, _ in page:
            seen[key] = seen.get(key, 0) + 1
    table = builder.finish()
    assert table.fetched == fetched
    assert table.records == len(seen)
    assert table.duplicates == fetched - len(seen)
    if seen:
        assert sorted(table.df["id"].to_list()) == sorted(seen)
    assert table.df.schema["_partition"] == pl.String


def test_a_spilled_build_equals_the_in_memory_build(tmp_path: Path) -> None:
    """Past `spill_rows` the builder streams from Parquet parts; the table is the same: widened
    types across parts, nested lists as JSON text, duplicates dropped (last wins), null keys kept."""
    pages = []
    for p in range(12):
        recs = []
        for i in range(25):
            rid = (p * 25 + i) % 260  # ids 0..259 then repeats: duplicates across parts
            recs.append(
                {
                    "id": rid if (p, i) != (3, 4) else None,
                    "n": rid if p < 6 else f"s{rid}",  # int in early parts, string later
                    "obj": {"a": p, "b": [1, 2]},
                    "items": [{"k": i}],
                    "v": p,
                }
            )
        pages.append(recs)
    at = datetime(2026, 11, 28, tzinfo=UTC)
    memory = TableBuilder("id", "2026-11-28", at)
    spilled = TableBuilder("id", "2026-11-28", at, spill_dir=tmp_path / "spill", spill_rows=60)
    for recs in pages:
        memory.add(recs)
        spilled.add(recs)
    a, b = memory.finish(), spilled.finish()
    assert b.lazy is not None and len(list((tmp_path / "spill").glob("part-*.parquet"))) > 1
    b.write(tmp_path / "t.parquet", {"api_assets": "{}"})
    got = pl.read_parquet(tmp_path / "t.parquet")
    order = ["id", "v"]
    assert got.sort(order, nulls_last=True).equals(a.df.sort(order, nulls_last=True))
    assert (b.records, b.duplicates, b.null_keys) == (a.records, a.duplicates, a.null_keys)
    assert b.df.height == min(100, a.records) and b.df.columns == a.df.columns
    b.cleanup()
    assert not (tmp_path / "spill").exists()


def test_a_spilled_build_without_duplicates_streams_every_part(tmp_path: Path) -> None:
    """No key repeats: the parts stream straight into the table (no join). A column first seen
    in a later part is in the preview too (null there), and a composite key is honoured."""
    pages = [
        [{"a": p, "b": i, "v": f"{p}-{i}", **({"late": 1.5} if p >= 5 else {})} for i in range(30)]
        for p in range(8)
    ]
    at = datetime(2026, 11, 28, tzinfo=UTC)
    memory = TableBuilder(["a", "b"], "2026-11-28", at)
    spilled = TableBuilder(["a", "b"], "2026-11-28", at, spill_dir=tmp_path / "s", spill_rows=50)
    for recs in pages:
        memory.add(recs)
        spilled.add(recs)
    a, b = memory.finish(), spilled.finish()
    assert b.lazy is not None and b.duplicates == 0 and b.records == 240
    b.write(tmp_path / "t.parquet", {"api_assets": "{}"})
    got = pl.read_parquet(tmp_path / "t.parquet")
    assert got.equals(a.df)  # same rows in the same order
    assert b.df.equals(a.df.head(100))
    # the same pages again under other keys: every second record repeats, the last one wins
    again = TableBuilder(["a", "b"], "2026-11-28", at, spill_dir=tmp_path / "t", spill_rows=50)
    for recs in pages:
        again.add(recs)
    again.add([{"a": 0, "b": i, "v": "new"} for i in range(0, 30, 2)])
    c = again.finish()
    assert (c.records, c.duplicates) == (240, 15)
    c.write(tmp_path / "u.parquet", {"api_assets": "{}"})
    table = pl.read_parquet(tmp_path / "u.parquet")
    assert table.filter(pl.col("a") == 0, pl.col("b") % 2 == 0)["v"].unique().to_list() == ["new"]
    assert table.height == 240
