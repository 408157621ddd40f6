"""Reading a sources file: YAML with line numbers, `${VAR}` expansion, every mistake at once.

Entry points:

    load_sources(path=None) -> list[SourceConfig]
    sources_error_text(err) -> str           # the problem list as one text, for the Dagster layer

What a caller may rely on:

- `path` is a YAML file, or a folder whose `*.yaml` / `*.yml` files (not hidden, not in
  subfolders) are read in sorted name order and merged. None means `layout.sources_path()`
  (`API_ASSETS_SOURCES`, else `sources/`). A source name is unique across all files.
- Either every source is valid and the list comes back in file order, or `SourcesError` is
  raised with one `SourceProblem` per mistake, for every file at once.
- A problem prints as `file:line: key.path: message`:
  - `file` is the path as given (a folder's path joined with the file name);
  - `line` is 1-based: the line of the offending key or list item; for a missing key, the line
    of the key whose mapping lacks it; 0 when the problem is about a path as a whole (no such
    file, a folder without YAML files);
  - `key.path` names sources and endpoints by their `name` when that name is valid
    (`sources.shop.endpoints.orders.paginator.limit`), by index otherwise
    (`sources[1].endpoints[0].path`); other list items by index (`auth.values[0]`); keys that
    are not plain words are JSON-quoted; `<root>` is the document itself;
  - the message says what is expected. It never repeats the value of a field (so never a
    secret): only key names, `type:` names, source and endpoint names, environment variable
    names and the kind of value found ("got a string"). An empty secret names the `${VAR}`
    text it came from (which, having expanded to nothing, holds no value) and the variables.
- `${VAR}` and `${VAR:-default}` are expanded in every string value (not in keys), several per
  string, before validation: `timeout_seconds: ${TIMEOUT:-30}` is a number. `:-` takes the
  default when VAR is unset or empty, as in sh. `$${` is a literal `${`. A default cannot
  contain `}`.
- YAML: one document per file; anchors, aliases and `<<` merge keys work; a duplicate key is a
  mistake; unquoted dates and timestamps stay strings (`start: 2026-01-01` is fine).

Secrets are `pydantic.SecretStr`: their repr and str are masked, so a model printed into a log
or an error never shows them. Use `.get_secret_value()` only where the value goes on the wire.

Cross-field rules (`_cross_checks` on a model) are written once and run twice: as a pydantic
validator, so that models built in code are checked too, and by the loader on the raw YAML, so
that they are reported even when another key of the same object has a type error.
"""

import json
import os
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml
from pydantic import (
    ValidationError,
)

from api_assets.config.env import expand_env
from api_assets.config.models import (
    _ENV_REFERENCE,
    _ENVIRONMENT_ONLY,
    _NAME,
    EMPTY_SECRET,
    UPPER_BOUNDS_EXPLAINED,
    Model,
    SourceConfig,
    _did_you_mean,
    _kind,
    _show,
)
from api_assets.errors import SourceProblem, SourcesError

# --- the loader ------------------------------------------------------------------------------

KeyPath = tuple[Any, ...]  # a path into the raw YAML data: mapping keys and list indexes

_MAX_DEPTH = 64
# the variables a `${VAR}` / `${VAR:-default}` text reads, and a text made of nothing else
_ENV_NAMES = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-[^}]*)?\}")
_ONLY_REFERENCES = re.compile(r"\s*(?:\$\{[A-Za-z_][A-Za-z0-9_]*(?::-[^}]*)?\}\s*)+")
_MAX_VALUES = 200_000
_TAG = "tag:yaml.org,2002:"
_COLLECTION_TAGS = {_TAG + t for t in ("map", "seq", "omap", "pairs", "set")}


@dataclass
class _Issue:
    path: KeyPath
    message: str
    origin: Literal["file", "shape", "env", "model", "rule"]
    line: int | None = None


