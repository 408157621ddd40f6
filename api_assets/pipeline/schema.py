"""The structural schema snapshot of one partition and schema drift between two.

A snapshot maps each field path to what the records showed:
- paths: `id`, nested objects dotted (`customer.address.city`), list items as `[]`
  (`tags[]`, `lines[].sku`, `matrix[][]`);
- `types`: the sorted JSON types seen (`string`, `integer`, `number`, `boolean`, `null`,
  `object`, `array`);
- `nullable`: a null was seen, or the field was absent from some of the objects that could hold
  it (for `a.b`: the records where `a` is an object; for `a[].b`: the object items of `a`);
  list items are nullable when an item is null;
- `count`: the objects where the field is present (null included); for `[]` paths, the items.

How it is computed: by walking every record (no sampling), in one tight loop over the dicts.
The alternative of reading it off the Polars frames is not equivalent: Polars merges an int and
a string into one String column, and cannot tell an absent field from a null one.

Drift (`diff`): DeepDiff finds the fields whose types or nullability differ; each is then
classified. A field removed or retyped is ERROR, a field added or a nullability change is WARN.
Retypes that lose nothing are WARN: within the numeric family (`integer` ↔ `number`), and from
or to a null-only field (null carries no type). `null` itself is not a type for this purpose:
its appearance is a nullability change.
"""

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import chain, repeat
from operator import itemgetter
from pathlib import Path
from typing import Any, Literal, TypeAlias

import orjson
from deepdiff import DeepDiff

from api_assets.storage.durable import write_atomic
from api_assets.storage.layout import DataLayout, check_name, check_partition
from api_assets.utc import iso_utc, parse_iso_utc

CURRENT = "current"
Severity = Literal["WARN", "ERROR"]
ChangeKind = Literal["added", "removed", "retyped", "nullability"]

_NONE = type(None)
_JSON_TYPE: dict[type, str] = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    _NONE: "null",
    dict: "object",
    list: "array",
}
_NUMERIC = frozenset({"integer", "number"})


@dataclass
class FieldSchema:
    types: list[str]
    nullable: bool
    count: int

    def to_dict(self) -> dict[str, Any]:
        return {"types": self.types, "nullable": self.nullable, "count": self.count}


@dataclass
class SchemaSnapshot:
    """The structure of one partition's records."""

    source: str
    endpoint: str
    partition: str
    records: int
    fields: dict[str, FieldSchema]
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    run_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "endpoint": self.endpoint,
            "partition": self.partition,
            "run_id": self.run_id,
            "created_at": iso_utc(self.created_at),
            "records": self.records,
            "fields": {path: self.fields[path].to_dict() for path in sorted(self.fields)},
        }

    def to_json(self) -> str:
        return orjson.dumps(self.to_dict(), option=orjson.OPT_INDENT_2).decode()

    @classmethod
    def from_json(cls, data: str | bytes) -> "SchemaSnapshot":
        raw = orjson.loads(data)
        return cls(
            source=raw["source"],
            endpoint=raw["endpoint"],
            partition=raw["partition"],
            records=int(raw["records"]),
            fields={
                path: FieldSchema(list(f["types"]), bool(f["nullable"]), int(f["count"]))
                for path, f in raw["fields"].items()
            },
            created_at=parse_iso_utc(raw.get("created_at")) or datetime.now(UTC),
            run_id=raw.get("run_id"),
        )

    def save(self, layout: DataLayout) -> Path:
        """Write `schemas/S/E/P.json` atomically. Saving `current` over an existing snapshot
        first keeps that one as `current.prev.json`."""
        path = layout.schema_path(self.source, self.endpoint, self.partition)
        if self.partition == CURRENT and path.is_file():
            write_atomic(_prev_path(path), path.read_bytes())
        write_atomic(path, self.to_json().encode())
        return path

    @classmethod
    def load(
        cls, layout: DataLayout, source: str, endpoint: str, partition: str
    ) -> "SchemaSnapshot | None":
        """The saved snapshot of a partition, or None."""
        path = layout.schema_path(source, endpoint, partition)
        try:
            return cls.from_json(path.read_bytes())
        except FileNotFoundError:
            return None

    @classmethod
    def previous(
        cls,
        layout: DataLayout,
        source: str,
        endpoint: str,
        partition: str,
        *,
        after_save: bool = False,
    ) -> "SchemaSnapshot | None":
        """What `partition` is compared with, or None when there is nothing to compare with.

        A dated partition: the snapshot of the nearest earlier partition that has one (the same
        before or after this run's `save`). `current`: the last saved version — call it before
        saving this run's snapshot, or pass `after_save=True` to get the version that the
        latest `save` replaced (kept as `current.prev.json`).
        """
        check_partition(partition)
        path = layout.schema_path(source, endpoint, partition)
        if partition == CURRENT:
            target = _prev_path(path) if after_save else path
            try:
                return cls.from_json(target.read_bytes())
            except FileNotFoundError:
                return None
        earlier = []
        if path.parent.is_dir():
            for candidate in path.parent.glob("*.json"):
                key = candidate.name[: -len(".json")]
                if key == CURRENT or key >= partition:
                    continue
                try:
                    check_partition(key)
                except ValueError:
                    continue
                earlier.append(key)
        if not earlier:
            return None
        return cls.load(layout, source, endpoint, max(earlier))


