"""The demo API's own auth: which credential a request carries, and the OAuth token endpoint.

`identify(headers, query)` returns a non-secret label for an accepted credential — `api_key#1`,
`bearer:static`, `oauth:<client_id>`, `jwt`, `basic:demo` — or `None`. The label is also the
rate-limit bucket and what the request log shows; a secret never leaves this module.

`token(form, authorization)` is `POST /oauth/token`: client_credentials (client_secret_basic or
client_secret_post), refresh_token (rotating: a refresh token works once, a second use is
`invalid_grant`) and the RFC 7523 jwt-bearer assertion grant. Access tokens are opaque random
strings that expire `token_lifetime` seconds after issue.
"""

from __future__ import annotations

import base64
import binascii
import secrets
import time
import warnings
from dataclasses import dataclass
from typing import Any

DEMO_CREDENTIALS: dict[str, Any] = {
    "api_keys": ["demo-key-1", "demo-key-2", "demo-key-3"],
    "bearer_token": "demo-token",
    "basic": ("demo", "demo-password"),
    "client_id": "demo-client",
    "client_secret": "demo-secret",
    "jwt_secret": "demo-jwt-secret-0123456789abcdef",
}

JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"


@dataclass
class _Grant:
    label: str  # rate-limit bucket and log label of the tokens issued on this grant
    client_id: str
    scope: str
    expires_at: float = 0.0  # access tokens only


class TokenError(Exception):
    """An OAuth error answer: `status` and the RFC 6749 `error` code."""

    def __init__(self, status: int, error: str, description: str):
        self.status, self.error, self.description = status, error, description
        super().__init__(description)

    def body(self) -> dict[str, str]:
        return {"error": self.error, "error_description": self.description}


