"""The sources file: pydantic models of CONTRACT §4, `${VAR}` expansion and validation.

`load_sources(path)` is the one entry point: it reads a YAML file or a folder of `*.yaml`
files, expands `${VAR}` / `${VAR:-default}`, validates everything, and either returns the
sources or raises `SourcesError` listing every mistake as `file:line: key.path: message`.

Secrets are `pydantic.SecretStr`: their repr and str are masked, so a model printed into a log
or an error never shows them. Use `.get_secret_value()` only where the value goes on the wire.
"""

import re
from datetime import date
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

NAME_PATTERN = r"^[a-z][a-z0-9_]*$"


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- rate limit, retry, partitions -----------------------------------------------------------


class RateLimitConfig(Model):
    requests_per_second: float = Field(10.0, gt=0)
    burst: int = Field(10, ge=1)
    max_concurrency: int = Field(4, ge=1, le=256)


class RetryConfig(Model):
    max_attempts: int = Field(6, ge=1, le=100)
    max_backoff_seconds: float = Field(120.0, ge=0)


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
    refresh_margin_seconds: float = Field(60.0, ge=0)
    client_auth: Literal["basic", "body"] = "basic"


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
    refresh_margin_seconds: float = Field(60.0, ge=0)
    client_auth: Literal["basic", "body"] = "basic"


class JwtBearerAuth(Model):
    type: Literal["jwt_bearer"]
    secret: SecretStr | None = None
    private_key: SecretStr | None = None
    algorithm: Literal["HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384"] = (
        "HS256"
    )
    claims: dict[str, Any] = {}
    lifetime_seconds: int = Field(300, ge=1)
    token_url: str | None = None
    scopes: list[str] = []
    refresh_margin_seconds: float = Field(30.0, ge=0)

    @model_validator(mode="after")
    def _one_key(self) -> "JwtBearerAuth":
        if (self.secret is None) == (self.private_key is None):
            raise ValueError("give exactly one of `secret` (HS*) or `private_key` (RS*/ES*)")
        if self.algorithm.startswith("HS") != (self.secret is not None):
            raise ValueError(f"algorithm {self.algorithm} needs {'secret' if self.algorithm.startswith('HS') else 'private_key'}")
        return self


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


class PaginatorBase(Model):
    params: dict[str, Any] = {}
    max_pages: int | None = Field(None, ge=1)


class SinglePagePaginator(PaginatorBase):
    type: Literal["single_page"] = "single_page"


class OffsetPaginator(PaginatorBase):
    type: Literal["offset"]
    offset_param: str = "offset"
    limit_param: str = "limit"
    limit: int = Field(100, ge=1)
    start: int = Field(0, ge=0)
    total_path: str | None = None
    total_header: str | None = None


class PageNumberPaginator(PaginatorBase):
    type: Literal["page_number"]
    page_param: str = "page"
    size_param: str | None = "per_page"
    size: int = Field(100, ge=1)
    start: int = Field(1, ge=0)
    total_pages_path: str | None = None
    total_path: str | None = None
    total_header: str | None = None


class CursorPaginator(PaginatorBase):
    type: Literal["cursor"]
    cursor_path: str | None = None
    cursor_header: str | None = None
    cursor_param: str = "cursor"
    limit_param: str | None = None
    limit: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _one_source(self) -> "CursorPaginator":
        if self.cursor_path and self.cursor_header:
            raise ValueError("give `cursor_path` or `cursor_header`, not both")
        return self


class NextUrlPaginator(PaginatorBase):
    type: Literal["next_url"]
    next_path: str | None = None
    next_header: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> "NextUrlPaginator":
        if self.next_path and self.next_header:
            raise ValueError("give `next_path` or `next_header`, not both")
        return self


class LinkHeaderPaginator(PaginatorBase):
    type: Literal["link_header"]


class KeysetPaginator(PaginatorBase):
    type: Literal["keyset"]
    param: str = "since_id"
    field: str = "id"
    inclusive: bool = False
    limit_param: str | None = "limit"
    limit: int | None = Field(100, ge=1)


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


class IncrementalConfig(Model):
    cursor_field: str
    param: str
    initial_value: str | None = None
    lookback_seconds: float = Field(0.0, ge=0)
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
        return re.findall(r"\{([A-Za-z_][A-Za-z0-9_]*)\}", self.path)

    @model_validator(mode="after")
    def _consistent(self) -> "EndpointConfig":
        if self.incremental is not None and self.window is not None:
            raise ValueError("an endpoint is `incremental` or `window`, not both")
        missing = set(self.placeholders) - set(self.parent.fields if self.parent else {})
        if missing:
            raise ValueError(
                f"path placeholders {sorted(missing)} need a `parent:` that maps them to fields"
            )
        return self


# --- webhooks --------------------------------------------------------------------------------


class WebhooksConfig(Model):
    scheme: Literal["github", "stripe", "standard", "hmac"]
    secret: SecretStr
    tolerance_seconds: int = Field(300, ge=1)
    max_body_bytes: int = Field(1024 * 1024, ge=1)
    # generic `hmac` scheme only
    signature_header: str | None = None
    algorithm: Literal["sha1", "sha256", "sha512"] = "sha256"
    encoding: Literal["hex", "base64"] = "hex"
    prefix: str = ""
    timestamp_header: str | None = None
    event_id_header: str | None = None
    event_id_path: str | None = None
    event_type_path: str | None = None

    @model_validator(mode="after")
    def _hmac_keys(self) -> "WebhooksConfig":
        if self.scheme == "hmac":
            if not self.signature_header:
                raise ValueError("scheme `hmac` needs `signature_header`")
            if not (self.event_id_header or self.event_id_path):
                raise ValueError("scheme `hmac` needs `event_id_header` or `event_id_path`")
        return self


# --- sources ---------------------------------------------------------------------------------


class SourceConfig(Model):
    name: str = Field(pattern=NAME_PATTERN)
    base_url: str
    headers: dict[str, str] = {}
    timeout_seconds: float = Field(30.0, gt=0)
    auth: AuthConfig = NoAuth()
    rate_limit: RateLimitConfig = RateLimitConfig()
    retry: RetryConfig = RetryConfig()
    partitions: PartitionsConfig = PartitionsConfig()
    schedule: str | None = None
    schema_drift: SchemaDriftConfig = SchemaDriftConfig()
    endpoints: list[EndpointConfig] = []
    webhooks: WebhooksConfig | None = None

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        if not re.match(r"^https?://[^/\s]+", v):
            raise ValueError(f"not an http(s) URL: {v!r}")
        return v.rstrip("/")

    def endpoint(self, name: str) -> EndpointConfig:
        for e in self.endpoints:
            if e.name == name:
                return e
        raise KeyError(name)


class SourcesFile(Model):
    sources: list[SourceConfig]
