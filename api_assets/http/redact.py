"""Secret redaction: one `Redactor` per source masks every secret it has been told about.

A secret is registered once (`add`) and is then masked wherever it shows up: in free text
(`text`), in URLs (`url`: userinfo dropped, secret query parameters masked), in parameter dicts
(`params`) and in header dicts (`headers`). Static secrets come from the sources file
(`Redactor.for_source`); runtime secrets (access tokens, rotated refresh tokens, signed JWTs) are
registered by the auth flows the moment they are obtained, before they are ever sent. Every
`SourceClient` hands its redactor to `redact_logs`, which masks them in the HTTP libraries' logs
(httpx prints each request's whole URL at INFO) at any level.

Thread-safe: registrations swap an immutable snapshot under a lock; lookups read the current
snapshot without locking, so the hot path (one `url()`/`params()` per request) stays cheap.
"""

import base64
import dataclasses
import logging
import re
import threading
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote, quote_plus, unquote, urlsplit, urlunsplit

from pydantic import BaseModel, SecretStr

from api_assets.config.models import SourceConfig

MASK = "***"

# Headers that carry credentials whatever their value (lower-case).
SECRET_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key", "api-key"}
)

# Query parameters that carry credentials whatever their value (lower-case).
SECRET_PARAMS = frozenset(
    {
        "api_key",
        "apikey",
        "api-key",
        "access_token",
        "refresh_token",
        "id_token",
        "client_secret",
        "password",
        "secret",
        "token",
        "signature",
        "sig",
        "assertion",
        "key",
    }
)

# A header or parameter name that looks like it holds a credential (used for static config).
_SECRET_NAME = re.compile(r"auth|token|secret|passw|api[-_]?key|^key$|signature|cookie", re.I)


def is_credential_header(name: str) -> bool:
    """A header name that carries a credential, or looks like it does (`Private-Token`,
    `X-Auth-User`): its value is masked, and it is never sent outside the source's origin."""
    return name.lower() in SECRET_HEADERS or _SECRET_NAME.search(name) is not None


RUNTIME_SECRETS = 256  # runtime secrets remembered (each URL-encoded form counts)


@dataclass(frozen=True)
class _Snapshot:
    static: frozenset[str]
    runtime: tuple[str, ...]
    pattern: re.Pattern[str] | None
    param_names: frozenset[str]
    header_names: frozenset[str]


def _compile(static: frozenset[str], runtime: tuple[str, ...]) -> re.Pattern[str] | None:
    # longest first, so that a secret containing another is masked whole
    alternatives = sorted(static.union(runtime), key=len, reverse=True)
    if not alternatives:
        return None
    return re.compile("|".join(re.escape(s) for s in alternatives))


