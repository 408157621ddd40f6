"""Fixtures of the sources tests: the CONTRACT §4 example, its environment, and file writers."""

from collections.abc import Callable
from pathlib import Path

import pytest

# CONTRACT §4, verbatim.
CONTRACT_EXAMPLE = """\
sources:
  - name: shop                          # [a-z][a-z0-9_]*: asset key prefix and asset group
    base_url: ${SHOP_URL:-http://127.0.0.1:8765}
    headers: {Accept: application/json}
    timeout_seconds: 30
    auth:
      type: oauth2_client_credentials   # any type of the auth table below
      token_url: ${SHOP_URL:-http://127.0.0.1:8765}/oauth/token
      client_id: ${SHOP_CLIENT_ID}
      client_secret: ${SHOP_CLIENT_SECRET}
      scopes: [read]
      refresh_margin_seconds: 60
    rate_limit: {requests_per_second: 10, burst: 10, max_concurrency: 4}
    retry: {max_attempts: 6, max_backoff_seconds: 120}
    partitions: {type: daily, start: "2026-01-01"}    # daily | hourly | none (UTC)
    schedule: "0 3 * * *"               # optional cron: a schedule for this source
    schema_drift: {block: false}        # true: an ERROR drift blocks what is downstream in that run
    endpoints:
      - name: products
        path: /v1/products
        params: {status: active}
        records_path: data              # dotted path to the list; omit when the body is the list
        primary_key: id
        paginator: {type: offset, limit: 100, offset_param: offset, limit_param: limit, total_path: total}  # any type of the paginator table
      - name: orders
        path: /v1/orders
        primary_key: id
        paginator: {type: cursor, cursor_path: next_cursor, cursor_param: cursor, limit_param: limit, limit: 100}
        incremental:
          cursor_field: updated_at      # dotted path in each record
          param: updated_since          # request parameter that receives the lower bound
          initial_value: "2026-01-01T00:00:00Z"   # optional: without it the first run has no lower bound
          lookback_seconds: 3600        # time-like formats only; with `raw` the bound is the watermark itself
          format: iso8601               # iso8601 | epoch_seconds | epoch_millis | raw
      - name: events
        path: /v1/events
        primary_key: id
        paginator: {type: link_header, params: {per_page: 100}}
        window: {start_param: since, end_param: until, format: iso8601}
      - name: order_lines
        path: /v1/orders/{order_id}/lines     # one request (or one paginated series) per parent record
        parent: {endpoint: orders, fields: {order_id: id}}
        records_path: lines                   # a body that is one object is one record
        primary_key: [order_id, line_no]      # one field or a list
    webhooks:
      scheme: github                    # github | stripe | standard | hmac
      secret: ${SHOP_WEBHOOK_SECRET}
"""

CONTRACT_SECRETS = {
    "SHOP_CLIENT_ID": "shop-client",
    "SHOP_CLIENT_SECRET": "client-secret-8f3a9c",
    "SHOP_WEBHOOK_SECRET": "webhook-secret-41d2e7",
}


@pytest.fixture
def contract_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The variables the CONTRACT example needs; SHOP_URL unset so that its default applies."""
    monkeypatch.delenv("SHOP_URL", raising=False)
    for name, value in CONTRACT_SECRETS.items():
        monkeypatch.setenv(name, value)
    return dict(CONTRACT_SECRETS)


@pytest.fixture
def write(tmp_path: Path) -> Callable[..., Path]:
    """`write(text_or_bytes, name="sources.yaml")` writes a file under a fresh folder."""

    def _write(content: str | bytes, name: str = "sources.yaml") -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        return path

    return _write