class DemoAuth:
    """Credentials the server accepts, and the tokens it has issued."""

    def __init__(self, token_lifetime: float, clock: Any = time.time):
        self.token_lifetime = token_lifetime
        self.clock = clock
        self.reset()

    def reset(self) -> None:
        c = DEMO_CREDENTIALS
        self.api_keys = {k: f"api_key#{n}" for n, k in enumerate(c["api_keys"], start=1)}
        user, password = c["basic"]
        self.basic = {
            "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode(): f"basic:{user}"
        }
        self.clients = {c["client_id"]: c["client_secret"]}
        self.access: dict[str, _Grant] = {}
        self.refresh: dict[str, _Grant] = {}
        self.used_refresh: set[str] = set()

    # --- requests -----------------------------------------------------------------------

    def identify(self, authorization: str | None, api_key: str | None) -> str | None:
        """The label of the credential of a request, or None when it has none that is valid."""
        if api_key is not None:
            return self.api_keys.get(api_key)
        if not authorization:
            return None
        scheme, _, value = authorization.partition(" ")
        scheme = scheme.lower()
        value = value.strip()
        if scheme == "bearer":
            if value == DEMO_CREDENTIALS["bearer_token"]:
                return "bearer:static"
            grant = self.access.get(value)
            if grant is not None:
                return grant.label if grant.expires_at > self.clock() else None
            if value.count(".") == 2 and self._jwt_claims(value) is not None:
                return "jwt"
            return None
        if scheme == "basic":
            return self.basic.get("Basic " + value)
        return None

    def _jwt_claims(self, token: str) -> dict[str, Any] | None:
        import jwt  # here: pyjwt pulls in cryptography, a third of a second at import
        from jwt.warnings import InsecureKeyLengthWarning

        try:
            with warnings.catch_warnings():
                # the demo secret is short on purpose (it is documented and public)
                warnings.simplefilter("ignore", InsecureKeyLengthWarning)
                claims: dict[str, Any] = jwt.decode(
                    token,
                    DEMO_CREDENTIALS["jwt_secret"],
                    algorithms=["HS256"],
                    options={"require": ["exp"], "verify_aud": False},
                )
        except jwt.PyJWTError:
            return None
        return claims

    def revoke(self, *, api_key: str | None = None, access_tokens: bool = False) -> None:
        """Stop accepting an API key, or every access token issued so far."""
        if api_key is not None:
            self.api_keys.pop(api_key, None)
        if access_tokens:
            self.access.clear()

    # --- the token endpoint -------------------------------------------------------------

    def consent(self, client_id: str, scope: str = "read") -> str:
        """A first refresh token for `client_id`, as an authorization-code consent would give."""
        if client_id not in self.clients:
            raise TokenError(400, "invalid_client", f"unknown client {client_id!r}")
        token = "rt_" + secrets.token_urlsafe(24)
        self.refresh[token] = _Grant(f"oauth:{client_id}", client_id, scope)
        return token

    def token(self, form: dict[str, str], authorization: str | None) -> dict[str, Any]:
        """Answer a token request; raises TokenError with the status and error to send."""
        grant_type = form.get("grant_type")
        client_id = self._client(form, authorization, required=grant_type == "client_credentials")
        scope = form.get("scope") or "read"
        if grant_type == "client_credentials":
            assert client_id is not None
            return self._issue(_Grant(f"oauth:{client_id}", client_id, scope))
        if grant_type == "refresh_token":
            old = form.get("refresh_token")
            if not old:
                raise TokenError(400, "invalid_request", "refresh_token is required")
            if old in self.used_refresh:
                raise TokenError(400, "invalid_grant", "refresh token was already used (rotated)")
            grant = self.refresh.pop(old, None)
            if grant is None:
                raise TokenError(400, "invalid_grant", "unknown refresh token")
            if client_id is not None and client_id != grant.client_id:
                self.refresh[old] = grant
                raise TokenError(400, "invalid_grant", "refresh token belongs to another client")
            self.used_refresh.add(old)
            return self._issue(
                _Grant(grant.label, grant.client_id, form.get("scope") or grant.scope)
            )
        if grant_type == JWT_BEARER_GRANT:
            assertion = form.get("assertion")
            if not assertion:
                raise TokenError(400, "invalid_request", "assertion is required")
            claims = self._jwt_claims(assertion)
            if claims is None:
                raise TokenError(
                    400, "invalid_grant", "assertion is not a valid, unexpired HS256 JWT"
                )
            subject = str(claims.get("sub") or claims.get("iss") or "jwt-bearer")
            return self._issue(_Grant(f"oauth:{subject}", subject, scope), refresh=False)
        if not grant_type:
            raise TokenError(400, "invalid_request", "grant_type is required")
        raise TokenError(
            400, "unsupported_grant_type", f"grant_type {grant_type!r} is not supported"
        )

    def _client(
        self, form: dict[str, str], authorization: str | None, *, required: bool
    ) -> str | None:
        """The authenticated client id (client_secret_basic or client_secret_post), None when the
        request names no client secret and `required` is false. Wrong credentials raise."""
        client_id, secret = form.get("client_id"), form.get("client_secret")
        if authorization and authorization[:6].lower() == "basic ":
            try:
                decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                raise TokenError(
                    401, "invalid_client", "malformed Basic client credentials"
                ) from None
            client_id, _, secret = decoded.partition(":")
        if secret is None:
            if required:
                raise TokenError(401, "invalid_client", "client authentication is required")
            return client_id
        if client_id is None or self.clients.get(client_id) != secret:
            raise TokenError(401, "invalid_client", "unknown client or wrong client secret")
        return client_id

    def _issue(self, grant: _Grant, *, refresh: bool = True) -> dict[str, Any]:
        access = "at_" + secrets.token_urlsafe(24)
        grant.expires_at = self.clock() + self.token_lifetime
        self.access[access] = grant
        lifetime = self.token_lifetime
        body: dict[str, Any] = {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": int(lifetime) if float(lifetime).is_integer() else lifetime,
            "scope": grant.scope,
        }
        if refresh:
            token = "rt_" + secrets.token_urlsafe(24)
            self.refresh[token] = _Grant(grant.label, grant.client_id, grant.scope)
            body["refresh_token"] = token
        # forget expired access tokens now and then, so a long benchmark does not grow the map
        if len(self.access) > 10_000:
            now = self.clock()
            self.access = {k: g for k, g in self.access.items() if g.expires_at > now}
        return body
