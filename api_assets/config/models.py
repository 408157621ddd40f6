"""The models of a sources file: one pydantic model per mapping, with the rules that keep a
mistake from reaching a run.

Secrets are `pydantic.SecretStr`: their repr and str are masked, so a model printed into a log
or an error never shows them. Use `.get_secret_value()` only where the value goes on the wire.
Every secret field is a `Secret`, which refuses an empty value (and webhook secrets are at least
`MIN_WEBHOOK_SECRET_BYTES` long). Sizes and waits have upper bounds (`UPPER_BOUNDS_EXPLAINED`).

Cross-field rules (`_cross_checks` on a model) are written once and run twice: as a pydantic
validator, so that models built in code are checked too, and by the loader (`loader.py`) on the
raw YAML, so that they are reported even when another key of the same object has a type error.
"""

import base64
import binascii
import difflib
import json
import os
import re
from collections.abc import Mapping
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal, get_args
from urllib.parse import SplitResult, urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from api_assets.config.cron import cron_problem

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


_OWNER = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+|team:[A-Za-z0-9_.\-]+")
_TAG_PART = r"[A-Za-z0-9_.\-]{1,63}"
_TAG_KEY = re.compile(rf"(?:{_TAG_PART}/)?{_TAG_PART}")
_TAG_VALUE = re.compile(r"[A-Za-z0-9_.\-]{0,63}")


def _check_owner(value: str) -> str:
    """An owner as Dagster takes it: an email address or `team:<name>`."""
    if not _OWNER.fullmatch(value):
        # the value is not repeated: a misplaced secret must not reach a message
        raise _value_error("expected an email address or a team as `team:<name>`")
    return value


def _check_tags(value: dict[str, str]) -> dict[str, str]:
    """Tags as Dagster takes them on an asset: keys of letters, digits, `_`, `-` and `.`
    with an optional `namespace/`, values likewise or empty; at most 63 characters a part."""
    for key, tag in value.items():
        if not _TAG_KEY.fullmatch(key) or key.startswith("dagster/"):
            raise _value_error(
                f"tag key {_show(key)}: expected letters, digits, `_`, `-` and `.` (at most 63), "
                "optionally after a `namespace/` (not `dagster/`)"
            )
        if not _TAG_VALUE.fullmatch(tag):
            raise _value_error(
                f"tag {_show(key)}: expected a value of letters, digits, `_`, `-` and `.` "
                "(at most 63), or empty"
            )
    return value


Owners = list[Annotated[str, AfterValidator(_check_owner)]]
Tags = Annotated[dict[str, str], AfterValidator(_check_tags)]


def _split_url(value: str, expected: str) -> SplitResult:
    """`value` split into its parts; a validation error saying `expected` when it cannot be (a
    port that is not a number in range included)."""
    try:
        parts = urlsplit(value)
        _ = parts.port  # raises ValueError for a port that is not a number in range
    except ValueError:
        raise _value_error(expected) from None
    return parts


def _check_http_url(value: str) -> str:
    """An absolute http(s) URL with a host; the value is not repeated (it may hold a password)."""
    expected = "expected an absolute http(s) URL such as https://api.example.com/v1"
    parts = _split_url(value, expected)
    if parts.scheme not in ("http", "https") or not parts.hostname or re.search(r"\s", value):
        raise _value_error(expected)
    return value


def _did_you_mean(word: Any, choices: list[str]) -> str:
    if not isinstance(word, str) or not word:
        return ""
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    if not close and len(word) >= 4:
        close = [c for c in choices if c.startswith(word) or word.startswith(c)][:1]
    return f" (did you mean `{close[0]}`?)" if close else ""


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


# --- secrets ---------------------------------------------------------------------------------

# An empty secret authenticates nothing: an empty HMAC key lets anyone sign a webhook.
EMPTY_SECRET = "secret_empty"