class Redactor:
    """Masks registered secret values (and credential-bearing names) as `***`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._snap = _Snapshot(frozenset(), (), None, SECRET_PARAMS, SECRET_HEADERS)

    def __repr__(self) -> str:  # never show the secrets themselves
        snap = self._snap
        return f"Redactor({len(snap.static) + len(snap.runtime)} secret forms)"

    # --- registration --------------------------------------------------------------------

    def add(self, secret: str | SecretStr | None, *, runtime: bool = False) -> None:
        """Register a secret value; its URL-encoded forms are masked too. `runtime` secrets
        (access tokens, signed JWTs) are kept for the last `RUNTIME_SECRETS` registrations only,
        so that a long-lived process does not grow its pattern without bound."""
        if isinstance(secret, SecretStr):
            secret = secret.get_secret_value()
        if not secret:
            return
        forms = (secret, quote(secret, safe=""), quote_plus(secret, safe=""))
        with self._lock:
            snap = self._snap
            if all(f in snap.static or f in snap.runtime for f in forms):
                return
            static, recent = snap.static, snap.runtime
            if runtime:
                recent = (*(r for r in recent if r not in forms), *dict.fromkeys(forms))
                recent = recent[-RUNTIME_SECRETS:]
            else:
                static = static | set(forms)
            self._snap = _Snapshot(
                static, recent, _compile(static, recent), snap.param_names, snap.header_names
            )

    def add_param_name(self, name: str) -> None:
        """Register a query parameter whose value is always secret (an api_key in the query)."""
        with self._lock:
            snap = self._snap
            self._snap = dataclasses.replace(snap, param_names=snap.param_names | {name.lower()})

    def add_header_name(self, name: str) -> None:
        """Register a header whose value is always secret (the api-key header of a source)."""
        with self._lock:
            snap = self._snap
            self._snap = dataclasses.replace(snap, header_names=snap.header_names | {name.lower()})

    @classmethod
    def for_source(cls, source: SourceConfig) -> "Redactor":
        """A redactor that already knows every secret of the source's config: the SecretStr
        values of its auth, webhooks and `tls` (the client key's password), the password of its
        `proxy` URL, plus static headers and endpoint params whose names say they carry a
        credential."""
        redactor = cls()
        for value in secret_values(source.auth):
            redactor.add(value)
        if source.webhooks is not None:
            redactor.add(source.webhooks.secret)
        for value in secret_values(source.tls):  # the client key's password
            redactor.add(value)
        if source.proxy is not None:
            for secret in proxy_secrets(source.proxy.get_secret_value()):
                redactor.add(secret)
        auth = source.auth
        name = getattr(auth, "name", None)
        location = getattr(auth, "location", None)
        if isinstance(name, str):
            if location == "query":
                redactor.add_param_name(name)
            else:
                redactor.add_header_name(name)
        if auth.type == "basic":
            pair = f"{auth.username}:{auth.password.get_secret_value()}"
            redactor.add(base64.b64encode(pair.encode()).decode())
        static_headers = [source.headers, *(e.headers for e in source.endpoints)]
        for headers in static_headers:
            for header_name, header_value in headers.items():
                if is_credential_header(header_name):
                    redactor.add_header_name(header_name)
                    redactor.add(_credential_part(header_value))
        for endpoint in source.endpoints:
            for param, value in {**endpoint.params, **endpoint.paginator.params}.items():
                if _SECRET_NAME.search(param) and isinstance(value, str):
                    redactor.add_param_name(param)
                    redactor.add(value)
        return redactor

    # --- masking -------------------------------------------------------------------------

    def text(self, s: str) -> str:
        """`s` with every registered secret replaced by `***`."""
        pattern = self._snap.pattern
        if pattern is None or not s:
            return s
        return pattern.sub(MASK, s)

    def url(self, u: str | Any) -> str:
        """A URL without userinfo, with secret query parameters and secret values masked."""
        u = str(u)
        try:
            parts = urlsplit(u)
        except ValueError:
            return self.text(u)
        netloc = parts.netloc.rpartition("@")[2]
        query = parts.query
        if query:
            names = self._snap.param_names
            pairs = []
            for name, value in parse_qsl(query, keep_blank_values=True):
                shown = MASK if name.lower() in names and value else self.text(value)
                pairs.append(f"{quote_plus(name)}={quote_plus(shown, safe='*')}")
            query = "&".join(pairs)
        return self.text(urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment)))

    def params(self, d: Mapping[str, Any]) -> dict[str, Any]:
        """A copy of a parameter dict with secret names and values masked."""
        names = self._snap.param_names
        out: dict[str, Any] = {}
        for name, value in d.items():
            if name.lower() in names and value not in (None, ""):
                out[name] = MASK
            elif isinstance(value, str):
                out[name] = self.text(value)
            elif isinstance(value, list | tuple):
                out[name] = [self.text(v) if isinstance(v, str) else v for v in value]
            else:
                out[name] = value
        return out

    def headers(self, h: Mapping[str, str] | Iterable[tuple[str, str]]) -> dict[str, str]:
        """A copy of a header mapping with credential headers, and any header whose value
        contains a secret, masked."""
        snap = self._snap
        items = h.items() if isinstance(h, Mapping) else h
        out: dict[str, str] = {}
        for name, value in items:
            secret_value = snap.pattern is not None and snap.pattern.search(value)
            if name.lower() in snap.header_names or secret_value:
                out[name] = MASK
            else:
                out[name] = value
        return out


# --- logs ----------------------------------------------------------------------------------

# The loggers that print what is sent: httpx's request line (INFO: the whole URL, query and all),
# httpcore's connection traces and hpack's header blocks (DEBUG), and our own. A logger's filters
# see only the records logged to it, not its children's, so each one is named.
REDACTED_LOGGERS = (
    "httpx",
    "httpcore",
    "httpcore.connection",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.proxy",
    "httpcore.socks",
    "hpack",
    "hpack.hpack",
    "hpack.table",
    "api_assets",
)

_URL_IN_TEXT = re.compile(r"https?://[^\s\"'<>]+")
# a header as httpcore and hpack print one: `(b'set-cookie', b'sid=...')`
_HEADER_IN_TEXT = re.compile(r"\(b?(['\"])(?P<name>[^'\"]*)\1, b?(['\"])(?P<value>.*?)\3\)")
_live_redactors: "weakref.WeakSet[Redactor]" = weakref.WeakSet()
_live_lock = threading.Lock()


class SecretLogFilter(logging.Filter):
    """Masks the secrets of every live `Redactor` handed to `redact_logs` in each record of the
    loggers it is on: the message is formatted once, masked (the values of credential headers
    as httpcore and hpack print them, URLs as `Redactor.url` masks them, then every secret
    value) and replaces `msg` and `args`. Free while a level is off: no record is made."""

    def filter(self, record: logging.LogRecord) -> bool:
        with _live_lock:
            redactors = list(_live_redactors)
        if not redactors:
            return True
        try:
            message = record.getMessage()
        except Exception:  # a broken format: the handler would print the args as they are
            message = f"{record.msg} {record.args!r}"
        # credential headers by name (a cookie the server set is no known secret), then values
        shown = _HEADER_IN_TEXT.sub(_masked_header, message)
        for redactor in redactors:
            shown = _masked_log_text(redactor, shown)
        if shown != message or record.args:
            record.msg, record.args = shown, ()
        return True


def _masked_header(match: re.Match[str]) -> str:
    whole = match.group(0)
    if not match["value"] or not is_credential_header(match["name"]):
        return whole
    start, end = (i - match.start() for i in match.span("value"))
    return whole[:start] + MASK + whole[end:]


def _masked_log_text(redactor: Redactor, text: str) -> str:
    return redactor.text(_URL_IN_TEXT.sub(lambda m: redactor.url(m.group(0)), text))


_LOG_FILTER = SecretLogFilter()


def redact_logs(redactor: Redactor) -> None:
    """Mask `redactor`'s secrets in every record of `REDACTED_LOGGERS`, at any level, for as long
    as the redactor lives. Idempotent: the one filter is added to each logger once."""
    with _live_lock:
        _live_redactors.add(redactor)
    for name in REDACTED_LOGGERS:
        logging.getLogger(name).addFilter(_LOG_FILTER)  # a no-op when it is there already


def secret_values(model: BaseModel) -> Iterable[SecretStr]:
    """The SecretStr values of a model's fields (and of its list fields)."""
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, SecretStr):
            yield value
        elif isinstance(value, list):
            yield from (v for v in value if isinstance(v, SecretStr))