@dataclass
class _Document:
    """One file: its raw data (after `${VAR}` expansion), the line of every path, its issues."""

    file: str
    data: Any = None
    lines: dict[KeyPath, int] = field(default_factory=dict)
    issues: list[_Issue] = field(default_factory=list)
    # paths already reported (an unknown key, a bad `type:`, a value that could not be read):
    # nothing more is said inside them
    settled: set[KeyPath] = field(default_factory=set)
    env_failed: set[KeyPath] = field(default_factory=set)  # values whose `${VAR}` failed
    # values that `${VAR}` expanded to nothing, as written: an empty secret names its variables
    expanded_empty: dict[KeyPath, str] = field(default_factory=dict)
    sources: list[SourceConfig] = field(default_factory=list)

    def issue(self, path: KeyPath, message: str, origin: Any, line: int | None = None) -> None:
        self.issues.append(_Issue(path, " ".join(message.split()), origin, line))

    def line_of(self, path: KeyPath) -> int:
        for n in range(len(path), -1, -1):
            if path[:n] in self.lines:
                return self.lines[path[:n]]
        return 1

    def key_path(self, path: KeyPath) -> str:
        out = ""
        node = self.data
        for i, part in enumerate(path):
            if isinstance(node, list) and isinstance(part, int):
                item = node[part] if 0 <= part < len(node) else None
                name = item.get("name") if isinstance(item, dict) else None
                named = i > 0 and path[i - 1] in ("sources", "endpoints")
                if named and isinstance(name, str) and _NAME.match(name):
                    out += "." + name
                else:
                    out += f"[{part}]"
                node = item
            else:
                out += "." + _render_key(part)
                node = node.get(part) if isinstance(node, dict) else None
        return out.lstrip(".")

    def problems(self) -> list[SourceProblem]:
        out = set()
        for issue in self.issues:
            if self._hidden(issue):
                continue
            line = issue.line if issue.line is not None else self.line_of(issue.path)
            out.add(SourceProblem(self.file, line, self.key_path(issue.path), issue.message))
        return sorted(out, key=lambda p: (p.line, p.key_path, p.message))

    def _hidden(self, issue: _Issue) -> bool:
        # One mistake, one line: nothing more is said inside a key reported as unknown, nor about
        # a value whose `${VAR}` could not be expanded (it holds the unexpanded text).
        prefixes = {issue.path[:n] for n in range(len(issue.path) + 1)}
        if issue.origin == "env":
            return bool(prefixes & self.settled)
        if issue.origin == "shape":
            return bool(prefixes & self.env_failed)
        if issue.origin in ("model", "rule"):
            return bool(prefixes & (self.settled | self.env_failed))
        return False


def _render_key(key: Any) -> str:
    """A mapping key in a key path: plain words as they are, anything else JSON-quoted; never a
    `:` (it separates the fields of a problem line)."""
    if isinstance(key, str) and re.fullmatch(r"[A-Za-z0-9_\-]+", key):
        return key
    if key is None or isinstance(key, bool | int | float):
        return json.dumps(key)
    return json.dumps(str(key)).replace(":", "\\u003a")


def _unsupported_tag(node: yaml.Node) -> str:
    tag = node.tag.replace(_TAG, "!!", 1) if node.tag.startswith(_TAG) else node.tag
    tag = tag if len(tag) <= 40 else tag[:37] + "..."
    return f"unsupported YAML tag `{tag}`; use plain values, lists and mappings"


class _TooLarge(Exception):
    pass