def _not_empty(value: SecretStr) -> SecretStr:
    if not value.get_secret_value().strip():
        raise PydanticCustomError(
            EMPTY_SECRET,
            "{message}",
            {"message": "is empty; a secret must not be empty: set it in the environment"},
        )
    return value


# Every secret field of a sources file: masked like `SecretStr`, and never empty (the loader
# names the variable that expanded to nothing).
Secret = Annotated[SecretStr, AfterValidator(_not_empty)]

# A webhook secret is an HMAC key: 128 bits at least (the Standard Webhooks spec recommends 24
# to 64 random bytes; GitHub and Stripe secrets are 20+ characters).
MIN_WEBHOOK_SECRET_BYTES = 16

# --- bounds ----------------------------------------------------------------------------------

HOUR_SECONDS = 3600
DAY_SECONDS = 24 * HOUR_SECONDS
MIB = 1024 * 1024
GIB = 1024 * MIB

# What an upper bound protects, appended to "expected a number of at most N" by the loader.
UPPER_BOUNDS_EXPLAINED = {
    "timeout_seconds": "(10 minutes): one read that waits longer is a stalled server",
    "request_deadline_seconds": "(1 hour) for one response, from sending it to its last byte",
    "max_page_bytes": "(1 GiB): a page is held in memory whole; lower the page size instead",
    "max_wire_page_bytes": "(1 GiB): a page is held in memory whole; lower the page size instead",
    "max_backoff_seconds": "(1 hour) between two attempts",
    "max_pause_seconds": "(1 day)",
    "tolerance_seconds": "(1 day): a wider window lets a captured event be replayed for longer",
    "max_body_bytes": "(32 MiB): a webhook body is held in memory whole",
}

# --- rate limit, retry, partitions -----------------------------------------------------------


class RateLimitConfig(Model):
    requests_per_second: float = Field(default=10.0, gt=0)
    burst: int = Field(default=10, ge=1)
    max_concurrency: int = Field(default=4, ge=1, le=256)
    # the longest wait a server may ask for (`Retry-After`, a reset, a declared refill); a longer
    # one fails the run at once, naming it, instead of holding every request of the source
    max_pause_seconds: float = Field(default=300.0, ge=1, le=DAY_SECONDS)


class RetryConfig(Model):
    max_attempts: int = Field(default=6, ge=1, le=100)
    max_backoff_seconds: float = Field(default=120.0, ge=0, le=HOUR_SECONDS)


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
    value: Secret
    location: Literal["header", "query"] = "header"


class BearerAuth(Model):
    type: Literal["bearer"]
    token: Secret


class BasicAuth(Model):
    type: Literal["basic"]
    username: str
    password: Secret


class OAuth2ClientCredentialsAuth(Model):
    type: Literal["oauth2_client_credentials"]
    token_url: str
    client_id: str
    client_secret: Secret
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
    values: list[Secret] = Field(min_length=1)


class OAuth2RefreshTokenAuth(Model):
    type: Literal["oauth2_refresh_token"]
    token_url: str
    client_id: str
    client_secret: Secret | None = None
    refresh_token: Secret
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
    secret: Secret | None = None
    private_key: Secret | None = None
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
    # shown on the endpoint's assets in Dagster, added to the source's
    owners: Owners = []
    tags: Tags = {}

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
    secret: Secret
    tolerance_seconds: int = Field(default=300, ge=1, le=DAY_SECONDS)
    max_body_bytes: int = Field(default=1024 * 1024, ge=1, le=32 * MIB)
    # github, and hmac with event_id_header: the id is not signed, so a replay under a new id is
    # caught by the signed content's digest, remembered this long (webhooks/signing.py)
    replay_window_seconds: int = Field(default=DAY_SECONDS, ge=1, le=30 * DAY_SECONDS)
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
        findings = _webhook_secret_problems(scheme, _get(obj, "secret"))
        if scheme == "hmac":
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
            return findings + [
                ((key,), f"`{key}` belongs to webhook scheme hmac; this scheme is {scheme}")
                for key in _HMAC_ONLY_KEYS
                if key in _given(obj)
            ]
        return findings


