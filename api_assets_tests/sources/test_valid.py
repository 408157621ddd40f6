"""Valid sources files load into the models, with `${VAR}` expanded and defaults applied."""

from collections.abc import Callable
from datetime import date
from pathlib import Path

import pytest

from api_assets.config.env import expand_env
from api_assets.config.loader import load_sources
from api_assets.config.models import (
    CursorPaginator,
    LinkHeaderPaginator,
    OAuth2ClientCredentialsAuth,
    OffsetPaginator,
    SinglePagePaginator,
)
from api_assets.errors import SourcesError

from .conftest import CONTRACT_EXAMPLE


def test_contract_example_round_trips(
    write: Callable[..., Path], contract_env: dict[str, str]
) -> None:
    (shop,) = load_sources(write(CONTRACT_EXAMPLE))

    assert shop.name == "shop"
    assert shop.base_url == "http://127.0.0.1:8765"
    assert shop.headers == {"Accept": "application/json"}
    assert shop.timeout_seconds == 30
    assert isinstance(shop.auth, OAuth2ClientCredentialsAuth)
    assert shop.auth.token_url == "http://127.0.0.1:8765/oauth/token"
    assert shop.auth.client_id == "shop-client"
    assert shop.auth.client_secret.get_secret_value() == contract_env["SHOP_CLIENT_SECRET"]
    assert shop.auth.scopes == ["read"]
    assert shop.auth.refresh_margin_seconds == 60
    assert shop.auth.client_auth == "basic"
    assert (
        shop.rate_limit.requests_per_second,
        shop.rate_limit.burst,
        shop.rate_limit.max_concurrency,
    ) == (10, 10, 4)
    assert (shop.retry.max_attempts, shop.retry.max_backoff_seconds) == (6, 120)
    assert (shop.partitions.type, shop.partitions.start) == ("daily", date(2026, 1, 1))
    assert shop.schedule == "0 3 * * *"
    assert shop.schema_drift.block is False

    assert [e.name for e in shop.endpoints] == ["products", "orders", "events", "order_lines"]
    assert [e.kind for e in shop.endpoints] == ["snapshot", "incremental", "window", "snapshot"]

    products = shop.endpoint("products")
    assert products.params == {"status": "active"}
    assert products.records_path == "data"
    assert products.primary_key_fields == ["id"]
    assert products.paginator == OffsetPaginator(
        type="offset", limit=100, offset_param="offset", limit_param="limit", total_path="total"
    )

    orders = shop.endpoint("orders")
    assert orders.paginator == CursorPaginator(
        type="cursor",
        cursor_path="next_cursor",
        cursor_param="cursor",
        limit_param="limit",
        limit=100,
    )
    assert orders.incremental is not None
    assert orders.incremental.cursor_field == "updated_at"
    assert orders.incremental.param == "updated_since"
    assert orders.incremental.initial_value == "2026-01-01T00:00:00Z"
    assert orders.incremental.lookback_seconds == 3600
    assert orders.incremental.format == "iso8601"

    events = shop.endpoint("events")
    assert events.paginator == LinkHeaderPaginator(type="link_header", params={"per_page": 100})
    assert events.window is not None
    assert (events.window.start_param, events.window.end_param, events.window.format) == (
        "since",
        "until",
        "iso8601",
    )

    lines = shop.endpoint("order_lines")
    assert lines.path == "/v1/orders/{order_id}/lines"
    assert lines.placeholders == ["order_id"]
    assert lines.parent is not None
    assert (lines.parent.endpoint, lines.parent.fields) == ("orders", {"order_id": "id"})
    assert lines.primary_key_fields == ["order_id", "line_no"]
    assert isinstance(lines.paginator, SinglePagePaginator)

    assert shop.webhooks is not None
    assert shop.webhooks.scheme == "github"
    assert shop.webhooks.secret.get_secret_value() == contract_env["SHOP_WEBHOOK_SECRET"]

    for secret in contract_env.values():
        if "secret" in secret:
            assert secret not in repr(shop)
            assert secret not in str(shop.model_dump())


