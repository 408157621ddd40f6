"""Schema snapshots: structure of the records, storage, and drift between two snapshots."""

from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from api_assets.pipeline.schema import (
    FieldSchema,
    SchemaBuilder,
    SchemaSnapshot,
    changes_markdown,
    diff,
    page_tree,
    snapshot_of,
)
from api_assets.storage.layout import DataLayout
from api_assets_tests.engine.datafixtures import json_records, nested_record

S, E = "shop", "orders"
JSON_TYPES = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    type(None): "null",
    dict: "object",
    list: "array",
}


def snap(records: list[dict[str, Any]], partition: str = "2026-11-28") -> SchemaSnapshot:
    return snapshot_of(records, S, E, partition)


# --- a naive reference walker: the definition the fast builder must match ---------------------


def reference(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Visit every value, one at a time; `holders[path]` counts the objects that could hold
    the fields under `path` (records for top-level fields)."""
    seen: dict[str, dict[str, Any]] = {}
    holders: dict[str, int] = {"": len(records)}

    def visit(path: str, value: Any) -> None:
        s = seen.setdefault(path, {"types": set(), "count": 0, "null": False})
        s["types"].add(JSON_TYPES[type(value)])
        s["count"] += 1
        s["null"] |= value is None
        if isinstance(value, dict):
            holders[path] = holders.get(path, 0) + 1
            for key, v in value.items():
                visit(f"{path}.{key}", v)
        elif isinstance(value, list):
            for item in value:
                visit(f"{path}[]", item)

    for record in records:
        for key, value in record.items():
            visit(key, value)
    out = {}
    for path, s in seen.items():
        if path.endswith("[]"):
            nullable = s["null"]
        else:
            parent = path.rsplit(".", 1)[0] if "." in path else ""
            nullable = s["null"] or s["count"] < holders.get(parent, 0)
        out[path] = {"types": sorted(s["types"]), "nullable": nullable, "count": s["count"]}
    return out


@settings(max_examples=80, deadline=None)
@given(pages=st.lists(st.lists(json_records, max_size=6), max_size=4))
def test_builder_matches_the_reference_walk(pages) -> None:
    builder = SchemaBuilder()
    for page in pages:
        builder.add(page)
    snapshot = builder.finish(S, E, "2026-11-28")
    records = [r for page in pages for r in page]
    assert snapshot.records == len(records)
    assert {p: f.to_dict() for p, f in snapshot.fields.items()} == reference(records)


@settings(max_examples=80, deadline=None)
@given(pages=st.lists(st.lists(json_records, max_size=6), max_size=4))
def test_page_trees_merged_equal_the_walk(pages) -> None:
    """The engine walks each page in its fetch thread (`page_tree`) and merges the trees: the
    snapshot is the one a single walk gives."""
    walked, merged = SchemaBuilder(), SchemaBuilder()
    for page in pages:
        walked.add(page)
        merged.add(page, tree=page_tree(page))
    a, b = (x.finish(S, E, "2026-11-28") for x in (walked, merged))
    assert a.records == b.records
    assert {p: f.to_dict() for p, f in a.fields.items()} == {
        p: f.to_dict() for p, f in b.fields.items()
    }


def test_snapshot_paths_types_nullability_counts() -> None:
    records = [nested_record(1), nested_record(2), {"id": "x3", "customer": None}]
    fields = snap(records).fields
    assert fields["id"] == FieldSchema(["integer", "string"], False, 3)
    assert fields["name"] == FieldSchema(["string"], True, 2)  # absent from the third
    assert fields["customer"] == FieldSchema(["null", "object"], True, 3)
    assert fields["customer.address.city"] == FieldSchema(["string"], False, 2)
    assert fields["tags"] == FieldSchema(["array"], True, 2)
    assert fields["tags[]"] == FieldSchema(["string"], False, 4)  # items, not records
    assert fields["lines[]"] == FieldSchema(["object"], False, 4)
    assert fields["lines[].note"] == FieldSchema(["null"], True, 2)
    assert fields["lines[].qty"] == FieldSchema(["integer"], False, 4)
    assert fields["note"] == FieldSchema(["null"], True, 2)


def test_json_round_trip_and_storage(tmp_path: Path) -> None:
    layout = DataLayout(tmp_path)
    snapshot = snap([nested_record(1)])
    assert SchemaSnapshot.from_json(snapshot.to_json()) == snapshot
    path = snapshot.save(layout)
    assert path == layout.schema_path(S, E, "2026-11-28")
    assert SchemaSnapshot.load(layout, S, E, "2026-11-28") == snapshot
    assert SchemaSnapshot.load(layout, S, E, "2026-11-29") is None
    assert [p.name for p in path.parent.iterdir()] == ["2026-11-28.json"]


def test_previous_is_the_nearest_earlier_partition(tmp_path: Path) -> None:
    layout = DataLayout(tmp_path)
    for day, value in [("2026-11-20", 1), ("2026-11-25", "x"), ("2026-11-30", 2.5)]:
        snap([{"v": value}], day).save(layout)
    assert SchemaSnapshot.previous(layout, S, E, "2026-11-28").partition == "2026-11-25"
    assert SchemaSnapshot.previous(layout, S, E, "2026-11-25").partition == "2026-11-20"
    assert SchemaSnapshot.previous(layout, S, E, "2026-11-20") is None


def test_previous_of_current_is_the_replaced_version(tmp_path: Path) -> None:
    layout = DataLayout(tmp_path)
    assert SchemaSnapshot.previous(layout, S, E, "current") is None
    first = snap([{"v": 1}], "current")
    first.save(layout)
    second = snap([{"v": "x"}], "current")
    # before saving this run's snapshot: the last saved one
    assert SchemaSnapshot.previous(layout, S, E, "current") == first
    second.save(layout)
    # after saving: the version that save replaced, kept as current.prev.json
    assert SchemaSnapshot.previous(layout, S, E, "current", after_save=True) == first
    assert SchemaSnapshot.load(layout, S, E, "current") == second
    assert layout.schema_path(S, E, "current").with_name("current.prev.json").is_file()


def kinds(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    return {(c.path, c.kind, c.severity) for c in diff(snap(before), snap(after))}


def test_field_added_is_warn() -> None:
    assert kinds([{"a": 1}], [{"a": 1, "b": "x"}]) == {("b", "added", "WARN")}


def test_field_removed_is_error() -> None:
    assert kinds([{"a": 1, "b": "x"}], [{"a": 1}]) == {("b", "removed", "ERROR")}


def test_type_change_is_error() -> None:
    assert kinds([{"a": 1}], [{"a": "1"}]) == {("a", "retyped", "ERROR")}
    assert kinds([{"a": {"b": 1}}], [{"a": [1]}]) == {
        ("a", "retyped", "ERROR"),
        ("a.b", "removed", "ERROR"),
        ("a[]", "added", "WARN"),
    }


def test_integer_to_number_is_warn() -> None:
    assert kinds([{"a": 1}], [{"a": 1.5}]) == {("a", "retyped", "WARN")}
    assert kinds([{"a": 1}], [{"a": 1}, {"a": 2.5}]) == {("a", "retyped", "WARN")}


def test_null_only_to_typed_is_warn() -> None:
    assert kinds([{"a": None}], [{"a": "x"}]) == {
        ("a", "retyped", "WARN"),
        ("a", "nullability", "WARN"),
    }


def test_nullability_change_is_warn() -> None:
    assert kinds([{"a": 1}], [{"a": 1}, {"a": None}]) == {("a", "nullability", "WARN")}
    assert kinds([{"a": 1, "b": 1}], [{"a": 1, "b": 1}, {"b": 2}]) == {("a", "nullability", "WARN")}


def test_no_previous_snapshot_no_changes() -> None:
    assert diff(None, snap([{"a": 1}])) == []


def test_changes_ordered_errors_first_and_rendered_as_markdown() -> None:
    changes = diff(snap([{"z": 1, "a|b": 1}]), snap([{"z": "s", "new": True}]))
    assert [c.severity for c in changes] == ["ERROR", "ERROR", "WARN"]
    text = changes_markdown(changes)
    lines = text.splitlines()
    assert lines[0] == "| path | change | before | after | severity |"
    assert "| `a\\|b` | removed | integer |  | ERROR |" in lines
    assert "| `z` | retyped | integer | string | ERROR |" in lines
    assert "| `new` | added |  | boolean | WARN |" in lines
    assert changes_markdown([]) == "No schema changes."


@settings(max_examples=100, deadline=None)
@given(records=st.lists(json_records, max_size=8))
def test_diff_of_a_snapshot_with_itself_is_empty(records) -> None:
    assert diff(snap(records), snap(records)) == []


@settings(max_examples=100, deadline=None)
@given(
    records=st.lists(json_records, min_size=1, max_size=8),
    value=st.one_of(st.booleans(), st.integers(), st.text(max_size=3), st.floats(allow_nan=False)),
)
def test_adding_a_field_to_every_record_is_one_added_warn(records, value) -> None:
    after = [{**r, "added_field": value} for r in records]
    changes = diff(snap(records), snap(after))
    assert [(c.path, c.kind, c.severity) for c in changes] == [("added_field", "added", "WARN")]