class _Converter:
    """Composed YAML nodes to plain data, recording the line of every key and list item."""

    def __init__(self, doc: _Document):
        self.doc = doc
        self.constructor = yaml.SafeLoader("")
        self.budget = _MAX_VALUES
        self.open: set[int] = set()  # collections being converted: an alias to one is a cycle

    def value(self, node: yaml.Node, path: KeyPath, depth: int) -> Any:
        self.budget -= 1
        if self.budget < 0:
            raise _TooLarge
        if depth > _MAX_DEPTH:
            return self.refuse(node, path, f"nested deeper than {_MAX_DEPTH} levels")
        if isinstance(node, yaml.ScalarNode):
            return self.scalar(node, path)
        if id(node) in self.open:
            return self.refuse(node, path, "an alias refers to a mapping or list that contains it")
        if node.tag not in _COLLECTION_TAGS:
            return self.refuse(node, path, _unsupported_tag(node))
        self.open.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                items = []
                for i, item in enumerate(node.value):
                    self.doc.lines[(*path, i)] = item.start_mark.line + 1
                    items.append(self.value(item, (*path, i), depth + 1))
                return items
            assert isinstance(node, yaml.MappingNode)
            return self.mapping(node, path, depth)
        finally:
            self.open.discard(id(node))

    def mapping(self, node: yaml.MappingNode, path: KeyPath, depth: int) -> dict[Any, Any]:
        result: dict[Any, Any] = {}
        # `<<` merge keys first, so that explicit keys override them whatever their order; of
        # several merged mappings the first wins, as in PyYAML
        for key_node, value_node in node.value:
            if key_node.tag != _TAG + "merge":
                continue
            merged = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
            for source in reversed(merged):
                if not isinstance(source, yaml.MappingNode):
                    self.doc.issue(
                        path, "`<<` merges mappings only", "file", key_node.start_mark.line + 1
                    )
                    continue
                value = self.value(source, path, depth)
                if isinstance(value, dict):
                    result.update(value)
        first_line: dict[Any, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _TAG + "merge":
                continue
            line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode):
                self.doc.issue(
                    path,
                    "a key must be a plain word or number, not a list or mapping",
                    "file",
                    line,
                )
                continue
            key = self.scalar(key_node, path)
            if key in first_line:
                self.doc.issue(
                    (*path, key),
                    f"duplicate key `{_show(key)}` (first on line {first_line[key]}); keep one",
                    "file",
                    line,
                )
                continue
            first_line[key] = line
            self.doc.lines[(*path, key)] = line
            result[key] = self.value(value_node, (*path, key), depth + 1)
        return result

    def scalar(self, node: yaml.ScalarNode, path: KeyPath) -> Any:
        if node.tag in (_TAG + "str", _TAG + "timestamp"):
            # a timestamp stays text: pydantic parses dates, and str fields keep what was written
            return node.value
        if node.tag in (_TAG + "null", _TAG + "bool", _TAG + "int", _TAG + "float"):
            try:
                return self.constructor.construct_object(node, deep=True)
            except (yaml.YAMLError, ValueError):
                return node.value
        return self.refuse(node, path, _unsupported_tag(node))

    def refuse(self, node: yaml.Node, path: KeyPath, message: str) -> None:
        """Report a value that cannot be read; it becomes null and nothing more is said of it."""
        self.doc.issue(path, message, "file", node.start_mark.line + 1)
        self.doc.settled.add(path)


