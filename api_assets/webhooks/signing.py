"""Webhook signatures: how a sender signs an event and how the receiver verifies it.

Four schemes, chosen by `webhooks.scheme` in the sources file:

| scheme     | signature                                                      | event id             | event type        |
| ---------- | -------------------------------------------------------------- | -------------------- | ----------------- |
| `github`   | `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(body)>`          | `X-GitHub-Delivery`  | `X-GitHub-Event`  |
| `stripe`   | `Stripe-Signature: t=<ts>,v1=<hex HMAC-SHA256("ts.body")>`     | body `id`            | body `type`       |
| `standard` | `webhook-signature: v1,<b64 HMAC-SHA256("id.ts.body")> ...`    | `webhook-id`         | body `type`       |
| `hmac`     | `<signature_header>: <prefix><hex/b64 HMAC(signed content)>`   | header or body path  | body path         |

For `hmac`, the signed content is the body, or `"<ts>.<body>"` when `timestamp_header` is set.
Every scheme that signs a timestamp refuses one further than `tolerance_seconds` from `now`, in
the past or in the future. `standard` secrets are `whsec_<base64 key>`; the others are used as
their UTF-8 bytes. Digests are compared with `hmac.compare_digest`.

Replays. `stripe` and `standard` sign the event id and a timestamp, so a captured delivery
cannot be replayed outside the tolerance, nor under another id. `github` signs neither, and `hmac`
with `event_id_header` does not sign its id: a captured delivery sent again under a fresh id
verifies. For those, `VerifiedEvent.replay_digest` is the SHA-256 of the signed content (the
body, or `"<ts>.<body>"`), which the landing keeps for `replay_window(config)` seconds: the same
signed content again within the window is a duplicate, whatever id it carries.

`verify` raises `WebhookError(401)` for a missing, malformed, wrong or stale signature (checked
before anything else, so an unauthenticated caller learns nothing about the body), and
`WebhookError(400)` for a body that is not JSON or lacks the event id. Secrets never appear in
an error message.
"""

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from api_assets.config.models import WebhooksConfig
from api_assets.errors import WebhookError

GITHUB_SIGNATURE = "X-Hub-Signature-256"
GITHUB_DELIVERY = "X-GitHub-Delivery"
GITHUB_EVENT = "X-GitHub-Event"
STRIPE_SIGNATURE = "Stripe-Signature"
STANDARD_ID = "webhook-id"
STANDARD_TIMESTAMP = "webhook-timestamp"
STANDARD_SIGNATURE = "webhook-signature"

_DIGESTS = {"sha1": hashlib.sha1, "sha256": hashlib.sha256, "sha512": hashlib.sha512}


@dataclass(frozen=True)
class VerifiedEvent:
    """An event whose signature checked out. `timestamp` is the signed one (None for github,
    and for `hmac` without `timestamp_header`); `event_type` is None when the scheme's place for
    it is empty."""

    event_id: str
    event_type: str | None
    timestamp: int | None
    payload: Any = field(default=None, repr=False, compare=False)  # the parsed body
    # hex SHA-256 of the signed content when the signature does not cover the id (see above)
    replay_digest: str | None = field(default=None, repr=False)


def replay_window(config: WebhooksConfig) -> float | None:
    """How long, in seconds, the landing must remember `replay_digest`s for this scheme; None
    when the signature covers the event id (a replay then carries the same id, a duplicate)."""
    if config.scheme == "github" or (config.scheme == "hmac" and config.event_id_header):
        if config.timestamp_header:  # a timestamp is accepted within ± the tolerance
            return max(config.replay_window_seconds, 2 * config.tolerance_seconds)
        return config.replay_window_seconds
    return None


# --- signing (the sender's side) --------------------------------------------------------------


def sign_headers(
    config: WebhooksConfig,
    body: bytes,
    *,
    event_id: str,
    timestamp: int,
    event_type: str | None = None,
) -> dict[str, str]:
    """The headers a sender using `config.scheme` sends with `body`.

    `event_id` goes where the scheme carries it in a header (github, standard, `hmac` with
    `event_id_header`); stripe and `hmac` with `event_id_path` read it from the body, which the
    caller builds. `event_type` is only sent by github (`X-GitHub-Event`); without it the body's
    `type` is used when there is one.
    """
    secret = config.secret.get_secret_value()
    scheme = config.scheme
    if scheme == "github":
        headers = {
            GITHUB_SIGNATURE: "sha256=" + _hmac_hex(secret.encode(), body, "sha256"),
            GITHUB_DELIVERY: event_id,
        }
        kind = event_type if event_type is not None else _body_type(body)
        if kind is not None:
            headers[GITHUB_EVENT] = kind
        return headers
    if scheme == "stripe":
        signed = str(timestamp).encode() + b"." + body
        return {
            STRIPE_SIGNATURE: f"t={timestamp},v1={_hmac_hex(secret.encode(), signed, 'sha256')}"
        }
    if scheme == "standard":
        signed = f"{event_id}.{timestamp}.".encode() + body
        digest = hmac.new(_standard_key(secret), signed, hashlib.sha256).digest()
        return {
            STANDARD_ID: event_id,
            STANDARD_TIMESTAMP: str(timestamp),
            STANDARD_SIGNATURE: "v1," + base64.b64encode(digest).decode(),
        }
    # generic hmac
    assert config.signature_header is not None  # the config model enforces it
    signed = _hmac_content(config, body, str(timestamp))
    digest = hmac.new(secret.encode(), signed, _DIGESTS[config.algorithm]).digest()
    encoded = digest.hex() if config.encoding == "hex" else base64.b64encode(digest).decode()
    headers = {config.signature_header: config.prefix + encoded}
    if config.timestamp_header:
        headers[config.timestamp_header] = str(timestamp)
    if config.event_id_header:
        headers[config.event_id_header] = event_id
    return headers


