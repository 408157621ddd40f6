"""Auth flows: one `httpx.Auth` per auth type, built by `build_auth(source)`.

Every flow is an `ApiAuth`: it knows the origins it may send credentials to (`allowed_origins`:
the base URL's and the token URL's scheme, host and port) and sends any other request bare, with
credential headers and parameters stripped (its own, and every static header of the sources
file whose name looks like a credential), because a next-page URL or a Link header may point
anywhere (`origins.py` decides which of them are followed at all). `label` describes the
credential without revealing it.

Token flows (OAuth2 client credentials, refresh token, JWT assertion grant) keep ONE token per
credential per process (`token_cache`, keyed by token URL, client and scopes) shared by every
endpoint and thread: double-checked locking means N threads cause one token request. A token is
refreshed `refresh_margin_seconds` before it expires (never more than half its lifetime early);
a 401 from the API invalidates it (if it is still the cached one), refreshes once and resends
once, and a second 401 is an `AuthError`. Token endpoint refusals are `AuthError`s naming the
source and the token URL; 429, 5xx and transport errors on the token call are retried — except
for a grant that spends a rotating refresh token: retried only on a 429 or when no connection
was made (a timeout after sending, a dropped connection or a 5xx may have spent the token and
lost the new one, and a provider that sees a spent token again revokes its whole family). The
refresh token flow then fails with an `AuthError` and marks the token in the credential store,
so that no thread, process or later run presents it again before someone has checked; the
client credentials flow falls back to its client credentials grant.

Flows are synchronous (`httpx.Client`) and safe to share between threads. Every secret they
obtain at runtime (access tokens, rotated refresh tokens, signed JWTs) is registered with the
source's `Redactor` before it is sent.
"""

import base64
import dataclasses
import functools
import hashlib
import json
import math
import threading
import time
import uuid
from collections.abc import Callable, Generator, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import jwt

from api_assets.config.models import (
    ApiKeyAuth,
    ApiKeyRotationAuth,
    BasicAuth,
    BearerAuth,
    JwtBearerAuth,
    NoAuth,
    OAuth2ClientCredentialsAuth,
    OAuth2RefreshTokenAuth,
    SourceConfig,
)
from api_assets.errors import AuthError, ConnectionSetupError, FetchError
from api_assets.http.connection import client_options
from api_assets.http.credentials import CredentialStore, credential_key
from api_assets.http.headers import header, parse_rate_limit, parse_retry_after
from api_assets.http.redact import Redactor, is_credential_header, secret_values
from api_assets.http.retry import RETRY_STATUSES, TRANSIENT_ERRORS, UNSENT_ERRORS, RetryPolicy

Origin = tuple[str, str, int]
Clock = Callable[[], float]
Sleep = Callable[[float], None]

DEFAULT_TOKEN_LIFETIME = 3600.0  # when the token response has no usable `expires_in`
JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
TOKEN_CALL_ATTEMPTS = 4
# a grant that spends its refresh token is retried on a 429 (the server says it turned the
# request away) but not on a 5xx (it may have spent the token and failed answering)
SPENDING_RETRY_STATUSES = frozenset({429})
DEFAULT_KEY_PARK_SECONDS = 60.0  # an exhausted api key whose reset the server did not state

_DEFAULT_PORTS = {"http": 80, "https": 443}


def origin_of(url: httpx.URL | str) -> Origin:
    """(scheme, host, port) with the default port filled in."""
    url = httpx.URL(url) if isinstance(url, str) else url
    scheme = url.scheme.lower()
    return scheme, url.host.lower(), url.port or _DEFAULT_PORTS.get(scheme, 0)


# --- the base flow -------------------------------------------------------------------------