def _read(path: Path, shown: str) -> _Document:
    """Parse one file into a `_Document`; syntax and encoding mistakes become issues."""
    doc = _Document(shown)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        doc.issue((), f"cannot read the file ({exc.strerror or type(exc).__name__})", "file", 0)
        return doc
    try:
        text = raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        doc.issue((), "the file is not UTF-8 text; save it as UTF-8", "file", line)
        return doc
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else 1
        if exc.context == "expected a single document in the stream":
            message = "a sources file holds one YAML document; remove the second `---` document"
        else:
            context = f" ({exc.context})" if exc.context else ""
            if exc.context and exc.context_mark and exc.context_mark.line + 1 != line:
                context = f" ({exc.context} that starts on line {exc.context_mark.line + 1})"
            message = f"YAML syntax error: {exc.problem}{context}"
        doc.issue((), message, "file", line)
        return doc
    except yaml.reader.ReaderError as exc:
        line = text[: exc.position].count("\n") + 1
        doc.issue(
            (),
            f"character {_codepoint(exc.character)} is not allowed in YAML (control characters"
            " are not)",
            "file",
            line,
        )
        return doc
    except (yaml.YAMLError, RecursionError) as exc:
        message = "nested too deeply" if isinstance(exc, RecursionError) else "YAML syntax error"
        doc.issue((), message, "file", 1)
        return doc
    if root is None:
        doc.issue((), "the file is empty; expected a mapping with a `sources:` list", "file", 1)
        return doc
    doc.lines[()] = root.start_mark.line + 1
    try:
        doc.data = _Converter(doc).value(root, (), 0)
    except _TooLarge:
        doc.data = None
        doc.issue((), f"the file expands to more than {_MAX_VALUES} values (aliases?)", "file", 1)
    except RecursionError:
        doc.data = None
        doc.issue((), "nested too deeply", "file", 1)
    return doc


@dataclass(frozen=True)
class _Nested:
    """A field that holds a model: one, a list of them, or one of a `type:`-tagged union."""

    kind: Literal["model", "list", "union"]
    model: type[Model] | None = None
    members: tuple[tuple[str, type[Model]], ...] = ()


@cache
def _nested_fields(cls: type[Model]) -> dict[str, _Nested]:
    out: dict[str, _Nested] = {}
    for name, info in cls.model_fields.items():
        annotation = info.annotation
        if info.discriminator is not None:
            members = tuple(
                (get_args(m.model_fields["type"].annotation)[0], m) for m in get_args(annotation)
            )
            out[name] = _Nested("union", members=members)
            continue
        options = [annotation]
        if get_origin(annotation) in (typing.Union, types.UnionType):
            options = [a for a in get_args(annotation) if a is not type(None)]
        if len(options) != 1:
            continue
        (option,) = options
        if isinstance(option, type) and issubclass(option, Model):
            out[name] = _Nested("model", option)
        elif get_origin(option) is list:
            (item,) = get_args(option)
            if isinstance(item, type) and issubclass(item, Model):
                out[name] = _Nested("list", item)
    return out


def _allowed_keys(cls: type[Model]) -> list[str]:
    keys = list(cls.model_fields)
    return sorted(keys, key=lambda k: k != "type")  # `type` first, the rest as declared