# --- verification (the receiver's side) -------------------------------------------------------


def verify(
    config: WebhooksConfig, headers: Mapping[str, str], body: bytes, *, now: float
) -> VerifiedEvent:
    """Check `body`'s signature under `config`, then read its id and type.

    Raises `WebhookError(401)` for a bad, missing or stale signature and `WebhookError(400)`
    for a body that is not JSON or carries no event id.
    """
    h = {k.lower(): v for k, v in headers.items()}
    secret = config.secret.get_secret_value()
    scheme = config.scheme
    if scheme == "github":
        return _verify_github(secret, h, body)
    if scheme == "stripe":
        return _verify_stripe(config, secret, h, body, now)
    if scheme == "standard":
        return _verify_standard(config, secret, h, body, now)
    return _verify_hmac(config, secret, h, body, now)


def _verify_github(secret: str, h: dict[str, str], body: bytes) -> VerifiedEvent:
    value = _required(h, GITHUB_SIGNATURE)
    if not value.startswith("sha256="):
        raise WebhookError(401, f"{GITHUB_SIGNATURE} must read `sha256=<hex digest>`")
    given = _unhex(value[len("sha256=") :], GITHUB_SIGNATURE)
    expected = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    if not hmac.compare_digest(given, expected):
        raise WebhookError(401, f"{GITHUB_SIGNATURE} does not match the body: check the secret")
    payload = _parse(body)
    event_id = h.get(GITHUB_DELIVERY.lower(), "").strip()
    if not event_id:
        raise WebhookError(400, f"missing {GITHUB_DELIVERY} header: it carries the event id")
    kind = h.get(GITHUB_EVENT.lower()) or None
    return VerifiedEvent(event_id, kind, None, payload, replay_digest=_digest(body))


def _verify_stripe(
    config: WebhooksConfig, secret: str, h: dict[str, str], body: bytes, now: float
) -> VerifiedEvent:
    value = _required(h, STRIPE_SIGNATURE)
    timestamp: int | None = None
    candidates: list[str] = []
    for item in value.split(","):
        key, sep, val = item.strip().partition("=")
        if not sep:
            continue
        if key == "t":
            timestamp = _int_timestamp(val, STRIPE_SIGNATURE)
        elif key == "v1":
            candidates.append(val)
    if timestamp is None or not candidates:
        raise WebhookError(
            401, f"{STRIPE_SIGNATURE} must carry `t=<timestamp>` and `v1=<hex digest>`"
        )
    _check_age(timestamp, now, config.tolerance_seconds)
    expected = hmac.new(
        secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256
    ).digest()
    if not _any_matches(expected, [_maybe_unhex(c) for c in candidates]):
        raise WebhookError(
            401, f"no v1 signature in {STRIPE_SIGNATURE} matches the body: check the secret"
        )
    payload = _parse(body)
    return VerifiedEvent(_body_id(payload, "id"), _str_at(payload, "type"), timestamp, payload)


def _verify_standard(
    config: WebhooksConfig, secret: str, h: dict[str, str], body: bytes, now: float
) -> VerifiedEvent:
    event_id = _required(h, STANDARD_ID).strip()
    timestamp = _int_timestamp(_required(h, STANDARD_TIMESTAMP), STANDARD_TIMESTAMP)
    value = _required(h, STANDARD_SIGNATURE)
    _check_age(timestamp, now, config.tolerance_seconds)
    if not event_id:
        raise WebhookError(401, f"{STANDARD_ID} is empty")
    signed = f"{event_id}.{timestamp}.".encode() + body
    expected = hmac.new(_standard_key(secret), signed, hashlib.sha256).digest()
    candidates = []
    for item in value.split():
        version, sep, sig = item.partition(",")
        if sep and version == "v1":  # other versions (v1a: asymmetric) are not ours to check
            candidates.append(_maybe_unb64(sig))
    if not _any_matches(expected, candidates):
        raise WebhookError(
            401, f"no v1 signature in {STANDARD_SIGNATURE} matches: check the secret"
        )
    payload = _parse(body)
    return VerifiedEvent(event_id, _str_at(payload, "type"), timestamp, payload)