class ApiAuth(httpx.Auth):
    """An auth flow that never attaches credentials outside `allowed_origins`."""

    #: the server's rate-limit headers describe one of several credentials (key rotation): the
    #: flow handles them itself, and a source-wide limiter should not pause on them
    per_credential_budget = False

    def __init__(self, *, label: str, allowed_origins: Iterable[Origin]):
        self.label = label
        self.allowed_origins = frozenset(allowed_origins)
        self._strip_headers: tuple[str, ...] = ("Authorization",)
        self._strip_params: tuple[str, ...] = ()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.label})"

    def allows(self, url: httpx.URL | str) -> bool:
        return origin_of(url) in self.allowed_origins

    def keep_home(self, headers: Iterable[str]) -> None:
        """Strip these headers too outside `allowed_origins`: static credentials from the
        sources file's `headers:` (`Private-Token`, `Cookie`, an `X-API-Key` with `auth: none`)."""
        self._strip_headers = (*self._strip_headers, *headers)

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        if not self.allows(request.url):
            # a foreign origin (a next link, a Link header): send it bare
            for name in self._strip_headers:
                if name in request.headers:
                    del request.headers[name]
            for param in self._strip_params:
                if param in request.url.params:
                    request.url = request.url.copy_remove_param(param)
            yield request
            return
        yield from self.authorized_flow(request)

    async def async_auth_flow(self, request: httpx.Request) -> Any:  # pragma: no cover
        raise RuntimeError("api_assets auth flows are synchronous: use httpx.Client")
        yield request

    def authorized_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        """The flow for a request to an allowed origin (override `apply` or this)."""
        self.apply(request)
        yield request

    def apply(self, request: httpx.Request) -> None:
        """Attach the credential to `request`."""


class NoAuthFlow(ApiAuth):
    """No credential."""


class ApiKeyFlow(ApiAuth):
    """A static key in a header or a query parameter."""

    def __init__(self, name: str, value: str, location: str, **kw: Any):
        super().__init__(**kw)
        self.name, self._value, self.location = name, value, location
        if location == "query":
            self._strip_params = (name,)
        else:
            self._strip_headers = ("Authorization", name)

    def apply(self, request: httpx.Request) -> None:
        _put_key(request, self.name, self._value, self.location)


def _put_key(request: httpx.Request, name: str, value: str, location: str) -> None:
    if location == "query":
        request.url = request.url.copy_set_param(name, value)  # replaces an echoed one
    else:
        request.headers[name] = value


class BearerFlow(ApiAuth):
    """A static bearer token."""

    def __init__(self, token: str, **kw: Any):
        super().__init__(**kw)
        self._header = f"Bearer {token}"

    def apply(self, request: httpx.Request) -> None:
        request.headers["Authorization"] = self._header


class BasicFlow(ApiAuth):
    """HTTP Basic."""

    def __init__(self, username: str, password: str, **kw: Any):
        super().__init__(**kw)
        pair = f"{username}:{password}".encode()
        self._header = f"Basic {base64.b64encode(pair).decode()}"

    def apply(self, request: httpx.Request) -> None:
        request.headers["Authorization"] = self._header


# --- tokens and their process-wide cache -----------------------------------------------------


@dataclasses.dataclass(frozen=True, repr=False)
class Token:
    """An access token; times are on the flow's clock."""

    access_token: str
    expires_at: float
    issued_at: float
    refresh_token: str | None = None
    expiry_known: bool = True
    revoked: bool = False

    def __repr__(self) -> str:
        return f"Token(***, expires_at={self.expires_at}, expiry_known={self.expiry_known})"

    def stale(self, now: float, margin: float) -> bool:
        """Due for a refresh: revoked, or within `margin` of expiry (at most half its life)."""
        lifetime = self.expires_at - self.issued_at
        return self.revoked or now >= self.expires_at - min(margin, lifetime / 2)