class _Checker:
    """The loader's own passes over one document's raw data."""

    def __init__(self, doc: _Document, environ: Mapping[str, str]):
        self.doc = doc
        self.environ = environ

    def run(self) -> None:
        doc, data = self.doc, self.doc.data
        if not isinstance(data, dict):
            doc.issue(
                (),
                f"expected a mapping with a `sources:` list at the top, got {_kind(data)}",
                "shape",
            )
            return
        for key in data:
            if key != "sources":
                hint = _did_you_mean(key, ["sources"])
                doc.issue(
                    (key,),
                    f"unknown top-level key `{_show(key)}`{hint}; a sources file has one top-level key, `sources:`",
                    "shape",
                )
        if "sources" not in data:
            doc.issue(
                ("sources",),
                "missing `sources:`; a sources file is a mapping with a `sources:` list",
                "shape",
                doc.line_of(()),
            )
            return
        items = data["sources"]
        if not isinstance(items, list):
            doc.issue(
                ("sources",),
                f"expected a list of sources (`- name: ...` items), got {_kind(items)}",
                "shape",
            )
            return
        for i, item in enumerate(items):
            self.from_environment(item, ("sources", i))
        data["sources"] = self.expand(items, ("sources",))
        for i, item in enumerate(items):
            self.shape(item, SourceConfig, ("sources", i), None)
        for i, item in enumerate(items):
            try:
                doc.sources.append(SourceConfig.model_validate(item))
            except ValidationError as err:
                self.model_issues(err, item, ("sources", i))

    def from_environment(self, source: Any, path: KeyPath) -> None:
        """Secrets that a sources file may only name: `${VAR}`, never the value itself."""
        for keys in _ENVIRONMENT_ONLY:
            node = source
            for key in keys:
                node = node.get(key) if isinstance(node, dict) else None
            if isinstance(node, str) and not _ENV_REFERENCE.fullmatch(node):
                where = (*path, *keys)
                self.doc.issue(
                    where,
                    f"`{keys[-1]}` is a secret: write ${{VAR}} and set VAR in the environment, "
                    "never the value itself (nor a default)",
                    "shape",
                )
                self.doc.settled.add(where)

    def expand(self, value: Any, path: KeyPath) -> Any:
        if isinstance(value, dict):
            for key in value:
                value[key] = self.expand(value[key], (*path, key))
        elif isinstance(value, list):
            for i, item in enumerate(value):
                value[i] = self.expand(item, (*path, i))
        elif isinstance(value, str) and "$" in value:
            expanded, problems = expand_env(value, self.environ)
            for message in problems:
                self.doc.issue(path, message, "env")
            if problems:
                self.doc.env_failed.add(path)
            else:
                if not expanded.strip():
                    self.doc.expanded_empty[path] = value
                return expanded
        return value

    def shape(
        self,
        value: Any,
        cls: type[Model],
        path: KeyPath,
        union: tuple[str, str, tuple[tuple[str, type[Model]], ...]] | None,
    ) -> None:
        """Unknown keys, unknown or missing `type:`, and the cross-field rules, recursively."""
        if not isinstance(value, dict):
            return  # pydantic says what was expected instead
        for key in value:
            if not (isinstance(key, str) and key in cls.model_fields):
                self.unknown_key(key, cls, (*path, key), union)
        for rel, message in cls._cross_checks(value):
            self.doc.issue((*path, *rel), message, "rule")
        for name, nested in _nested_fields(cls).items():
            if name not in value:
                continue
            item, where = value[name], (*path, name)
            if nested.kind == "model" and nested.model:
                self.shape(item, nested.model, where, None)
            elif nested.kind == "list" and nested.model and isinstance(item, list):
                for i, element in enumerate(item):
                    self.shape(element, nested.model, (*where, i), None)
            elif nested.kind == "union":
                self.tagged(item, name, nested.members, where)

    def tagged(
        self, value: Any, label: str, members: tuple[tuple[str, type[Model]], ...], path: KeyPath
    ) -> None:
        tags = [tag for tag, _ in members]
        listed = ", ".join(tags)
        if not isinstance(value, dict):
            self.doc.issue(
                path, f"expected a mapping with `type:` ({listed}), got {_kind(value)}", "shape"
            )
        elif "type" not in value:
            self.doc.issue(
                (*path, "type"),
                f"missing required key `type`; {label} types: {listed}",
                "shape",
                self.doc.line_of(path),
            )
        elif value["type"] not in tags:
            hint = _did_you_mean(value["type"], tags)
            self.doc.issue(
                (*path, "type"),
                f"unknown {label} type `{_show(value['type'])}`{hint}; valid types: {listed}",
                "shape",
            )
        else:
            self.shape(value, dict(members)[value["type"]], path, (label, value["type"], members))
            return
        self.doc.settled.add(path)  # pydantic's own account of a bad tag would only repeat it

    def unknown_key(
        self,
        key: Any,
        cls: type[Model],
        path: KeyPath,
        union: tuple[str, str, tuple[tuple[str, type[Model]], ...]] | None,
    ) -> None:
        self.doc.settled.add(path)
        owners = [t for t, m in union[2] if key in m.model_fields] if union else []
        if union and owners:
            label, tag = union[0], union[1]
            kinds = "type" if len(owners) == 1 else "types"
            message = f"`{_show(key)}` belongs to {label} {kinds} {', '.join(owners)}; this {label} is {tag}"
        else:
            allowed = _allowed_keys(cls)
            where = f" for {union[0]} type {union[1]}" if union else ""
            message = f"unknown key `{_show(key)}`{_did_you_mean(key, allowed)}; allowed keys{where}: {', '.join(allowed)}"
        self.doc.issue(path, message, "shape")

    def model_issues(self, err: ValidationError, item: Any, prefix: KeyPath) -> None:
        for error in err.errors(include_url=False):
            kind = error["type"]
            # these are reported by `shape`, with the allowed keys and types
            if kind in (
                "extra_forbidden",
                "invalid_key",
                "union_tag_invalid",
                "union_tag_not_found",
            ):
                continue
            path = _locate(item, error["loc"], kind == "missing")
            if kind == "sources_rule":
                path = (*path, *error["ctx"]["path"])
            message = _message(error)
            if kind == EMPTY_SECRET:
                message = self.empty_secret(path, self.doc.expanded_empty.get((*prefix, *path)))
            self.doc.issue((*prefix, *path), message, "model")

    @staticmethod
    def empty_secret(path: KeyPath, written: str | None) -> str:
        """What an empty secret is and how to fill it: the variables it was read from, never a
        value (a text that expanded to nothing holds none)."""
        key = "".join(f"[{p}]" if isinstance(p, int) else f".{_render_key(p)}" for p in path)
        key = key.lstrip(".")
        names = list(dict.fromkeys(_ENV_NAMES.findall(written or "")))
        if not names:
            return (
                f"`{key}` is empty: a secret must not be empty; write ${{VAR}} and set VAR in "
                "the environment"
            )
        shown = f"`{written.strip()}`" if written and _ONLY_REFERENCES.fullmatch(written) else ""
        told = " or ".join(names)
        return (
            f"`{key}` is empty: {shown or 'its ${VAR}'} expanded to nothing; set {told} "
            "(a secret must not be empty)"
        )