def _verify_hmac(
    config: WebhooksConfig, secret: str, h: dict[str, str], body: bytes, now: float
) -> VerifiedEvent:
    assert config.signature_header is not None  # the config model enforces it
    value = _required(h, config.signature_header).strip()
    if not value.startswith(config.prefix):
        raise WebhookError(401, f"{config.signature_header} must start with {config.prefix!r}")
    encoded = value[len(config.prefix) :]
    given = (
        _unhex(encoded, config.signature_header)
        if config.encoding == "hex"
        else _unb64(encoded, config.signature_header)
    )
    timestamp: int | None = None
    if config.timestamp_header:
        raw_ts = _required(h, config.timestamp_header)
        timestamp = _int_timestamp(raw_ts, config.timestamp_header)
        _check_age(timestamp, now, config.tolerance_seconds)
        signed = _hmac_content(config, body, raw_ts.strip())
    else:
        signed = body
    expected = hmac.new(secret.encode(), signed, _DIGESTS[config.algorithm]).digest()
    if not hmac.compare_digest(given, expected):
        raise WebhookError(
            401, f"{config.signature_header} does not match the body: check the secret"
        )
    payload = _parse(body)
    digest = None
    if config.event_id_header:
        event_id = h.get(config.event_id_header.lower(), "").strip()
        if not event_id:
            raise WebhookError(
                400, f"missing {config.event_id_header} header: it carries the event id"
            )
        digest = _digest(signed)  # the id header is not signed
    else:
        assert config.event_id_path is not None  # the config model enforces one of the two
        event_id = _body_id(payload, config.event_id_path)
    event_type = _str_at(payload, config.event_type_path) if config.event_type_path else None
    return VerifiedEvent(event_id, event_type, timestamp, payload, replay_digest=digest)


# --- helpers ----------------------------------------------------------------------------------


def _digest(signed: bytes) -> str:
    return hashlib.sha256(signed).hexdigest()


def _hmac_hex(key: bytes, content: bytes, algorithm: str) -> str:
    return hmac.new(key, content, _DIGESTS[algorithm]).hexdigest()


def _hmac_content(config: WebhooksConfig, body: bytes, timestamp: str) -> bytes:
    return timestamp.encode() + b"." + body if config.timestamp_header else body


def _standard_key(secret: str) -> bytes:
    raw = secret.removeprefix("whsec_")
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        # A misconfigured secret is the operator's mistake; say so without showing it.
        raise WebhookError(401, "the `standard` webhook secret is not `whsec_<base64>`") from None


def _required(h: dict[str, str], name: str) -> str:
    value = h.get(name.lower())
    if value is None or not value.strip():
        raise WebhookError(401, f"missing {name} header")
    return value


def _int_timestamp(value: str, header: str) -> int:
    try:
        return int(value.strip())
    except ValueError:
        raise WebhookError(401, f"{header}: timestamp is not an integer of seconds") from None


def _check_age(timestamp: int, now: float, tolerance: int) -> None:
    if abs(now - timestamp) > tolerance:
        raise WebhookError(
            401,
            f"signed timestamp {timestamp} is {now - timestamp:+.0f} s from now, outside the "
            f"tolerance of {tolerance} s: a replay, or a clock out of sync",
        )


def _unhex(value: str, header: str) -> bytes:
    try:
        return bytes.fromhex(value.strip())
    except ValueError:
        raise WebhookError(401, f"{header}: signature is not hex") from None


def _unb64(value: str, header: str) -> bytes:
    try:
        return base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise WebhookError(401, f"{header}: signature is not base64") from None


def _maybe_unhex(value: str) -> bytes | None:
    try:
        return bytes.fromhex(value.strip())
    except ValueError:
        return None


def _maybe_unb64(value: str) -> bytes | None:
    try:
        return base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None


def _any_matches(expected: bytes, candidates: list[bytes | None]) -> bool:
    # Compare against every candidate (no early exit) so timing says nothing about which matched.
    matched = False
    for c in candidates:
        if c is not None and hmac.compare_digest(c, expected):
            matched = True
    return matched


def _parse(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        raise WebhookError(400, "the body is not JSON (UTF-8)") from None


def _at(payload: Any, path: str) -> Any:
    value = payload
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _str_at(payload: Any, path: str) -> str | None:
    value = _at(payload, path)
    if value is None or isinstance(value, dict | list):
        return None
    return value if isinstance(value, str) else str(value)


def _body_id(payload: Any, path: str) -> str:
    event_id = _str_at(payload, path)
    if not event_id:
        raise WebhookError(400, f"the body has no event id at `{path}`")
    return event_id


def _body_type(body: bytes) -> str | None:
    try:
        return _str_at(orjson.loads(body), "type")
    except orjson.JSONDecodeError:
        return None
