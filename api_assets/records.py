"""Where records are found in a body: one rule for the live run and for a rebuild from the archive.

`records_in(body, records_path)` returns the list at the dotted `records_path` (the body itself
when None); a body or path that holds one object is one record. Anything else is a `NotRecords`
(the fetch retries it once, then fails): an error object (`error` / `errors` where no records
are), a missing or `null` path, a scalar, or a list with an item that is not an object. Because
the archive only ever holds bodies that passed this, a rebuild finds exactly the records the run
found.
"""

from typing import Any

import orjson

from api_assets.errors import FetchError


class NotRecords(FetchError):
    """A body that holds no list of records where the endpoint says they are."""


def lookup(obj: Any, path: str | None) -> Any:
    """The value at a dotted path (`meta.total`, `data.0.id`), or None when any step is missing."""
    if path is None:
        return obj
    for part in path.split("."):
        if isinstance(obj, dict):
            obj = obj.get(part)
        elif isinstance(obj, list) and part.lstrip("-").isdigit():
            i = int(part)
            obj = obj[i] if -len(obj) <= i < len(obj) else None
        else:
            return None
        if obj is None:
            return None
    return obj


def records_in(body: Any, records_path: str | None) -> list[dict[str, Any]]:
    """The records in a parsed body (see the module docstring); raises `NotRecords`."""
    if (
        isinstance(body, dict)
        and ("error" in body or "errors" in body)
        and (records_path is None or lookup(body, records_path) is None)
    ):
        raise NotRecords(f"the API answered 200 with an error body: {excerpt(body)}")
    value = body if records_path is None else lookup(body, records_path)
    if value is None:
        raise NotRecords(f"the body has no `{records_path}`: {excerpt(body)}")
    if isinstance(value, list):
        if not all(isinstance(r, dict) for r in value):
            odd = next(r for r in value if not isinstance(r, dict))
            raise NotRecords(
                f"`{records_path or '<body>'}` holds a {type(odd).__name__} where records "
                f"(JSON objects) belong: {excerpt(odd, 100)}"
            )
        return value
    if isinstance(value, dict):
        return [value]
    raise NotRecords(f"`{records_path or '<body>'}` is a {type(value).__name__}, not a list")


def excerpt(body: Any, limit: int = 300) -> str:
    """The start of a body or value as text, for an error message."""
    text = body if isinstance(body, str) else orjson.dumps(body).decode(errors="replace")
    return text[:limit] + ("…" if len(text) > limit else "")