def test_env_overrides_a_default(
    write: Callable[..., Path], contract_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHOP_URL", "https://shop.example.com")
    (shop,) = load_sources(write(CONTRACT_EXAMPLE))
    assert shop.base_url == "https://shop.example.com"
    assert isinstance(shop.auth, OAuth2ClientCredentialsAuth)
    assert shop.auth.token_url == "https://shop.example.com/oauth/token"
    monkeypatch.setenv("SHOP_URL", "https://shop.example.com/api/")
    (shop,) = load_sources(write(CONTRACT_EXAMPLE))
    assert shop.base_url == "https://shop.example.com/api"  # a trailing slash is dropped


def test_env_defaults_numbers_escapes_and_several_per_string(write: Callable[..., Path]) -> None:
    text = """\
sources:
  - name: shop
    base_url: ${HOST_UNSET:-http://127.0.0.1}:${PORT_EMPTY:-8765}
    timeout_seconds: ${TIMEOUT_UNSET:-12.5}
    headers:
      X-Literal: $${NOT_A_VAR}
      X-Mixed: a-${WHO}-b-${WHO}-$$-${EMPTY_NO_DEFAULT}
      X-Empty-Default: "${HOST_UNSET:-}"
    endpoints:
      - name: orders
        path: /v1/${VERSION:-v9}/orders
        params:
          limit: ${LIMIT:-50}
          flag: ${FLAG:-true}
"""
    environ = {"PORT_EMPTY": "", "WHO": "me", "EMPTY_NO_DEFAULT": "", "VERSION": "v2"}
    (shop,) = load_sources(write(text), environ=environ)
    assert shop.base_url == "http://127.0.0.1:8765"
    assert shop.timeout_seconds == 12.5
    assert shop.headers == {
        "X-Literal": "${NOT_A_VAR}",
        "X-Mixed": "a-me-b-me-$$-",
        "X-Empty-Default": "",
    }
    assert shop.endpoints[0].path == "/v1/v2/orders"
    assert shop.endpoints[0].params == {"limit": "50", "flag": "true"}


def test_expand_env_is_one_pass() -> None:
    # a value that itself looks like a reference is not expanded again
    assert expand_env("${A}", {"A": "${B}", "B": "no"}) == ("${B}", [])
    assert expand_env("x${A:-y}z", {}) == ("xyz", [])
    assert expand_env("$${A}", {"A": "no"}) == ("${A}", [])
    text, problems = expand_env("${A} ${B}", {})
    assert text == "${A} ${B}"
    assert problems == [
        "environment variable A is not set (use ${A:-default} or set it)",
        "environment variable B is not set (use ${B:-default} or set it)",
    ]


def test_folder_of_files_is_merged_in_name_order(write: Callable[..., Path]) -> None:
    one = "sources:\n  - name: {name}\n    base_url: http://127.0.0.1:8765\n"
    write(one.format(name="zeta"), "b.yaml")
    write(one.format(name="alpha"), "a.yml")
    write(
        "sources:\n  - name: crm\n    base_url: http://127.0.0.1:1\n  - name: erp\n    base_url: http://127.0.0.1:2\n",
        "c.YAML",
    )
    write("this: [is not read", ".hidden.yaml")
    folder = write("neither is this", "README.md").parent
    (folder / "sub").mkdir()
    (folder / "sub" / "x.yaml").write_text("not: [read")
    assert [s.name for s in load_sources(folder)] == ["alpha", "zeta", "crm", "erp"]


def test_path_none_reads_api_assets_sources(
    write: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write("sources:\n  - name: from_env\n    base_url: http://127.0.0.1:8765\n")
    monkeypatch.setenv("API_ASSETS_SOURCES", str(path))
    assert [s.name for s in load_sources()] == ["from_env"]
    monkeypatch.setenv("API_ASSETS_SOURCES", str(path.parent / "nope.yaml"))
    with pytest.raises(SourcesError, match="no such file or folder"):
        load_sources()


def test_yaml_conveniences(write: Callable[..., Path]) -> None:
    text = """\
defaults: &defaults
  base_url: http://127.0.0.1:8765
  timeout_seconds: 5
sources:
  - <<: *defaults
    name: shop
    timeout_seconds: 9
    partitions: {type: hourly, start: 2026-03-01}
    endpoints:
      - name: orders
        path: /orders
        incremental: {cursor_field: updated_at, param: since, initial_value: 2026-01-01T00:00:00Z}
"""
    # `defaults:` is not a key of the file: anchors must live inside `sources:`
    with pytest.raises(SourcesError, match="unknown top-level key `defaults`"):
        load_sources(write(text))
    text = text.replace(
        "defaults: &defaults\n  base_url", "sources:\n  - &defaults\n    name: base\n    base_url"
    )
    text = text.replace("  timeout_seconds: 5\nsources:\n", "    timeout_seconds: 5\n")
    base, shop = load_sources(write(text))
    assert (base.name, base.timeout_seconds) == ("base", 5)
    assert (shop.name, shop.base_url, shop.timeout_seconds) == ("shop", "http://127.0.0.1:8765", 9)
    assert shop.partitions.start == date(2026, 3, 1)
    assert shop.endpoints[0].incremental is not None
    assert shop.endpoints[0].incremental.initial_value == "2026-01-01T00:00:00Z"


def test_empty_sources_list_and_webhook_only_source(write: Callable[..., Path]) -> None:
    assert load_sources(write("sources: []\n", "a.yaml")) == []
    (hooks,) = load_sources(
        write(
            "sources:\n  - name: hooks\n    base_url: http://127.0.0.1:1\n"
            "    partitions: {type: none}\n"
            "    webhooks: {scheme: hmac, secret: hmac-secret-0123456789, signature_header: X-Sig,"
            " event_id_header: X-Id}\n",
            "b.yaml",
        )
    )
    assert hooks.endpoints == []
    assert hooks.webhooks is not None and hooks.webhooks.signature_header == "X-Sig"