def _prev_path(path: Path) -> Path:
    return path.with_name(path.name[: -len(".json")] + ".prev.json")


load = SchemaSnapshot.load
previous = SchemaSnapshot.previous


# --- building --------------------------------------------------------------------------------

# A node of the field tree: [counts by Python type, children by key, node of the list items].
_Node = list[Any]


def _new_node() -> _Node:
    return [{}, {}, None]


def _walk_objects(objects: list[dict[str, Any]], children: dict[str, _Node]) -> None:
    """Count the fields of many objects at once: records of one page mostly share one shape
    (same keys, same value types), so the shapes are counted first (C-level work per object)
    and each distinct shape is walked once; nested values are then walked level by level."""
    # all C-level iteration: (keys, value types) of each object
    kinds_of = map(tuple, map(map, repeat(type), map(dict.values, objects)))
    shapes = Counter(zip(map(tuple, objects), kinds_of, strict=True))
    # objects holding an object (a list) under each key, in this call
    dict_keys: dict[str, int] = {}
    list_keys: dict[str, int] = {}
    for (keys, kinds), n in shapes.items():
        for key, kind in zip(keys, kinds, strict=True):
            node = children.get(key)
            if node is None:
                node = children[key] = _new_node()
            counts = node[0]
            counts[kind] = counts.get(kind, 0) + n
            if kind is dict:
                dict_keys[key] = dict_keys.get(key, 0) + n
            elif kind is list:
                list_keys[key] = list_keys.get(key, 0) + n
    everyone = len(objects)
    for key, n in dict_keys.items():
        if n == everyone:  # the usual case: C-level gathering
            inner = list(filter(None, map(itemgetter(key), objects)))
        else:
            inner = [v for o in objects if type(v := o.get(key)) is dict and v]
        if inner:
            _walk_objects(inner, children[key][1])
    for key, n in list_keys.items():
        if n == everyone:
            items = list(chain.from_iterable(map(itemgetter(key), objects)))
        else:
            items = [item for o in objects if type(v := o.get(key)) is list for item in v]
        if items:
            _walk_items(items, children[key])


def _walk_items(items: list[Any], node: _Node) -> None:
    item_node = node[2]
    if item_node is None:
        item_node = node[2] = _new_node()
    counts = item_node[0]
    seen = Counter(map(type, items))
    for kind, n in seen.items():
        counts[kind] = counts.get(kind, 0) + n
    if dict in seen:
        if seen[dict] == len(items):
            inner = list(filter(None, items))
        else:
            inner = [i for i in items if type(i) is dict and i]
        if inner:
            _walk_objects(inner, item_node[1])
    if list in seen:
        if seen[list] == len(items):
            nested = list(chain.from_iterable(items))
        else:
            nested = [x for i in items if type(i) is list for x in i]
        if nested:
            _walk_items(nested, item_node)


def _json_type(kind: type) -> str:
    name = _JSON_TYPE.get(kind)
    if name is not None:
        return name
    for base, base_name in _JSON_TYPE.items():  # subclasses (e.g. IntEnum) and the like
        if issubclass(kind, base):
            return base_name
    return "string"


def _emit(path: str, node: _Node, holders: int, out: dict[str, FieldSchema]) -> None:
    counts, children, items = node
    count = sum(counts.values())
    out[path] = FieldSchema(
        types=sorted({_json_type(kind) for kind in counts}),
        nullable=_NONE in counts or count < holders,
        count=count,
    )
    if children:
        objects = counts.get(dict, 0)
        for key, child in children.items():
            _emit(f"{path}.{key}", child, objects, out)
    if items is not None:
        _emit(f"{path}[]", items, 0, out)


PageTree: TypeAlias = dict[str, _Node]


def page_tree(records: list[dict[str, Any]]) -> PageTree:
    """The field tree of one page on its own (for `SchemaBuilder.add(tree=)`). Pure: safe to call
    from any thread, so that the walk runs where the page was fetched."""
    root: PageTree = {}
    if records:
        _walk_objects(records, root)
    return root