class TokenCache:
    """The one current token of a credential, and the lock its refresh happens under."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.token: Token | None = None


_CACHES: dict[str, TokenCache] = {}
_CACHES_LOCK = threading.Lock()


def token_cache(*parts: str) -> TokenCache:
    """The process-wide cache of the credential identified by `parts` (token URL, client, scopes
    and the secret itself: two sources that share a client id but not its secret must never share
    a token, or a wrong secret would ride on the right one's token). Only a hash of the parts is
    kept."""
    key = hashlib.sha256("\0".join(parts).encode()).hexdigest()
    with _CACHES_LOCK:
        cache = _CACHES.get(key)
        if cache is None:
            cache = _CACHES[key] = TokenCache()
        return cache


def clear_token_caches() -> None:
    """Forget every cached token of this process (tests, or after rotating secrets)."""
    with _CACHES_LOCK:
        _CACHES.clear()


class TokenEndpointError(AuthError):
    """The token endpoint refused the request; `error` is the OAuth error code, if any."""

    def __init__(self, message: str, *, error: str | None = None, status: int | None = None):
        super().__init__(message)
        self.error = error
        self.status = status


class GrantInDoubt(AuthError):
    """A grant that spends what it presents (a rotating refresh token) reached the token
    endpoint, and no answer says whether it was spent (a timeout after sending, a dropped
    connection, a 5xx): it must not be presented again blindly. `what` says what happened."""

    def __init__(self, message: str, *, what: str):
        super().__init__(message)
        self.what = what


def parse_expires_in(value: Any) -> float | None:
    """`expires_in` as seconds: a number or a numeric string; None when missing or unusable."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return None
    if isinstance(value, int | float) and math.isfinite(value) and value > 0:
        return float(value)
    return None


class TokenFlow(ApiAuth):
    """Bearer access tokens from a token endpoint, shared through `token_cache`."""

    grant_name = "credential"

    def __init__(
        self,
        *,
        source_name: str,
        token_url: str,
        cache: TokenCache,
        refresh_margin_seconds: float,
        scopes: list[str],
        redactor: Redactor,
        clock: Clock,
        sleep: Sleep,
        client_options: Callable[[], dict[str, Any]],
        timeout: float,
        **kw: Any,
    ):
        super().__init__(**kw)
        self.source_name = source_name
        self.token_url = token_url
        self.scopes = list(scopes)
        self._cache = cache
        self._margin = refresh_margin_seconds
        self._redactor = redactor
        self._clock = clock
        self._sleep = sleep
        self._client_options = client_options  # the source's TLS, proxy and HTTP/2 settings
        self._timeout = timeout
        self._registered: Token | None = None

    # --- the token ---------------------------------------------------------------------------

    def access_token(self, *, force_refresh: bool = False) -> str:
        """The current access token (obtained or refreshed as needed)."""
        if force_refresh:
            token = self._cache.token
            if token is not None:
                self._invalidate(token)
        return self._current().access_token

    def _current(self) -> Token:
        token = self._cache.token
        if token is None or token.stale(self._clock(), self._margin):
            with self._cache.lock:  # double-checked: one refresh however many threads ask
                token = self._cache.token
                if token is None or token.stale(self._clock(), self._margin):
                    token = self._obtain(token)
                    self._register(token)
                    self._cache.token = token
        if token is not self._registered:
            self._register(token)  # another flow (endpoint, source) obtained it
        return token

    def _register(self, token: Token) -> None:
        self._redactor.add(token.access_token, runtime=True)
        if token.refresh_token:
            self._redactor.add(token.refresh_token, runtime=True)
        self._registered = token

    def _invalidate(self, used: Token) -> None:
        with self._cache.lock:
            if self._cache.token is used:  # not if another thread already replaced it
                self._cache.token = dataclasses.replace(used, revoked=True)

    def _obtain(self, previous: Token | None) -> Token:
        """A new token (called under the cache lock)."""
        raise NotImplementedError

    # --- the flow ----------------------------------------------------------------------------

    def authorized_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        request.read()  # the request may be sent twice
        token = self._current()
        request.headers["Authorization"] = f"Bearer {token.access_token}"
        response = yield request
        if response.status_code != 401:
            return
        self._invalidate(token)
        token = self._current()
        request.headers["Authorization"] = f"Bearer {token.access_token}"
        response = yield request
        if response.status_code == 401:
            raise AuthError(
                f"source `{self.source_name}`: the API answered 401 to a freshly issued access "
                f"token from {self._redactor.url(self.token_url)} (after one refresh): check that "
                f"the {self.grant_name} may call {self._redactor.url(str(request.url.copy_with(query=None)))}"
                f"{' with scopes ' + ' '.join(self.scopes) if self.scopes else ''}"
            )

    # --- the token endpoint ------------------------------------------------------------------

    def _post_token(
        self, form: dict[str, str], *, basic: tuple[str, str] | None = None, spends: bool = False
    ) -> dict[str, Any]:
        """POST to the token endpoint (retrying 429, 5xx and transport errors) and return the
        JSON body of a successful answer; raise `TokenEndpointError` for a refusal.

        A grant that `spends` what it presents (a rotating refresh token) is retried only on a
        429 and when no connection was made (`UNSENT_ERRORS`): a timeout after sending, a dropped
        connection or a 5xx raise `GrantInDoubt`, since the server may have spent it."""
        if self.scopes and "scope" not in form:
            form = {**form, "scope": " ".join(self.scopes)}
        where = (
            f"source `{self.source_name}`: the token endpoint {self._redactor.url(self.token_url)}"
        )

        def send() -> httpx.Response:
            client_auth = httpx.USE_CLIENT_DEFAULT if basic is None else httpx.BasicAuth(*basic)
            with httpx.Client(timeout=self._timeout, **self._client_options()) as client:
                return client.post(
                    self.token_url,
                    data=form,
                    auth=client_auth,
                    headers={"Accept": "application/json"},
                )

        policy = RetryPolicy(
            TOKEN_CALL_ATTEMPTS,
            30.0,
            base_seconds=0.5,
            sleep=self._sleep,
            redactor=self._redactor,
            retry_statuses=SPENDING_RETRY_STATUSES if spends else RETRY_STATUSES,
            retry_errors=UNSENT_ERRORS if spends else TRANSIENT_ERRORS,
        )
        try:
            response, _ = policy.call(send)
        except ConnectionSetupError as exc:  # TLS or the proxy refused: waiting cannot help
            raise AuthError(f"{where}: {self._redactor.text(str(exc))}") from None
        except FetchError as exc:
            raise AuthError(
                f"{where} did not answer: {self._redactor.text(str(exc))}; "
                "try again later or check token_url"
            ) from None
        except httpx.TransportError as exc:
            if not spends or not isinstance(exc, TRANSIENT_ERRORS):
                raise
            what = self._redactor.text(f"{type(exc).__name__}: {exc}")
            raise GrantInDoubt(f"{where}: {what}", what=what) from None
        if spends and response.status_code >= 500:
            what = f"HTTP {response.status_code}"
            raise GrantInDoubt(f"{where}: {what}", what=what)
        return self._token_of(response, where)

    def _token_of(self, response: httpx.Response, where: str) -> dict[str, Any]:
        """The JSON body of a successful token answer; `TokenEndpointError` for a refusal."""
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code == 200 and isinstance(body, dict) and body.get("access_token"):
            return body
        error = body.get("error") if isinstance(body, dict) else None
        error = error if isinstance(error, str) else None
        description = body.get("error_description") if isinstance(body, dict) else None
        detail = f"HTTP {response.status_code}" + (f", {error}" if error else "")
        if isinstance(description, str) and description:
            detail += f": {self._redactor.text(description[:200])}"
        elif response.status_code == 200:
            detail += ": no access_token in the answer"
        raise TokenEndpointError(
            f"{where} refused the {self.grant_name} ({detail}). {self._advice(error, response.status_code)}",
            error=error,
            status=response.status_code,
        )

    def _advice(self, error: str | None, status: int) -> str:
        if error == "invalid_scope":
            return "Check `scopes` of this source."
        if error == "invalid_client" or status == 401:
            return "Check client_id and client_secret of this source (set from the environment)."
        return "Check the auth settings of this source."

    def _token_from(self, body: dict[str, Any], *, keep_refresh: str | None = None) -> Token:
        now = self._clock()
        access = str(body["access_token"])
        refresh = body.get("refresh_token")
        refresh = refresh if isinstance(refresh, str) and refresh else keep_refresh
        expires_in = parse_expires_in(body.get("expires_in"))
        lifetime = DEFAULT_TOKEN_LIFETIME if expires_in is None else expires_in
        token = Token(access, now + lifetime, now, refresh, expiry_known=expires_in is not None)
        self._register(token)  # before anyone can send or log it
        return token


class ClientCredentialsFlow(TokenFlow):
    """OAuth2 client credentials (RFC 6749 §4.4); uses a refresh token when one is offered."""

    grant_name = "client credentials"

    def __init__(self, client_id: str, client_secret: str, client_auth: str, **kw: Any):
        super().__init__(**kw)
        self.client_id = client_id
        self._secret = client_secret
        self.client_auth = client_auth

    def _client_form(self) -> tuple[dict[str, str], tuple[str, str] | None]:
        if self.client_auth == "body":
            return {"client_id": self.client_id, "client_secret": self._secret}, None
        return {}, (self.client_id, self._secret)

    def _obtain(self, previous: Token | None) -> Token:
        extra, basic = self._client_form()
        if previous is not None and previous.refresh_token:
            form = {"grant_type": "refresh_token", "refresh_token": previous.refresh_token}
            try:
                body = self._post_token({**form, **extra}, basic=basic, spends=True)
                return self._token_from(body, keep_refresh=previous.refresh_token)
            except GrantInDoubt:
                pass  # it may be spent: never presented again; the client credentials spend nothing
            except TokenEndpointError as exc:
                if exc.error != "invalid_grant":
                    raise
                # the refresh token is spent or revoked: the client credentials still work
        body = self._post_token({"grant_type": "client_credentials", **extra}, basic=basic)
        return self._token_from(body)


class RefreshTokenFlow(TokenFlow):
    """OAuth2 refresh token grant (RFC 6749 §6) with rotated refresh tokens kept in the
    credential store, spent under a cross-process lock."""

    grant_name = "refresh token"

    def __init__(
        self,
        client_id: str,
        client_secret: str | None,
        client_auth: str,
        refresh_token: str,
        store: CredentialStore,
        **kw: Any,
    ):
        super().__init__(**kw)
        self.client_id = client_id
        self._secret = client_secret
        self.client_auth = client_auth
        self._initial = refresh_token
        # which configured refresh token the stored chain descends from: a new one in the
        # environment (consent renewed) wins over what the store kept
        self._seed = hashlib.sha256(refresh_token.encode()).hexdigest()[:16]
        self.store = store
        self.store_key = credential_key(self.token_url, client_id)

    def _stored(self) -> tuple[str, str | None]:
        """The refresh token to spend next, and what happened when a grant that presented it
        got no answer (`in_doubt`; None when it may be spent)."""
        raw = self.store.get(self.store_key)
        if raw is None:
            return self._initial, None
        try:
            record = json.loads(raw)
        except ValueError:
            return raw.strip(), None
        if (
            isinstance(record, dict)
            and record.get("seed") == self._seed
            and record.get("refresh_token")
        ):
            token = str(record["refresh_token"])
            self._redactor.add(token, runtime=True)
            in_doubt = record.get("in_doubt")
            return token, str(in_doubt) if in_doubt else None
        return self._initial, None

    def _keep(self, refresh_token: str, *, in_doubt: str | None = None) -> None:
        record = {"refresh_token": refresh_token, "seed": self._seed}
        if in_doubt is not None:
            record["in_doubt"] = in_doubt
        self.store.put(self.store_key, json.dumps(record))  # fsync-ed before anyone goes on

    def _in_doubt_error(self, what: str, *, earlier: bool) -> AuthError:
        when = "an earlier refresh token grant" if earlier else "the refresh token grant"
        path = self.store.directory / f"{self.store_key}.secret"
        return AuthError(
            f"source `{self.source_name}`: {when} to {self._redactor.url(self.token_url)} failed "
            f"after it was sent ({what}): the provider may have rotated the refresh token "
            "and the answer was lost. It is not sent again, by this run or any other, because a "
            "provider that sees a spent refresh token again revokes the whole token family. "
            "Check the application's grant at the provider: if it was revoked (or you cannot "
            "tell), authorize the application again and set the new refresh_token of this "
            "source (a new one replaces what the credential store kept); if it is still valid, "
            f"set refresh_token to the `refresh_token` kept in {path} and delete that file"
        )

    def _obtain(self, previous: Token | None) -> Token:
        form: dict[str, str] = {"grant_type": "refresh_token"}
        basic = None
        if self._secret is not None and self.client_auth == "basic":
            basic = (self.client_id, self._secret)
        else:
            form["client_id"] = self.client_id
            if self._secret is not None:
                form["client_secret"] = self._secret
        with self.store.lock(self.store_key):
            # re-read inside the lock: another process may have rotated it already
            current, in_doubt = self._stored()
            if in_doubt is not None:
                raise self._in_doubt_error(in_doubt, earlier=True)
            try:
                body = self._post_token(
                    {**form, "refresh_token": current}, basic=basic, spends=True
                )
            except GrantInDoubt as exc:
                # marked in the store: no thread, step or later run presents it again unasked
                when = f"{datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC"
                self._keep(current, in_doubt=f"{exc.what}, at {when}")
                raise self._in_doubt_error(exc.what, earlier=False) from None
            except TokenEndpointError as exc:
                if exc.error == "invalid_grant":
                    raise AuthError(
                        f"source `{self.source_name}`: the token endpoint "
                        f"{self._redactor.url(self.token_url)} refused the refresh token "
                        "(invalid_grant): it was revoked or has expired, so the consent must be "
                        "renewed: authorize the application again and set the new refresh_token"
                    ) from None
                raise
            token = self._token_from(body, keep_refresh=current)
            if token.refresh_token and token.refresh_token != current:
                self._keep(token.refresh_token)  # before the new access token is used
        return token


class JwtSigner:
    """Signs short-lived JWTs (claims + iat, exp, a unique jti) and re-signs before exp."""

    def __init__(
        self,
        key: str,
        algorithm: str,
        claims: dict[str, Any],
        lifetime_seconds: float,
        margin_seconds: float,
        clock: Clock,
        redactor: Redactor,
    ):
        self._key = key
        self.algorithm = algorithm
        self.claims = dict(claims)
        self.lifetime = float(lifetime_seconds)
        self.margin = min(margin_seconds, self.lifetime / 2)
        self._clock = clock
        self._redactor = redactor
        self._lock = threading.Lock()
        self._current: tuple[str, float] | None = None  # (jwt, exp)

    def sign(self) -> str:
        """A new JWT."""
        return self._sign()[0]

    def _sign(self) -> tuple[str, float]:
        now = self._clock()
        exp = now + self.lifetime
        claims = {**self.claims, "iat": int(now), "exp": int(exp), "jti": uuid.uuid4().hex}
        token = jwt.encode(claims, self._key, algorithm=self.algorithm)
        self._redactor.add(token, runtime=True)  # before it is sent anywhere
        return token, exp

    def current(self, *, force: bool = False) -> str:
        """The cached JWT, re-signed when it is within the margin of `exp`."""
        cur = self._current
        if force or cur is None or self._clock() >= cur[1] - self.margin:
            with self._lock:
                if force or self._current is cur:  # not if another thread just re-signed
                    self._current = self._sign()
                cur = self._current
        assert cur is not None
        return cur[0]


class JwtBearerFlow(ApiAuth):
    """A self-signed JWT as the bearer token."""

    def __init__(self, signer: JwtSigner, source_name: str, **kw: Any):
        super().__init__(**kw)
        self.signer = signer
        self.source_name = source_name

    def authorized_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        request.read()
        token = self.signer.current()
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code != 401:
            return
        # re-sign once (clock skew, a server that saw the jti): then the key itself is refused
        request.headers["Authorization"] = f"Bearer {self.signer.current(force=True)}"
        response = yield request
        if response.status_code == 401:
            raise AuthError(
                f"source `{self.source_name}`: the API answered 401 to a freshly signed JWT "
                f"({self.signer.algorithm}): check the key, `algorithm` and `claims` (iss, sub, aud)"
            )


class JwtGrantFlow(TokenFlow):
    """RFC 7523: a signed JWT exchanged at the token endpoint for an access token."""

    grant_name = "JWT assertion"

    def __init__(self, signer: JwtSigner, **kw: Any):
        super().__init__(**kw)
        self.signer = signer

    def _obtain(self, previous: Token | None) -> Token:
        body = self._post_token({"grant_type": JWT_BEARER_GRANT, "assertion": self.signer.sign()})
        return self._token_from(body)


# --- api key rotation --------------------------------------------------------------------


@dataclasses.dataclass
class _KeyState:
    remaining: float = math.inf  # unknown until a response says
    parked_until: float = -math.inf
    last_used: int = -1


class KeyRotationFlow(ApiAuth):
    """Several API keys: each request uses the key with the most remaining quota (from the last
    rate-limit headers seen for it); a key at zero or answered 429 is parked until its reset; a
    429 is resent at once with another key when one is free; when every key is parked, the
    request waits (injectable sleep) for the earliest reset."""

    per_credential_budget = True

    def __init__(
        self,
        name: str,
        location: str,
        values: list[str],
        *,
        clock: Clock,
        sleep: Sleep,
        **kw: Any,
    ):
        super().__init__(**kw)
        self.name, self.location = name, location
        self._values = list(values)
        self._states = [_KeyState() for _ in values]
        self._lock = threading.Lock()
        self._uses = 0
        self._clock = clock
        self._sleep = sleep
        if location == "query":
            self._strip_params = (name,)
        else:
            self._strip_headers = ("Authorization", name)

    def remaining(self) -> list[float]:
        """The remaining quota believed for each key, in config order (inf: unknown)."""
        with self._lock:
            return [s.remaining for s in self._states]

    def parked(self) -> list[bool]:
        now = self._clock()
        with self._lock:
            return [s.parked_until > now for s in self._states]

    def choose(self) -> int:
        """The index of the key to use next (waits while every key is parked)."""
        while True:
            with self._lock:
                now = self._clock()
                free = []
                for i, s in enumerate(self._states):
                    if s.parked_until <= now:
                        if s.parked_until > -math.inf:  # its reset came: the quota is back
                            s.parked_until, s.remaining = -math.inf, math.inf
                        free.append(i)
                if free:
                    best = max(
                        free, key=lambda i: (self._states[i].remaining, -self._states[i].last_used)
                    )
                    state = self._states[best]
                    state.remaining -= 1  # in flight: spends one before the answer says so
                    state.last_used = self._uses
                    self._uses += 1
                    return best
                wake = min(s.parked_until for s in self._states)
            self._sleep(max(0.0, wake - now))

    def observe(self, index: int, response: httpx.Response) -> None:
        """Learn key `index`'s quota from a response to a request that used it."""
        state = parse_rate_limit(response.headers, time.time())
        with self._lock:
            s = self._states[index]
            now = self._clock()
            if response.status_code == 429:
                value = header(response.headers, "retry-after")
                wait = parse_retry_after(value, datetime.now(UTC)) if value else None
                if wait is None and state is not None:
                    wait = state.reset_after_seconds
                s.remaining = 0
                s.parked_until = now + (DEFAULT_KEY_PARK_SECONDS if wait is None else wait)
            elif state is not None and state.remaining is not None:
                s.remaining = state.remaining
                if state.remaining <= 0:
                    reset = state.reset_after_seconds
                    s.parked_until = now + (DEFAULT_KEY_PARK_SECONDS if reset is None else reset)

    def _any_free(self) -> bool:
        now = self._clock()
        with self._lock:
            return any(s.parked_until <= now for s in self._states)

    def authorized_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        request.read()
        for _ in range(len(self._values)):
            index = self.choose()
            _put_key(request, self.name, self._values[index], self.location)
            response = yield request
            self.observe(index, response)
            if response.status_code != 429 or not self._any_free():
                return  # a 429 with every key parked goes to the retry policy (Retry-After)


# --- build_auth ----------------------------------------------------------------------------


@dataclasses.dataclass
class FlowContext:
    """What every flow builder may use: the source, its redactor (each builder registers the
    names and encodings of its secrets), and the arguments the flows share."""

    source: SourceConfig
    redactor: Redactor
    credential_dir: Path | None
    clock: Clock
    sleep: Sleep
    common: dict[str, Any]  # for every flow
    token_common: dict[str, Any]  # for flows that call a token endpoint

    @property
    def host(self) -> str:
        return httpx.URL(self.source.base_url).host

    def key_name(self, name: str, location: str) -> None:
        """A key sent under `name` is a secret wherever it shows: in a query or a header."""
        if location == "query":
            self.redactor.add_param_name(name)
        else:
            self.redactor.add_header_name(name)


FlowBuilder = Callable[[Any, FlowContext], ApiAuth]
FLOWS: dict[str, FlowBuilder] = {}


def flow(type_name: str) -> Callable[[FlowBuilder], FlowBuilder]:
    """Register the builder of the flow for `auth: {type: type_name}`."""

    def register(builder: FlowBuilder) -> FlowBuilder:
        FLOWS[type_name] = builder
        return builder

    return register


def build_auth(
    source: SourceConfig,
    *,
    redactor: Redactor,
    credential_dir: Path | None = None,
    transport: httpx.BaseTransport | None = None,
    clock: Clock = time.time,
    sleep: Sleep = time.sleep,
) -> ApiAuth:
    """The auth flow of `source`, from the builder registered for its `type`. Token calls go
    through their own `httpx.Client`, made as every connection of the source is
    (`connection.client_options`: its TLS, proxy and HTTP/2 settings), on `transport` (default:
    the network); `clock` and `sleep` are injectable for tests."""
    auth = source.auth
    for secret in secret_values(auth):
        redactor.add(secret)
    origins = {origin_of(source.base_url)}
    token_url = getattr(auth, "token_url", None)
    if token_url:
        origins.add(origin_of(token_url))
    context = FlowContext(
        source=source,
        redactor=redactor,
        credential_dir=credential_dir,
        clock=clock,
        sleep=sleep,
        common={"allowed_origins": origins},
        token_common={
            "source_name": source.name,
            "redactor": redactor,
            "clock": clock,
            "sleep": sleep,
            "client_options": functools.partial(client_options, source, transport=transport),
            "timeout": source.timeout_seconds,
            "allowed_origins": origins,
        },
    )
    built = FLOWS[auth.type](auth, context)
    static = [source.headers, *(e.headers for e in source.endpoints)]
    built.keep_home(dict.fromkeys(h for hs in static for h in hs if is_credential_header(h)))
    return built


@flow("none")
def _no_auth(auth: NoAuth, ctx: FlowContext) -> ApiAuth:
    return NoAuthFlow(label=f"none@{ctx.host}", **ctx.common)


@flow("api_key")
def _api_key(auth: ApiKeyAuth, ctx: FlowContext) -> ApiAuth:
    ctx.key_name(auth.name, auth.location)
    value = auth.value.get_secret_value()
    return ApiKeyFlow(auth.name, value, auth.location, label=f"api_key@{ctx.host}", **ctx.common)


@flow("bearer")
def _bearer(auth: BearerAuth, ctx: FlowContext) -> ApiAuth:
    return BearerFlow(auth.token.get_secret_value(), label=f"bearer@{ctx.host}", **ctx.common)


@flow("basic")
def _basic(auth: BasicAuth, ctx: FlowContext) -> ApiAuth:
    password = auth.password.get_secret_value()
    ctx.redactor.add(base64.b64encode(f"{auth.username}:{password}".encode()).decode())
    return BasicFlow(auth.username, password, label=f"basic@{ctx.host}", **ctx.common)


@flow("api_key_rotation")
def _api_key_rotation(auth: ApiKeyRotationAuth, ctx: FlowContext) -> ApiAuth:
    ctx.key_name(auth.name, auth.location)
    return KeyRotationFlow(
        auth.name,
        auth.location,
        [v.get_secret_value() for v in auth.values],
        clock=ctx.clock,
        sleep=ctx.sleep,
        label=f"api_key_rotation@{ctx.host}",
        **ctx.common,
    )


@flow("oauth2_client_credentials")
def _client_credentials(auth: OAuth2ClientCredentialsAuth, ctx: FlowContext) -> ApiAuth:
    secret = auth.client_secret.get_secret_value()
    return ClientCredentialsFlow(
        auth.client_id,
        secret,
        auth.client_auth,
        token_url=auth.token_url,
        cache=token_cache(
            "client_credentials", auth.token_url, auth.client_id, secret, *sorted(auth.scopes)
        ),
        refresh_margin_seconds=auth.refresh_margin_seconds,
        scopes=auth.scopes,
        label=f"oauth2_client_credentials@{httpx.URL(auth.token_url).host}",
        **ctx.token_common,
    )


@flow("oauth2_refresh_token")
def _refresh_token(auth: OAuth2RefreshTokenAuth, ctx: FlowContext) -> ApiAuth:
    secret = None if auth.client_secret is None else auth.client_secret.get_secret_value()
    return RefreshTokenFlow(
        auth.client_id,
        secret,
        auth.client_auth,
        auth.refresh_token.get_secret_value(),
        CredentialStore(ctx.credential_dir),
        token_url=auth.token_url,
        cache=token_cache(
            "refresh_token", auth.token_url, auth.client_id, secret or "", *sorted(auth.scopes)
        ),
        refresh_margin_seconds=auth.refresh_margin_seconds,
        scopes=auth.scopes,
        label=f"oauth2_refresh_token@{httpx.URL(auth.token_url).host}",
        **ctx.token_common,
    )


@flow("jwt_bearer")
def _jwt_bearer(auth: JwtBearerAuth, ctx: FlowContext) -> ApiAuth:
    key = auth.secret if auth.secret is not None else auth.private_key
    assert key is not None  # the model requires exactly one
    signer = JwtSigner(
        key.get_secret_value(),
        auth.algorithm,
        auth.claims,
        auth.lifetime_seconds,
        auth.refresh_margin_seconds,
        ctx.clock,
        ctx.redactor,
    )
    if auth.token_url is None:
        return JwtBearerFlow(signer, ctx.source.name, label=f"jwt_bearer@{ctx.host}", **ctx.common)
    claims = auth.claims
    return JwtGrantFlow(
        signer,
        token_url=auth.token_url,
        cache=token_cache(
            "jwt_bearer",
            auth.token_url,
            str(claims.get("iss", "")),
            str(claims.get("sub", "")),
            key.get_secret_value(),
            *sorted(auth.scopes),
        ),
        refresh_margin_seconds=auth.refresh_margin_seconds,
        scopes=auth.scopes,
        label=f"jwt_bearer@{httpx.URL(auth.token_url).host}",
        **ctx.token_common,
    )