def _locate(data: Any, loc: tuple[int | str, ...], missing: bool) -> KeyPath:
    """The path into the raw data that a pydantic `loc` points at: loc parts that are not in the
    data (a union member's tag such as `offset` or `list[str]`) are dropped."""
    path: list[Any] = []
    node = data
    for n, part in enumerate(loc):
        in_dict = isinstance(node, dict) and part in node
        in_list = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        if in_dict or in_list:
            node = node[part]
            path.append(part)
        elif missing and n == len(loc) - 1:
            path.append(part)
    return tuple(path)


def _codepoint(character: Any) -> str:
    return f"#x{character:04x}" if isinstance(character, int) else "here"


def _number(value: Any) -> str:
    """`0` rather than `0.0` for a bound written as an integer."""
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _message(error: Any) -> str:
    """A pydantic error as a sentence that says what is expected, without the input value."""
    kind, ctx, loc = error["type"], error.get("ctx") or {}, error["loc"]
    got = _kind(error.get("input"))
    if kind == "missing":
        return f"required key `{_show(loc[-1])}` is missing"
    if kind in ("sources_rule", "sources_value", EMPTY_SECRET):
        return str(ctx["message"])
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"expected a mapping, got {got}"
    if kind == "list_type":
        return f"expected a list, got {got}"
    if kind == "string_type":
        if loc and loc[-1] == "[key]":
            return "keys here must be strings"
        quote = " (put it in quotes)" if isinstance(error.get("input"), int | float) else ""
        return f"expected a string, got {got}{quote}"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"expected a whole number, got {got}"
    if kind in ("float_type", "float_parsing", "finite_number"):
        return f"expected a number, got {got}"
    if kind in ("bool_type", "bool_parsing"):
        return f"expected true or false, got {got}"
    if kind == "greater_than":
        return f"expected a number greater than {_number(ctx['gt'])}"
    if kind == "greater_than_equal":
        return f"expected a number of at least {_number(ctx['ge'])}"
    if kind == "less_than_equal":
        why = UPPER_BOUNDS_EXPLAINED.get(str(loc[-1])) if loc else None
        return f"expected a number of at most {_number(ctx['le'])}" + (f" {why}" if why else "")
    if kind == "too_short":
        return f"expected at least {ctx['min_length']} item(s)"
    if kind == "literal_error":
        return f"expected {ctx['expected']}"
    if kind == "string_pattern_mismatch":
        return "expected a name of lowercase letters, digits and `_`, starting with a letter ([a-z][a-z0-9_]*)"
    if kind.startswith("date"):
        return "expected a date as YYYY-MM-DD, such as 2026-01-01"
    return str(error["msg"]).removeprefix("Value error, ")


