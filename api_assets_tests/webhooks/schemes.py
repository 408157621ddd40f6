"""The test sources: one per webhook scheme, and signed requests for them. Light to import
(no pytest), because the receiver subprocesses of the crash tests import it too."""

import base64
import json
import time
from typing import Any

from pydantic import SecretStr

from api_assets.config.models import SourceConfig, WebhooksConfig
from api_assets.webhooks.signing import sign_headers

STANDARD_SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()

# One source per scheme, plus a second generic-hmac flavour (header id, hex, no timestamp).
WEBHOOKS: dict[str, dict[str, Any]] = {
    "gh": {"scheme": "github", "secret": "gh-secret-do-not-log"},
    "st": {"scheme": "stripe", "secret": "whsec_stripe-secret-do-not-log"},
    "sw": {"scheme": "standard", "secret": STANDARD_SECRET},
    "hm": {
        "scheme": "hmac",
        "secret": "hmac-secret-do-not-log",
        "signature_header": "X-Signature",
        "algorithm": "sha512",
        "encoding": "base64",
        "prefix": "sha512=",
        "timestamp_header": "X-Timestamp",
        "event_id_path": "data.id",
        "event_type_path": "event",
    },
    "hx": {
        "scheme": "hmac",
        "secret": "hx-secret-do-not-log",
        "signature_header": "X-Hook-Sig",
        "algorithm": "sha1",
        "encoding": "hex",
        "event_id_header": "X-Hook-Id",
        "event_type_path": "type",
    },
}
SECRETS = [w["secret"] for w in WEBHOOKS.values()]
TIMESTAMPED = ["st", "sw", "hm"]  # schemes that sign a timestamp


def webhooks_config(name: str, **overrides: Any) -> WebhooksConfig:
    data = {**WEBHOOKS[name], **overrides}
    data["secret"] = SecretStr(data["secret"])
    return WebhooksConfig(**data)


def source(name: str, **overrides: Any) -> SourceConfig:
    return SourceConfig(
        name=name, base_url="http://127.0.0.1:9", webhooks=webhooks_config(name, **overrides)
    )


def all_sources() -> list[SourceConfig]:
    plain = SourceConfig(name="plain", base_url="http://127.0.0.1:9")  # no webhooks:
    return [source(n, max_body_bytes=4096) for n in WEBHOOKS] + [plain]


def event_body(event_id: str, event_type: str = "thing.created", **extra: Any) -> bytes:
    """One body that carries the id and type where every scheme here looks for them."""
    return json.dumps(
        {"id": event_id, "type": event_type, "event": event_type, "data": {"id": event_id, **extra}}
    ).encode()


def signed(
    name: str, event_id: str, *, timestamp: int | None = None, **extra: Any
) -> tuple[bytes, dict[str, str]]:
    body = event_body(event_id, **extra)
    ts = int(time.time()) if timestamp is None else timestamp
    headers = sign_headers(webhooks_config(name), body, event_id=event_id, timestamp=ts)
    return body, {"Content-Type": "application/json", **headers}
