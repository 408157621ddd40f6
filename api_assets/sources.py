"""The sources file: pydantic models of CONTRACT §4, `${VAR}` expansion and validation.

Entry points:

    load_sources(path=None) -> list[SourceConfig]
    validate_command(path) -> int            # `api-assets validate [PATH]`
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
    names and the kind of value found ("got a string").
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

import difflib
import json
import os
import re
import sys
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from api_assets.errors import SourceProblem, SourcesError

NAME_PATTERN = r"^[a-z][a-z0-9_]*$"
_NAME = re.compile(NAME_PATTERN)

# A rule's finding: the key path relative to the object checked, and what is wrong.
RulePath = tuple[str | int, ...]
Finding = tuple[RulePath, str]


def _get(obj: Any, key: str, default: Any = None) -> Any:
    """A key of a raw YAML mapping or a field of a model, so that one rule reads both."""
    if isinstance(obj, Mapping):
        return obj.get(key, default)
    if isinstance(obj, BaseModel):
        return getattr(obj, key, default)
    return default


def _given(obj: Any) -> set[str]:
    """The keys the user wrote (a model's explicitly set fields)."""
    if isinstance(obj, Mapping):
        return {k for k in obj if isinstance(k, str)}
    if isinstance(obj, BaseModel):
        return set(obj.model_fields_set)
    return set()


def _show(value: Any, limit: int = 40) -> str:
    """A name-like value (a key, a `type:`, an endpoint name) as it may appear in a message."""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    if not re.fullmatch(r"[A-Za-z0-9_\-./]*", text):
        text = json.dumps(text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @classmethod
    def _cross_checks(cls, obj: Any) -> list[Finding]:
        """Rules across fields; `obj` is an instance or its raw mapping (any shape)."""
        return []

    @model_validator(mode="after")
    def _apply_cross_checks(self) -> "Model":
        findings = type(self)._cross_checks(self)
        if findings:
            path, message = findings[0]
            raise PydanticCustomError(
                "sources_rule", "{message}", {"message": message, "path": path}
            )
        return self


def _value_error(message: str) -> PydanticCustomError:
    # "{message}" keeps braces in `message` (`{order_id}`) from being read as a template
    return PydanticCustomError("sources_value", "{message}", {"message": message})


def _check_http_url(value: str) -> str:
    """An absolute http(s) URL with a host; the value is not repeated (it may hold a password)."""
    expected = "expected an absolute http(s) URL such as https://api.example.com/v1"
    try:
        parts = urlsplit(value)
        _ = parts.port  # raises ValueError for a port that is not a number in range
    except ValueError:
        raise _value_error(expected) from None
    if parts.scheme not in ("http", "https") or not parts.hostname or re.search(r"\s", value):
        raise _value_error(expected)
    return value


# --- cron ------------------------------------------------------------------------------------

_CRON_MACROS = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
_MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
_DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
_CRON_FIELDS: list[tuple[str, int, int, dict[str, int]]] = [
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    ("month", 1, 12, {m: i + 1 for i, m in enumerate(_MONTHS)}),
    ("day of week", 0, 7, {d: i for i, d in enumerate(_DAYS)}),
]


def cron_problem(expression: str) -> str | None:
    """Why `expression` is not a standard 5-field cron (None when it is).

    Accepts numbers, `*`, ranges `a-b`, steps `/n`, lists `a,b`, month and weekday names, and
    the macros `@hourly`, `@daily`, ...: a subset of what Dagster's schedules accept.
    """
    if expression.strip().lower() in _CRON_MACROS:
        return None
    parts = expression.split()
    if len(parts) != 5:
        return (
            "expected a cron expression of 5 fields (minute hour day-of-month month "
            f"day-of-week), such as '0 3 * * *'; found {len(parts)} field(s)"
        )
    singles: list[int | None] = []
    for part, (label, low, high, names) in zip(parts, _CRON_FIELDS, strict=True):
        problem = _cron_field_problem(part.lower(), low, high, names)
        if problem:
            return f"cron field {label} ({low}-{high}): {problem}"
        singles.append(int(part) if _digits(part) else names.get(part.lower()))
    # Dagster refuses a schedule that can never fire
    if singles[3] == 2 and singles[2] in (30, 31):
        return "this cron never fires (February has no day 30 or 31)"
    return None


def _digits(token: str) -> bool:
    return token.isascii() and token.isdigit()


def _cron_field_problem(part: str, low: int, high: int, names: dict[str, int]) -> str | None:
    def number(token: str) -> int | None:
        if _digits(token):
            value = int(token)
            return value if low <= value <= high else None
        return names.get(token)

    for item in part.split(","):
        base, slash, step = item.partition("/")
        if slash and not (_digits(step) and 0 < int(step) <= high):
            return f"a step must be a number from 1 to {high}"
        if base == "*":
            continue
        first, dash, last = base.partition("-")
        start, end = number(first), number(last) if dash else None
        if start is None or (dash and end is None):
            return "expected *, a number in range, a range a-b, a step */n or a list a,b"
        if end == 0 and high == 7:
            end = 7  # `fri-sun`: Sunday closes a weekday range as 7
        if end is not None and end < start:
            return "a range must go from low to high"
    return None


# --- rate limit, retry, partitions -----------------------------------------------------------


class RateLimitConfig(Model):
    requests_per_second: float = Field(default=10.0, gt=0)
    burst: int = Field(default=10, ge=1)
    max_concurrency: int = Field(default=4, ge=1, le=256)


class RetryConfig(Model):
    max_attempts: int = Field(default=6, ge=1, le=100)
    max_backoff_seconds: float = Field(default=120.0, ge=0)


class PartitionsConfig(Model):
    type: Literal["daily", "hourly", "none"] = "daily"
    start: date = date(2026, 1, 1)


class SchemaDriftConfig(Model):
    block: bool = False


# --- auth ------------------------------------------------------------------------------------


class NoAuth(Model):
    type: Literal["none"] = "none"


class ApiKeyAuth(Model):
    type: Literal["api_key"]
    name: str = "X-API-Key"
    value: SecretStr
    location: Literal["header", "query"] = "header"


class BearerAuth(Model):
    type: Literal["bearer"]
    token: SecretStr


class BasicAuth(Model):
    type: Literal["basic"]
    username: str
    password: SecretStr


class OAuth2ClientCredentialsAuth(Model):
    type: Literal["oauth2_client_credentials"]
    token_url: str
    client_id: str
    client_secret: SecretStr
    scopes: list[str] = []
    refresh_margin_seconds: float = Field(default=60.0, ge=0)
    client_auth: Literal["basic", "body"] = "basic"

    @field_validator("token_url")
    @classmethod
    def _token_url(cls, v: str) -> str:
        return _check_http_url(v)


class ApiKeyRotationAuth(Model):
    type: Literal["api_key_rotation"]
    name: str = "X-API-Key"
    location: Literal["header", "query"] = "header"
    values: list[SecretStr] = Field(min_length=1)


class OAuth2RefreshTokenAuth(Model):
    type: Literal["oauth2_refresh_token"]
    token_url: str
    client_id: str
    client_secret: SecretStr | None = None
    refresh_token: SecretStr
    scopes: list[str] = []
    refresh_margin_seconds: float = Field(default=60.0, ge=0)
    client_auth: Literal["basic", "body"] = "basic"

    @field_validator("token_url")
    @classmethod
    def _token_url(cls, v: str) -> str:
        return _check_http_url(v)


JwtAlgorithm = Literal["HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384"]
_JWT_DEFAULT_ALGORITHM: JwtAlgorithm = "HS256"


class JwtBearerAuth(Model):
    type: Literal["jwt_bearer"]
    secret: SecretStr | None = None
    private_key: SecretStr | None = None
    algorithm: JwtAlgorithm = _JWT_DEFAULT_ALGORITHM
    claims: dict[str, Any] = {}
    lifetime_seconds: int = Field(default=300, ge=1)
    token_url: str | None = None
    scopes: list[str] = []
    refresh_margin_seconds: float = Field(default=30.0, ge=0)

    @field_validator("token_url")
    @classmethod
    def _token_url(cls, v: str | None) -> str | None:
        return None if v is None else _check_http_url(v)

    @classmethod
    def _cross_checks(cls, obj: Any) -> list[Finding]:
        secret, key = _get(obj, "secret"), _get(obj, "private_key")
        if secret is not None and key is not None:
            return [
                (
                    ("private_key",),
                    "give `secret` (HS* algorithms) or `private_key` (RS*/ES*), not both",
                )
            ]
        if secret is None and key is None:
            return [((), "jwt_bearer needs `secret` (HS* algorithms) or `private_key` (RS*/ES*)")]
        algorithm = _get(obj, "algorithm", _JWT_DEFAULT_ALGORITHM)
        if algorithm in get_args(JwtAlgorithm):
            needed = "secret" if algorithm.startswith("HS") else "private_key"
            if _get(obj, needed) is None:
                return [
                    (
                        ("algorithm",),
                        f"algorithm {algorithm} signs with `{needed}`, which is not given",
                    )
                ]
        return []


AuthConfig = Annotated[
    NoAuth
    | ApiKeyAuth
    | BearerAuth
    | BasicAuth
    | OAuth2ClientCredentialsAuth
    | ApiKeyRotationAuth
    | OAuth2RefreshTokenAuth
    | JwtBearerAuth,
    Field(discriminator="type"),
]


# --- paginators ------------------------------------------------------------------------------


def _not_both(obj: Any, first: str, second: str) -> list[Finding]:
    if _get(obj, first) and _get(obj, second):
        return [((second,), f"give `{first}` or `{second}`, not both")]
    return []


class PaginatorBase(Model):
    params: dict[str, Any] = {}
    max_pages: int | None = Field(default=None, ge=1)


class SinglePagePaginator(PaginatorBase):
    type: Literal["single_page"] = "single_page"


class OffsetPaginator(PaginatorBase):
    type: Literal["offset"]
    offset_param: str = "offset"
    limit_param: str = "limit"
    limit: int = Field(default=100, ge=1)
    start: int = Field(default=0, ge=0)
    total_path: str | None = None
    total_header: str | None = None


class PageNumberPaginator(PaginatorBase):
    type: Literal["page_number"]
    page_param: str = "page"
    size_param: str | None = "per_page"
    size: int = Field(default=100, ge=1)
    start: int = Field(default=1, ge=0)
    total_pages_path: str | None = None
    total_path: str | None = None
    total_header: str | None = None


class CursorPaginator(PaginatorBase):
    type: Literal["cursor"]
    cursor_path: str | None = None
    cursor_header: str | None = None
    cursor_param: str = "cursor"
    limit_param: str | None = None
    limit: int | None = Field(default=None, ge=1)

    @classmethod
    def _cross_checks(cls, obj: Any) -> list[Finding]:
        return _not_both(obj, "cursor_path", "cursor_header")


class NextUrlPaginator(PaginatorBase):
    type: Literal["next_url"]
    next_path: str | None = None
    next_header: str | None = None

    @classmethod
    def _cross_checks(cls, obj: Any) -> list[Finding]:
        return _not_both(obj, "next_path", "next_header")


class LinkHeaderPaginator(PaginatorBase):
    type: Literal["link_header"]


class KeysetPaginator(PaginatorBase):
    type: Literal["keyset"]
    param: str = "since_id"
    field: str = "id"
    inclusive: bool = False
    limit_param: str | None = "limit"
    limit: int | None = Field(default=100, ge=1)


PaginatorConfig = Annotated[
    SinglePagePaginator
    | OffsetPaginator
    | PageNumberPaginator
    | CursorPaginator
    | NextUrlPaginator
    | LinkHeaderPaginator
    | KeysetPaginator,
    Field(discriminator="type"),
]


# --- endpoints -------------------------------------------------------------------------------

TimeFormat = Literal["iso8601", "epoch_seconds", "epoch_millis"]
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


class IncrementalConfig(Model):
    cursor_field: str
    param: str
    initial_value: str | None = None
    lookback_seconds: float = Field(default=0.0, ge=0)
    format: Literal["iso8601", "epoch_seconds", "epoch_millis", "raw"] = "iso8601"


class WindowConfig(Model):
    start_param: str
    end_param: str
    format: TimeFormat = "iso8601"


class ParentConfig(Model):
    endpoint: str
    fields: dict[str, str] = Field(min_length=1)
    # what a 404 for one parent record means: `skip` records it and goes on, `fail` fails the run
    on_not_found: Literal["skip", "fail"] = "skip"


class EndpointConfig(Model):
    name: str = Field(pattern=NAME_PATTERN)
    path: str
    method: Literal["GET", "POST"] = "GET"
    params: dict[str, Any] = {}
    headers: dict[str, str] = {}
    records_path: str | None = None
    primary_key: str | list[str] | None = None
    paginator: PaginatorConfig = SinglePagePaginator()
    incremental: IncrementalConfig | None = None
    window: WindowConfig | None = None
    parent: ParentConfig | None = None

    @property
    def primary_key_fields(self) -> list[str]:
        """The primary key as a list of dotted field paths ([] when there is none)."""
        if self.primary_key is None:
            return []
        return [self.primary_key] if isinstance(self.primary_key, str) else list(self.primary_key)

    @property
    def kind(self) -> Literal["snapshot", "incremental", "window"]:
        if self.incremental is not None:
            return "incremental"
        if self.window is not None:
            return "window"
        return "snapshot"

    @property
    def placeholders(self) -> list[str]:
        """The `{name}` placeholders of `path`, in order."""
        return _PLACEHOLDER.findall(self.path)

    @field_validator("primary_key", mode="before")
    @classmethod
    def _primary_key_shape(cls, v: Any) -> Any:
        # one clear message instead of pydantic's two (one per member of `str | list[str]`)
        if v is None or isinstance(v, str):
            return v
        if isinstance(v, list) and v and all(isinstance(x, str) for x in v):
            return v
        raise _value_error("expected a field name or a non-empty list of field names")

    @classmethod
    def _cross_checks(cls, obj: Any) -> list[Finding]:
        findings: list[Finding] = []
        if _get(obj, "incremental") is not None and _get(obj, "window") is not None:
            findings.append(
                (
                    ("window",),
                    "an endpoint is `incremental` or `window`, not both: `incremental` fetches "
                    "past a watermark, `window` fetches exactly each partition's time window",
                )
            )
        path = _get(obj, "path")
        placeholders = _PLACEHOLDER.findall(path) if isinstance(path, str) else []
        parent = _get(obj, "parent")
        fields = _get(parent, "fields")
        if placeholders and parent is None:
            names = ", ".join("{" + p + "}" for p in placeholders)
            findings.append(
                (
                    ("path",),
                    f"path placeholder(s) {names} need a `parent:` that fills them, e.g. "
                    f"parent: {{endpoint: <parent endpoint>, fields: {{{placeholders[0]}: <field "
                    "of the parent record>}}",
                )
            )
        elif placeholders and isinstance(fields, Mapping):
            missing = [p for p in placeholders if p not in fields]
            if missing:
                names = ", ".join("{" + p + "}" for p in missing)
                findings.append(
                    (
                        ("parent", "fields"),
                        f"`parent.fields` does not map path placeholder(s) {names}; add "
                        f"{missing[0]}: <field of the parent record>",
                    )
                )
        return findings


# --- webhooks --------------------------------------------------------------------------------

_HMAC_ONLY_KEYS = (
    "signature_header",
    "algorithm",
    "encoding",
    "prefix",
    "timestamp_header",
    "event_id_header",
    "event_id_path",
    "event_type_path",
)


class WebhooksConfig(Model):
    scheme: Literal["github", "stripe", "standard", "hmac"]
    secret: SecretStr
    tolerance_seconds: int = Field(default=300, ge=1)
    max_body_bytes: int = Field(default=1024 * 1024, ge=1)
    # generic `hmac` scheme only
    signature_header: str | None = None
    algorithm: Literal["sha1", "sha256", "sha512"] = "sha256"
    encoding: Literal["hex", "base64"] = "hex"
    prefix: str = ""
    timestamp_header: str | None = None
    event_id_header: str | None = None
    event_id_path: str | None = None
    event_type_path: str | None = None

    @classmethod
    def _cross_checks(cls, obj: Any) -> list[Finding]:
        scheme = _get(obj, "scheme")
        if scheme == "hmac":
            findings: list[Finding] = []
            if not _get(obj, "signature_header"):
                findings.append(
                    (
                        ("signature_header",),
                        "scheme `hmac` needs `signature_header` (the header holding the signature)",
                    )
                )
            if not (_get(obj, "event_id_header") or _get(obj, "event_id_path")):
                findings.append(((), "scheme `hmac` needs `event_id_header` or `event_id_path`"))
            return findings
        if scheme in ("github", "stripe", "standard"):
            return [
                ((key,), f"`{key}` belongs to webhook scheme hmac; this scheme is {scheme}")
                for key in _HMAC_ONLY_KEYS
                if key in _given(obj)
            ]
        return []


# --- connection: TLS and proxy ---------------------------------------------------------------

_ENV_REFERENCE = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}")
# keys (below a source) whose value must be exactly one `${VAR}` in a sources file
_ENVIRONMENT_ONLY: tuple[tuple[str, ...], ...] = (("tls", "client_key_password"),)
_PROXY_SCHEMES = ("http", "https")


def _check_file(value: str, what: str) -> str:
    """A path to an existing, readable file (relative paths are taken from the current folder);
    the message says what was expected, never the path's content."""
    path = Path(value)
    if not value or not path.exists():
        raise _value_error(f"no such file; expected a path to {what}")
    if not path.is_file():
        raise _value_error(f"not a file; expected a path to {what}")
    if not os.access(path, os.R_OK):
        raise _value_error(f"the file cannot be read; expected a path to {what}")
    return value


class TlsConfig(Model):
    """How the source's TLS connections are checked and which client certificate they present.

    `verify`: true (the trusted CAs of httpx: certifi, or `SSL_CERT_FILE` / `SSL_CERT_DIR`), false
    (no check at all: unsafe, anyone on the path can read and change the traffic) or the path of
    a CA bundle (PEM) trusted instead, for an API whose certificate comes from a private CA.
    `client_cert` (PEM, may hold the key too), `client_key` and `client_key_password`: mutual TLS.
    """

    verify: bool | str = True
    client_cert: str | None = None
    client_key: str | None = None
    client_key_password: SecretStr | None = None  # a secret: `${VAR}` only, in a sources file

    @field_validator("verify", mode="before")
    @classmethod
    def _verify(cls, v: Any) -> Any:
        # `${VERIFY:-true}` expands to a string: take the words true and false as they read
        if isinstance(v, str) and v.strip().lower() in ("true", "false"):
            return v.strip().lower() == "true"
        if isinstance(v, bool):
            return v
        if isinstance(v, str):
            return _check_file(v, "a CA bundle (PEM)")
        raise _value_error(f"expected true, false or the path of a CA bundle (PEM), got {_kind(v)}")

    @field_validator("client_cert")
    @classmethod
    def _client_cert(cls, v: str | None) -> str | None:
        return None if v is None else _check_file(v, "a client certificate (PEM)")

    @field_validator("client_key")
    @classmethod
    def _client_key(cls, v: str | None) -> str | None:
        return None if v is None else _check_file(v, "a private key (PEM)")

    @classmethod
    def _cross_checks(cls, obj: Any) -> list[Finding]:
        findings: list[Finding] = []
        if _get(obj, "client_cert") is None:
            findings += [
                ((key,), f"`{key}` needs `client_cert`, the certificate it belongs to")
                for key in ("client_key", "client_key_password")
                if _get(obj, key) is not None
            ]
        # The files exist: check that they are what they claim, so that a wrong CA bundle, key
        # or password is a line of `api-assets validate`, not a failure of the first request.
        return findings + _tls_file_problems(obj)

    @property
    def key_password(self) -> str | None:
        """The client key's password, for `ssl.SSLContext.load_cert_chain` only."""
        if self.client_key_password is None:
            return None
        return self.client_key_password.get_secret_value()


def _readable(value: Any) -> str | None:
    """`value` when it names a readable file (the field's own validator says what else it is)."""
    if not isinstance(value, str) or not value:
        return None
    path = Path(value)
    return value if path.is_file() and os.access(path, os.R_OK) else None


def _tls_file_problems(obj: Any) -> list[Finding]:
    """What is wrong with the CA bundle, the client certificate, its key and the key's password
    of a `tls:` block (a model or its raw mapping). Messages never repeat a file's content or a
    password."""
    import ssl

    findings: list[Finding] = []
    verify = _get(obj, "verify")
    word = isinstance(verify, str) and verify.strip().lower() in ("true", "false")
    cafile = None if word else _readable(verify)
    if cafile is not None:
        try:
            ssl.create_default_context(cafile=cafile)
        except (OSError, ValueError):  # ssl.SSLError is an OSError
            findings.append(
                (
                    ("verify",),
                    "not a CA bundle: expected PEM certificates (-----BEGIN CERTIFICATE-----)",
                )
            )
    cert, key = _readable(_get(obj, "client_cert")), _get(obj, "client_key")
    password = _get(obj, "client_key_password")
    if isinstance(password, SecretStr):
        password = password.get_secret_value()
    if cert is None or (key is not None and _readable(key) is None):
        return findings
    if password is not None and not isinstance(password, str):
        return findings
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        # a callable, always: without one OpenSSL would prompt on the terminal for a password
        context.load_cert_chain(cert, key, password=lambda: password or "")
        return findings
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            where = "client_key" if key is not None else "client_cert"
            return [*findings, ((where,), "the private key does not belong to `client_cert`")]
    except OSError:
        return [*findings, (("client_cert",), "the client certificate or key cannot be read")]
    return [*findings, _client_files_problem(cert, key, password)]


def _client_files_problem(cert: str, key: str | None, password: str | None) -> Finding:
    """Which of the client certificate, its key and the password is wrong (they did not load)."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        cert_bytes = Path(cert).read_bytes()
        key_bytes = Path(key).read_bytes() if key is not None else cert_bytes
    except OSError:
        return (("client_cert",), "the client certificate or key cannot be read")
    try:
        x509.load_pem_x509_certificates(cert_bytes)
    except ValueError:
        return (
            ("client_cert",),
            "not a client certificate: expected PEM (-----BEGIN CERTIFICATE-----)",
        )
    where = "client_key" if key is not None else "client_cert"
    try:
        load_pem_private_key(key_bytes, password.encode() if password else None)
    except TypeError:  # encrypted, and no password
        return (
            (where,),
            "the private key is encrypted: give `client_key_password` (as ${VAR})",
        )
    except Exception as exc:  # ValueError, or UnsupportedAlgorithm for a key type OpenSSL lacks
        if password and "decrypt" in str(exc).lower():
            return (("client_key_password",), "this password does not decrypt the private key")
        return ((where,), "no usable private key: expected PEM (-----BEGIN PRIVATE KEY-----)")
    return ((where,), "the client certificate and its key could not be loaded together")


def _check_proxy_url(value: str) -> str:
    expected = (
        "expected a proxy URL such as http://proxy.internal:3128 (http or https, optionally "
        "with user:password)"
    )
    try:
        parts = urlsplit(value)
        _ = parts.port  # raises ValueError for a port that is not a number in range
    except ValueError:
        raise _value_error(expected) from None
    if parts.scheme not in _PROXY_SCHEMES or not parts.hostname or re.search(r"\s", value):
        raise _value_error(expected)
    return value


# --- sources ---------------------------------------------------------------------------------


class SourceConfig(Model):
    name: str = Field(pattern=NAME_PATTERN)
    base_url: str
    headers: dict[str, str] = {}
    timeout_seconds: float = Field(default=30.0, gt=0)
    # the largest response body read whole; a bigger page fails cleanly instead of exhausting memory
    max_page_bytes: int = Field(default=32 * 1024 * 1024, ge=1024)
    # the most bytes read off the wire for one response, before decoding (default: max_page_bytes)
    max_wire_page_bytes: int | None = Field(default=None, ge=1024)
    auth: AuthConfig = NoAuth()
    rate_limit: RateLimitConfig = RateLimitConfig()
    retry: RetryConfig = RetryConfig()
    partitions: PartitionsConfig = PartitionsConfig()
    schedule: str | None = None
    schema_drift: SchemaDriftConfig = SchemaDriftConfig()
    endpoints: list[EndpointConfig] = []
    webhooks: WebhooksConfig | None = None
    # how every connection of the source (API and token endpoint) is made: see `connection.py`
    tls: TlsConfig = TlsConfig()
    proxy: SecretStr | None = None  # a URL that may hold a password: masked like a secret
    http2: bool = False

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        return _check_http_url(v).rstrip("/")

    @field_validator("schedule")
    @classmethod
    def _cron(cls, v: str | None) -> str | None:
        problem = None if v is None else cron_problem(v)
        if problem:
            raise _value_error(problem)
        return v

    @property
    def wire_page_bytes(self) -> int:
        """The cap on one response's bytes as sent (compressed or not)."""
        return self.max_wire_page_bytes or self.max_page_bytes

    @field_validator("proxy")
    @classmethod
    def _proxy(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None:
            _check_proxy_url(v.get_secret_value())
        return v

    def endpoint(self, name: str) -> EndpointConfig:
        """The endpoint called `name`; KeyError when there is none."""
        for e in self.endpoints:
            if e.name == name:
                return e
        raise KeyError(name)

    @classmethod
    def _cross_checks(cls, obj: Any) -> list[Finding]:
        endpoints = _get(obj, "endpoints")
        if not isinstance(endpoints, list):
            return []
        findings: list[Finding] = []
        names: list[str] = []
        for i, ep in enumerate(endpoints):
            name = _get(ep, "name")
            if not isinstance(name, str):
                continue
            if name in names:
                findings.append(
                    (
                        ("endpoints", i, "name"),
                        f"endpoint `{_show(name)}` is defined twice in this source; endpoint names must be unique",
                    )
                )
            else:
                names.append(name)

        parents: dict[str, tuple[str, int]] = {}
        for i, ep in enumerate(endpoints):
            name, target = _get(ep, "name"), _get(_get(ep, "parent"), "endpoint")
            if not isinstance(target, str):
                continue
            where = ("endpoints", i, "parent", "endpoint")
            if target == name:
                findings.append(
                    (
                        where,
                        f"endpoint `{_show(name)}` is its own parent; `parent.endpoint` must name another endpoint",
                    )
                )
            elif target not in names:
                hint = _did_you_mean(target, names)
                listed = ", ".join(names) or "none"
                findings.append(
                    (
                        where,
                        f"`{_show(target)}` is not an endpoint of this source{hint}; its endpoints: {listed}",
                    )
                )
            elif isinstance(name, str) and name not in parents:
                parents[name] = (target, i)
        reported: set[frozenset[str]] = set()
        for start in parents:
            chain = [start]
            current = parents[start][0]
            while current in parents and current not in chain:
                chain.append(current)
                current = parents[current][0]
            if current in chain:
                cycle = chain[chain.index(current) :]
                if frozenset(cycle) not in reported:
                    reported.add(frozenset(cycle))
                    shown = " -> ".join([*cycle, cycle[0]])
                    index = parents[cycle[0]][1]
                    findings.append(
                        (
                            ("endpoints", index, "parent", "endpoint"),
                            f"parent cycle {shown}; a chain of parents must end at an endpoint without `parent`",
                        )
                    )

        if _get(_get(obj, "partitions"), "type") == "none":
            for i, ep in enumerate(endpoints):
                if _get(ep, "window") is not None:
                    findings.append(
                        (
                            ("endpoints", i, "window"),
                            "`window` needs time partitions (daily or hourly); this source has `partitions: {type: none}`",
                        )
                    )
        return findings


class SourcesFile(Model):
    sources: list[SourceConfig]


# --- ${VAR} expansion ------------------------------------------------------------------------

_REFERENCE = re.compile(r"\$\$\{|\$\{([^}]*)\}|\$\{")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def expand_env(text: str, environ: Mapping[str, str]) -> tuple[str, list[str]]:
    """`text` with every `${VAR}` / `${VAR:-default}` replaced, and the reasons it could not be.

    The messages name variables, never values.
    """
    problems: list[str] = []

    def replace(match: re.Match[str]) -> str:
        token = match.group(0)
        if token == "$${":
            return "${"
        body = match.group(1)
        if body is None:
            problems.append(
                "`${` without a closing `}`; write ${VAR} or ${VAR:-default}, or $${ for a literal ${"
            )
            return token
        name, default_sep, default = body.partition(":-")
        if not _ENV_NAME.fullmatch(name):
            problems.append(
                "malformed `${...}`: expected ${VAR} or ${VAR:-default}, VAR made of letters, digits and _"
            )
            return token
        value = environ.get(name)
        if default_sep:
            return value if value else default
        if value is None:
            problems.append(
                f"environment variable {name} is not set (use ${{{name}:-default}} or set it)"
            )
            return token
        return value

    return _REFERENCE.sub(replace, text), problems


# --- the loader ------------------------------------------------------------------------------

KeyPath = tuple[Any, ...]  # a path into the raw YAML data: mapping keys and list indexes

_MAX_DEPTH = 64
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


def _did_you_mean(word: Any, choices: list[str]) -> str:
    if not isinstance(word, str) or not word:
        return ""
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    if not close and len(word) >= 4:
        close = [c for c in choices if c.startswith(word) or word.startswith(c)][:1]
    return f" (did you mean `{close[0]}`?)" if close else ""


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
            self.doc.issue((*prefix, *path), _message(error), "model")


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


def _kind(value: Any) -> str:
    """What kind of value was found, never the value itself."""
    if value is None:
        return "nothing (an empty value)"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int):
        return "a whole number"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return f"a {type(value).__name__}"


def _message(error: Any) -> str:
    """A pydantic error as a sentence that says what is expected, without the input value."""
    kind, ctx, loc = error["type"], error.get("ctx") or {}, error["loc"]
    got = _kind(error.get("input"))
    if kind == "missing":
        return f"required key `{_show(loc[-1])}` is missing"
    if kind in ("sources_rule", "sources_value"):
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
        return f"expected a number of at most {_number(ctx['le'])}"
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


def _load(
    path: str | os.PathLike[str] | None, environ: Mapping[str, str] | None
) -> tuple[list[SourceConfig], list[str]]:
    if path is None:
        from api_assets import layout

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
    return _load(path, environ)[0]


def sources_error_text(err: SourcesError) -> str:
    """The problems as one text: a headline, then one `file:line: key.path: message` per line."""
    count = len(err.problems)
    noun = "problem" if count == 1 else "problems"
    return f"{count} {noun} in the sources file(s):\n" + "\n".join(str(p) for p in err.problems)


def validate_command(path: str | None) -> int:
    """`api-assets validate [PATH]`: prints `OK: ...` and returns 0, or prints each problem on
    stderr, one per line, and returns 2. Never a traceback."""
    try:
        sources, files = _load(path, None)
    except SourcesError as err:
        for problem in err.problems:
            print(problem, file=sys.stderr)
        return 2
    except Exception as exc:  # a loader bug must not look like a crash of the user's file
        shown = path or "sources"
        print(
            f"{shown}:0: <root>: could not validate ({type(exc).__name__}); please report this",
            file=sys.stderr,
        )
        return 2
    endpoints = sum(len(s.endpoints) for s in sources)
    print(f"OK: {len(sources)} sources, {endpoints} endpoints ({', '.join(files)})")
    return 0