def _display(path: Path) -> str:
    """A path as shown in messages: relative to the current directory when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _files(path: Path, shown: str) -> list[tuple[Path, str]]:
    if path.is_dir():
        try:
            entries = list(path.iterdir())
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise SourcesError(
                [SourceProblem(shown, 0, "", f"cannot list the folder ({reason})")]
            ) from None
        files = sorted(
            (
                p
                for p in entries
                if p.suffix.lower() in (".yaml", ".yml")
                and p.is_file()
                and not p.name.startswith(".")
            ),
            key=lambda p: p.name,
        )
        if not files:
            raise SourcesError(
                [SourceProblem(shown, 0, "", "no *.yaml or *.yml files in this folder")]
            )
        return [(p, os.path.join(shown, p.name)) for p in files]
    if path.is_file():
        return [(path, shown)]
    raise SourcesError(
        [
            SourceProblem(
                shown, 0, "", "no such file or folder (pass a path, or set API_ASSETS_SOURCES)"
            )
        ]
    )


def load_with_files(
    path: str | os.PathLike[str] | None, environ: Mapping[str, str] | None
) -> tuple[list[SourceConfig], list[str]]:
    if path is None:
        from api_assets.storage import layout

        resolved = layout.sources_path()
        shown = _display(resolved)
    else:
        resolved, shown = Path(path), os.fspath(path)
    env = os.environ if environ is None else environ
    docs = [_read(file, name) for file, name in _files(resolved, shown)]
    for doc in docs:
        if doc.data is not None:
            _Checker(doc, env).run()

    # a source name is unique across every file: the first one keeps it
    first: dict[str, tuple[str, int]] = {}
    for doc in docs:
        items = doc.data.get("sources") if isinstance(doc.data, dict) else None
        for i, item in enumerate(items if isinstance(items, list) else []):
            name = item.get("name") if isinstance(item, dict) else None
            if not isinstance(name, str) or not name:
                continue
            where = ("sources", i, "name")
            if name in first:
                file, line = first[name]
                doc.issue(
                    where,
                    f"source name `{_show(name)}` is already used at {file}:{line}; source names must be unique across all files",
                    "rule",
                )
            else:
                first[name] = (doc.file, doc.line_of(where))

    problems = [p for doc in docs for p in doc.problems()]
    if problems:
        raise SourcesError(problems)
    sources = [source for doc in docs for source in doc.sources]
    return sources, [doc.file for doc in docs]


def load_sources(
    path: str | os.PathLike[str] | None = None, *, environ: Mapping[str, str] | None = None
) -> list[SourceConfig]:
    """Every source of a sources file or folder (None: `layout.sources_path()`), validated.

    `environ` (default `os.environ`) is what `${VAR}` reads. Raises `SourcesError` listing every
    mistake of every file; never another exception for a mistake in the files.
    """
    return load_with_files(path, environ)[0]


def sources_error_text(err: SourcesError) -> str:
    """The problems as one text: a headline, then one `file:line: key.path: message` per line."""
    count = len(err.problems)
    noun = "problem" if count == 1 else "problems"
    return f"{count} {noun} in the sources file(s):\n" + "\n".join(str(p) for p in err.problems)
