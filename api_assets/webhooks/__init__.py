"""Webhook ingestion: signed events in, durable landing, then Dagster materializes them.

- `signing`: sign (sender) and verify (receiver) the four schemes (github, stripe, standard, hmac).
- `landing`: the append-only, self-checking, group-committed landing in `landing/S/`.
- `receiver`: the ASGI app behind `api-assets webhooks serve`.
- `defs`: the `S/webhook_events` asset and `S_webhook_sensor` (imports Dagster; not imported
  here so that the receiver and the demo API's sender stay light).
"""

from api_assets.webhooks.landing import (
    LandedEvent,
    LandingError,
    LandingOffset,
    LandingReader,
    LandingWriter,
)
from api_assets.webhooks.signing import VerifiedEvent, sign_headers, verify

__all__ = [
    "LandedEvent",
    "LandingError",
    "LandingOffset",
    "LandingReader",
    "LandingWriter",
    "VerifiedEvent",
    "sign_headers",
    "verify",
]