def _merge(into: dict[str, _Node], tree: dict[str, _Node]) -> None:
    for key, node in tree.items():
        mine = into.get(key)
        if mine is None:
            into[key] = node
            continue
        _merge_node(mine, node)


def _merge_node(mine: _Node, node: _Node) -> None:
    counts = mine[0]
    for kind, n in node[0].items():
        counts[kind] = counts.get(kind, 0) + n
    if node[1]:
        _merge(mine[1], node[1])
    if node[2] is not None:
        if mine[2] is None:
            mine[2] = node[2]
        else:
            _merge_node(mine[2], node[2])


class SchemaBuilder:
    """Accumulate the structure of every record of one partition."""

    def __init__(self) -> None:
        self._root: dict[str, _Node] = {}
        self._records = 0

    def add(self, records: list[dict[str, Any]], *, tree: "PageTree | None" = None) -> None:
        """Count the fields of one page of records; `tree` is `page_tree(records)` when the
        caller made it already (in a fetch thread, say)."""
        self._records += len(records)
        if tree is not None:
            _merge(self._root, tree)
        elif records:
            _walk_objects(records, self._root)

    def finish(
        self, source: str, endpoint: str, partition: str, *, run_id: str | None = None
    ) -> SchemaSnapshot:
        fields: dict[str, FieldSchema] = {}
        for key, node in self._root.items():
            _emit(key, node, self._records, fields)
        return SchemaSnapshot(
            source=check_name(source, "source"),
            endpoint=check_name(endpoint, "endpoint"),
            partition=check_partition(partition),
            records=self._records,
            fields=fields,
            run_id=run_id,
        )


def snapshot_of(
    records: list[dict[str, Any]], source: str, endpoint: str, partition: str
) -> SchemaSnapshot:
    """Convenience: the snapshot of one list of records."""
    builder = SchemaBuilder()
    builder.add(records)
    return builder.finish(source, endpoint, partition)


# --- drift -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SchemaChange:
    """One difference between two snapshots."""

    path: str
    kind: ChangeKind
    before: str | None
    after: str | None
    severity: Severity

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "kind": self.kind,
            "before": self.before,
            "after": self.after,
            "severity": self.severity,
        }


def _typed(f: FieldSchema) -> set[str]:
    return set(f.types) - {"null"}


def _types_text(f: FieldSchema) -> str:
    return "|".join(f.types) or "-"


def _nullability_text(nullable: bool) -> str:
    return "nullable" if nullable else "required"


def _retype_severity(before: set[str], after: set[str]) -> Severity:
    if not before or not after:
        return "WARN"  # null-only on one side: no type evidence to contradict
    if before - _NUMERIC == after - _NUMERIC and before & _NUMERIC and after & _NUMERIC:
        return "WARN"  # integer ↔ number
    return "ERROR"


def diff(before: SchemaSnapshot | None, after: SchemaSnapshot) -> list[SchemaChange]:
    """The changes from `before` to `after`, ERRORs first, then by path. [] without `before`."""
    if before is None:
        return []
    old = {
        p: {"types": sorted(_typed(f)), "nullable": f.nullable} for p, f in before.fields.items()
    }
    new = {p: {"types": sorted(_typed(f)), "nullable": f.nullable} for p, f in after.fields.items()}
    changes: list[SchemaChange] = []
    for path in DeepDiff(old, new).affected_root_keys:
        if path not in new:
            f = before.fields[path]
            changes.append(SchemaChange(path, "removed", _types_text(f), None, "ERROR"))
        elif path not in old:
            f = after.fields[path]
            changes.append(SchemaChange(path, "added", None, _types_text(f), "WARN"))
        else:
            b, a = before.fields[path], after.fields[path]
            if _typed(b) != _typed(a):
                severity = _retype_severity(_typed(b), _typed(a))
                changes.append(
                    SchemaChange(path, "retyped", _types_text(b), _types_text(a), severity)
                )
            if b.nullable != a.nullable:
                changes.append(
                    SchemaChange(
                        path,
                        "nullability",
                        _nullability_text(b.nullable),
                        _nullability_text(a.nullable),
                        "WARN",
                    )
                )
    changes.sort(key=lambda c: (c.severity != "ERROR", c.path, c.kind))
    return changes


def _cell(value: str | None) -> str:
    return "" if value is None else value.replace("|", "\\|")


def changes_markdown(changes: list[SchemaChange]) -> str:
    """The changes as a markdown table (path, change, before, after, severity)."""
    if not changes:
        return "No schema changes."
    lines = ["| path | change | before | after | severity |", "| --- | --- | --- | --- | --- |"]
    for c in changes:
        lines.append(
            f"| `{_cell(c.path)}` | {c.kind} | {_cell(c.before)} | {_cell(c.after)} | {c.severity} |"
        )
    return "\n".join(lines)