def proxy_secrets(proxy_url: str) -> list[str]:
    """The secret parts of a proxy URL: its password (as written and percent-decoded) and the
    `Proxy-Authorization: Basic` credential made from it."""
    try:
        parts = urlsplit(proxy_url)
    except ValueError:
        return []
    if not parts.password:
        return []
    user, password = unquote(parts.username or ""), unquote(parts.password)
    basic = base64.b64encode(f"{user}:{password}".encode()).decode()
    return [parts.password, password, basic]


def shown_proxy(proxy_url: str) -> str:
    """A proxy URL as it may appear in an error: its password masked, the rest kept (which proxy
    and which user is what the reader needs)."""
    try:
        parts = urlsplit(proxy_url)
        host = parts.netloc.rpartition("@")[2]
    except ValueError:
        return MASK
    if "@" not in parts.netloc:
        return proxy_url
    user = parts.username or ""
    userinfo = f"{user}:{MASK}" if parts.password is not None else user
    return urlunsplit((parts.scheme, f"{userinfo}@{host}", parts.path, parts.query, ""))


def _credential_part(value: str) -> str:
    """`Bearer abc` → `abc`: the part of a static header value that is the credential."""
    scheme, _, rest = value.partition(" ")
    return rest if rest and scheme.lower() in {"bearer", "basic", "token", "apikey"} else value