def _webhook_secret_problems(scheme: Any, secret: Any) -> list[Finding]:
    """A webhook secret too short to be a key, or a `standard` one that is not base64, read as
    `webhooks/signing.py` reads it: `standard` decodes `whsec_<base64>`, the others take the
    UTF-8 bytes. Never the secret in the message; an empty one is reported as empty."""
    if isinstance(secret, SecretStr):
        secret = secret.get_secret_value()
    if not isinstance(secret, str) or not secret.strip():
        return []
    if scheme == "standard":
        try:
            key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
        except (binascii.Error, ValueError):
            return [
                (
                    ("secret",),
                    "a `standard` webhook secret is `whsec_` and the base64 of the key, as the "
                    "sender shows it",
                )
            ]
        what = "bytes once base64-decoded"
    else:
        key = secret.encode()
        what = "bytes (UTF-8)"
    if len(key) >= MIN_WEBHOOK_SECRET_BYTES:
        return []
    return [
        (
            ("secret",),
            f"a webhook secret must be at least {MIN_WEBHOOK_SECRET_BYTES} {what}: a short HMAC "
            "key can be guessed and events forged; use the secret the sender generates, or a "
            "random one (openssl rand -hex 32)",
        )
    ]


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
    client_key_password: Secret | None = None  # a secret: `${VAR}` only, in a sources file

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
    parts = _split_url(value, expected)
    if parts.scheme not in _PROXY_SCHEMES or not parts.hostname or re.search(r"\s", value):
        raise _value_error(expected)
    return value


def _check_origin(value: str) -> str:
    """`scheme://host[:port]`, http(s), nothing more: an entry of `allowed_origins`."""
    expected = (
        "expected an origin such as https://files.example.com or http://10.0.0.5:8080 "
        "(http or https, a host and an optional port; no path, query or user)"
    )
    parts = _split_url(value, expected)
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or "@" in parts.netloc
        or re.search(r"\s", value)
    ):
        raise _value_error(expected)
    return value.rstrip("/")


# --- sources ---------------------------------------------------------------------------------


class SourceConfig(Model):
    name: str = Field(pattern=NAME_PATTERN)
    base_url: str
    headers: dict[str, str] = {}
    # each wait of one request (connect, a read, a write): a longer silence is a stalled server
    timeout_seconds: float = Field(default=30.0, gt=0, le=600)
    # one whole response, sent to last byte (default: `deadline_seconds`): a server trickling a
    # body, each read inside `timeout_seconds`, cannot hold a request for ever
    request_deadline_seconds: float | None = Field(default=None, gt=0, le=HOUR_SECONDS)
    # the largest response body read whole; a bigger page fails cleanly instead of exhausting memory
    max_page_bytes: int = Field(default=32 * 1024 * 1024, ge=1024, le=GIB)
    # the most bytes read off the wire for one response, before decoding (default: max_page_bytes)
    max_wire_page_bytes: int | None = Field(default=None, ge=1024, le=GIB)
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
    proxy: Secret | None = None  # a URL that may hold a password: masked like a secret
    http2: bool = False
    # other origins a next URL or Link header may lead to (`http/origins.py`); never credentials
    allowed_origins: list[Annotated[str, AfterValidator(_check_origin)]] = []
    # shown on every asset of the source in Dagster (an endpoint's own are added)
    owners: Owners = []
    tags: Tags = {}

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
    def deadline_seconds(self) -> float:
        """The time one response may take, from sending the request to its last byte:
        `request_deadline_seconds`, by default 4 × `timeout_seconds` and at least 60 s."""
        if self.request_deadline_seconds is not None:
            return self.request_deadline_seconds
        return max(4 * self.timeout_seconds, 60.0)

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

    # long: one cross-field rule of a source after another, each a few lines; split, the rules of a
    # source would be scattered
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
