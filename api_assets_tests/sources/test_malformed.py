"""Malformed sources files: each mistake is reported at its line and key path, all at once.

Every case lists ALL the problems the file must produce (line, key path, message fragment), so
a case also fails when the loader reports noise or misses a second mistake.
"""

import re
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from api_assets.config.loader import load_sources
from api_assets.errors import SourcesError

# A valid source the cases below change in one place. Lines: 1 sources, 2 name, 3 base_url,
# 4 endpoints, 5 `- name: orders`, 6 path.
VALID = """\
sources:
  - name: shop
    base_url: http://127.0.0.1:8765
    endpoints:
      - name: orders
        path: /v1/orders
"""

Expected = tuple[int, str, str]  # line, key path, message fragment

CASES: list[tuple[str, str | bytes, list[Expected]]] = [
    # --- the file itself ---------------------------------------------------------------------
    (
        "yaml-syntax",
        "sources:\n  - name: shop\n    base_url: [http://x\n    endpoints: []\n",
        [(4, "<root>", "(while parsing a flow sequence that starts on line 3)")],
    ),
    (
        "yaml-bad-indent",
        "sources:\n  - name: shop\n     base_url: http://x\n",
        [(3, "<root>", "YAML syntax error: mapping values are not allowed here")],
    ),
    (
        "not-utf8",
        b"sources:\n  - name: shop\n    base_url: http://caf\xe9\n",
        [(3, "<root>", "not UTF-8")],
    ),
    ("empty-file", "", [(1, "<root>", "the file is empty")]),
    ("only-comments", "# nothing yet\n\n", [(1, "<root>", "the file is empty")]),
    (
        "root-is-a-list",
        "- name: shop\n",
        [(1, "<root>", "expected a mapping with a `sources:` list")],
    ),
    (
        "root-without-sources",
        "source:\n  - name: shop\n",
        [
            (1, "source", "did you mean `sources`?"),
            (1, "sources", "missing `sources:`"),
        ],
    ),
    (
        "sources-not-a-list",
        "sources: {name: shop}\n",
        [(1, "sources", "expected a list of sources")],
    ),
    (
        "two-documents",
        VALID + "---\nsources: []\n",
        [(7, "<root>", "one YAML document")],
    ),
    (
        "duplicate-yaml-key",
        VALID + "    base_url: http://other\n",
        [(7, "sources.shop.base_url", "duplicate key `base_url` (first on line 3)")],
    ),
    (
        "control-character",
        "sources:\n  - name: shop\x07\n",
        [(2, "<root>", "#x0007 is not allowed")],
    ),
    (
        "unsupported-tag",
        VALID.replace("/v1/orders", "!!python/object:os.system x"),
        [(6, "sources.shop.endpoints.orders.path", "unsupported YAML tag")],
    ),
    (
        "recursive-alias",
        VALID + "        params: &p {a: *p}\n",
        [
            (
                7,
                "sources.shop.endpoints.orders.params.a",
                "alias refers to a mapping or list that contains it",
            )
        ],
    ),
    # --- keys and types ----------------------------------------------------------------------
    (
        "unknown-key-did-you-mean",
        VALID.replace("    endpoints:", "    timeout: 10\n    endpoints:"),
        [
            (
                4,
                "sources.shop.timeout",
                "unknown key `timeout` (did you mean `timeout_seconds`?); allowed keys: name, base_url",
            )
        ],
    ),
    (
        "unknown-key-lists-allowed",
        VALID + "        zzz: 1\n",
        [(7, "sources.shop.endpoints.orders.zzz", "allowed keys: name, path, method, params")],
    ),
    (
        "wrong-type",
        VALID.replace("    endpoints:", "    timeout_seconds: fast\n    endpoints:"),
        [(4, "sources.shop.timeout_seconds", "expected a number, got a string")],
    ),
    (
        "wrong-type-list",
        "sources:\n  - name: shop\n    base_url: http://127.0.0.1:8765\n    endpoints: orders\n",
        [(4, "sources.shop.endpoints", "expected a list, got a string")],
    ),
    (
        "missing-required-key",
        "sources:\n  - name: shop\n    endpoints: []\n",
        [(2, "sources.shop.base_url", "required key `base_url` is missing")],
    ),
    (
        "missing-endpoint-path",
        VALID.replace("        path: /v1/orders\n", ""),
        [(5, "sources.shop.endpoints.orders.path", "required key `path` is missing")],
    ),
    (
        "literal-choice",
        VALID.replace(
            "    endpoints:",
            "    auth: {type: api_key, value: k, location: cookie}\n    endpoints:",
        ),
        [(4, "sources.shop.auth.location", "expected 'header' or 'query'")],
    ),
    (
        "bad-source-name",
        VALID.replace("name: shop", "name: My-Shop"),
        [(2, "sources[0].name", "[a-z][a-z0-9_]*")],
    ),
    (
        "bad-endpoint-name",
        VALID.replace("name: orders", "name: 2orders"),
        [(5, "sources.shop.endpoints[0].name", "[a-z][a-z0-9_]*")],
    ),
    # --- URLs, rates, dates, cron -------------------------------------------------------------
    (
        "bad-base-url",
        VALID.replace("http://127.0.0.1:8765", "ftp://127.0.0.1"),
        [(3, "sources.shop.base_url", "expected an absolute http(s) URL")],
    ),
    (
        "bad-token-url",
        VALID.replace(
            "    endpoints:",
            "    auth:\n      type: oauth2_client_credentials\n      token_url: /oauth/token\n"
            "      client_id: c\n      client_secret: s\n    endpoints:",
        ),
        [(6, "sources.shop.auth.token_url", "expected an absolute http(s) URL")],
    ),
    (
        "zero-and-negative-rates",
        VALID.replace(
            "    endpoints:", "    rate_limit: {requests_per_second: 0, burst: -1}\n    endpoints:"
        ),
        [
            (4, "sources.shop.rate_limit.burst", "at least 1"),
            (4, "sources.shop.rate_limit.requests_per_second", "greater than 0"),
        ],
    ),
    (
        "bad-partitions-start",
        VALID.replace(
            "    endpoints:",
            "    partitions:\n      type: daily\n      start: 2026-02-30\n    endpoints:",
        ),
        [(6, "sources.shop.partitions.start", "expected a date as YYYY-MM-DD")],
    ),
    (
        "cron-six-fields",
        VALID.replace("    endpoints:", '    schedule: "0 0 3 * * *"\n    endpoints:'),
        [(4, "sources.shop.schedule", "5 fields")],
    ),
    (
        "cron-out-of-range",
        VALID.replace("    endpoints:", '    schedule: "61 3 * * *"\n    endpoints:'),
        [(4, "sources.shop.schedule", "cron field minute (0-59)")],
    ),
    # --- type-tagged unions ------------------------------------------------------------------
    (
        "unknown-paginator-type",
        VALID + "        paginator: {type: offest}\n",
        [
            (
                7,
                "sources.shop.endpoints.orders.paginator.type",
                "unknown paginator type `offest` (did you mean `offset`?); valid types: single_page, offset, page_number, cursor",
            )
        ],
    ),
    (
        "unknown-auth-type",
        VALID.replace("    endpoints:", "    auth: {type: digest}\n    endpoints:"),
        [
            (
                4,
                "sources.shop.auth.type",
                "unknown auth type `digest`; valid types: none, api_key, bearer, basic",
            )
        ],
    ),
    (
        "missing-auth-type",
        VALID.replace("    endpoints:", "    auth:\n      token: t\n    endpoints:"),
        [(4, "sources.shop.auth.type", "missing required key `type`; auth types: none, api_key")],
    ),
    (
        "key-of-another-paginator",
        VALID + "        paginator: {type: cursor, cursor_path: next, total_path: total}\n",
        [
            (
                7,
                "sources.shop.endpoints.orders.paginator.total_path",
                "`total_path` belongs to paginator types offset, page_number; this paginator is cursor",
            )
        ],
    ),
    (
        "key-of-another-auth",
        VALID.replace(
            "    endpoints:",
            "    auth:\n      type: basic\n      username: u\n      password: p\n      token: t\n    endpoints:",
        ),
        [(8, "sources.shop.auth.token", "`token` belongs to auth type bearer; this auth is basic")],
    ),
    (
        "paginator-both-sources",
        VALID + "        paginator: {type: next_url, next_path: next, next_header: Link-Next}\n",
        [
            (
                7,
                "sources.shop.endpoints.orders.paginator.next_header",
                "give `next_path` or `next_header`, not both",
            )
        ],
    ),
    (
        "jwt-without-key",
        VALID.replace(
            "    endpoints:", "    auth: {type: jwt_bearer, algorithm: RS256}\n    endpoints:"
        ),
        [(4, "sources.shop.auth", "needs `secret` (HS* algorithms) or `private_key`")],
    ),
    # --- endpoints and parents ----------------------------------------------------------------
    (
        "duplicate-endpoint-names",
        VALID + "      - name: orders\n        path: /v2/orders\n",
        [(7, "sources.shop.endpoints.orders.name", "endpoint `orders` is defined twice")],
    ),
    (
        "parent-does-not-exist",
        VALID
        + "      - name: lines\n        path: /v1/orders/{id}/lines\n        parent: {endpoint: order, fields: {id: id}}\n",
        [
            (
                9,
                "sources.shop.endpoints.lines.parent.endpoint",
                "`order` is not an endpoint of this source (did you mean `orders`?); its endpoints: orders, lines",
            )
        ],
    ),
    (
        "parent-is-itself",
        VALID + "        parent: {endpoint: orders, fields: {id: id}}\n",
        [(7, "sources.shop.endpoints.orders.parent.endpoint", "is its own parent")],
    ),
    (
        "parent-cycle",
        VALID
        + "        parent: {endpoint: lines, fields: {id: id}}\n"
        + "      - name: lines\n        path: /lines\n        parent: {endpoint: orders, fields: {id: id}}\n",
        [
            (
                7,
                "sources.shop.endpoints.orders.parent.endpoint",
                "parent cycle orders -> lines -> orders",
            )
        ],
    ),
    (
        "placeholder-without-parent",
        VALID.replace("/v1/orders", "/v1/orders/{order_id}/lines"),
        [
            (
                6,
                "sources.shop.endpoints.orders.path",
                "path placeholder(s) {order_id} need a `parent:`",
            )
        ],
    ),
    (
        "placeholder-not-in-parent-fields",
        VALID
        + "      - name: lines\n        path: /v1/orders/{order_id}/lines/{line_id}\n"
        + "        parent: {endpoint: orders, fields: {order_id: id}}\n",
        [
            (
                9,
                "sources.shop.endpoints.lines.parent.fields",
                "does not map path placeholder(s) {line_id}",
            )
        ],
    ),
    (
        "incremental-and-window",
        VALID
        + "        incremental: {cursor_field: updated_at, param: since}\n"
        + "        window: {start_param: since, end_param: until}\n",
        [(8, "sources.shop.endpoints.orders.window", "`incremental` or `window`, not both")],
    ),
    (
        "window-without-time-partitions",
        VALID.replace("    endpoints:", "    partitions: {type: none}\n    endpoints:")
        + "        window: {start_param: since, end_param: until}\n",
        [(8, "sources.shop.endpoints.orders.window", "`window` needs time partitions")],
    ),
    # --- webhooks ------------------------------------------------------------------------------
    (
        "hmac-without-signature-header",
        VALID + "    webhooks: {scheme: hmac, secret: hmac-secret-0123456789, event_id_path: id}\n",
        [(7, "sources.shop.webhooks.signature_header", "scheme `hmac` needs `signature_header`")],
    ),
    (
        "hmac-key-on-github",
        VALID
        + "    webhooks:\n      scheme: github\n      secret: gh-secret-0123456789\n      prefix: sha256=\n",
        [
            (
                10,
                "sources.shop.webhooks.prefix",
                "`prefix` belongs to webhook scheme hmac; this scheme is github",
            )
        ],
    ),
    # --- ${VAR} ----------------------------------------------------------------------------------
    (
        "env-missing",
        VALID.replace(
            "    endpoints:",
            "    auth:\n      type: bearer\n      token: ${API_ASSETS_TEST_UNSET_TOKEN}\n    endpoints:",
        ),
        [
            (
                6,
                "sources.shop.auth.token",
                "environment variable API_ASSETS_TEST_UNSET_TOKEN is not set (use ${API_ASSETS_TEST_UNSET_TOKEN:-default} or set it)",
            )
        ],
    ),
    (
        "env-missing-in-url-says-nothing-more",
        VALID.replace("http://127.0.0.1:8765", "${API_ASSETS_TEST_UNSET_URL}/api"),
        [(3, "sources.shop.base_url", "API_ASSETS_TEST_UNSET_URL is not set")],
    ),
    (
        "env-unterminated",
        VALID.replace("/v1/orders", "/v1/${API_ASSETS_TEST_PREFIX/orders"),
        [(6, "sources.shop.endpoints.orders.path", "without a closing `}`")],
    ),
    # --- several mistakes in one file, all at once ---------------------------------------------
    (
        "several-mistakes",
        """\
sources:
  - name: shop
    base_url: localhost:8765
    rate_limit: {requests_per_second: -5}
    endpoints:
      - name: orders
        path: /v1/orders
        paginator: {type: cursor, total_path: total}
      - name: lines
        path: /v1/orders/{order_id}/lines
        parent: {endpoint: ordrs, fields: {order_id: id}}
  - name: shop
    base_url: http://127.0.0.1:8765
    partitions: {type: weekly}
""",
        [
            (3, "sources.shop.base_url", "absolute http(s) URL"),
            (4, "sources.shop.rate_limit.requests_per_second", "greater than 0"),
            (
                8,
                "sources.shop.endpoints.orders.paginator.total_path",
                "belongs to paginator types offset, page_number",
            ),
            (11, "sources.shop.endpoints.lines.parent.endpoint", "`ordrs` is not an endpoint"),
            (12, "sources.shop.name", "source name `shop` is already used at"),
            (14, "sources.shop.partitions.type", "expected 'daily', 'hourly' or 'none'"),
        ],
    ),
    # --- connection: tls, proxy, http2 (bad file contents: test_tls.py) -----------------------
    (
        "tls-proxy-http2",
        VALID
        + """\
    tls:
      verify: /no/such/ca.pem
      client_key: /no/such/client.key
      clinet_cert: client.pem
    proxy: socks5://user:pw@127.0.0.1:1080
    http2: maybe
""",
        [
            (8, "sources.shop.tls.verify", "no such file; expected a path to a CA bundle (PEM)"),
            (9, "sources.shop.tls.client_key", "no such file; expected a path to a private key"),
            (9, "sources.shop.tls.client_key", "`client_key` needs `client_cert`"),
            (10, "sources.shop.tls.clinet_cert", "did you mean `client_cert`?"),
            (11, "sources.shop.proxy", "expected a proxy URL such as http://proxy.internal:3128"),
            (12, "sources.shop.http2", "expected true or false, got a string"),
        ],
    ),
    (
        "tls-verify-kind-and-a-literal-password",
        VALID
        + """\
    tls:
      verify: 3
      client_cert: ./
      client_key_password: hunter2
""",
        [
            (8, "sources.shop.tls.verify", "expected true, false or the path of a CA bundle"),
            (9, "sources.shop.tls.client_cert", "not a file; expected a path to a client"),
            (10, "sources.shop.tls.client_key_password", "is a secret: write ${VAR}"),
        ],
    ),
    (
        "tls-not-a-mapping",
        VALID + "    tls: /etc/ssl/ca.pem\n",
        [(7, "sources.shop.tls", "expected a mapping, got a string")],
    ),
    # --- secrets: never empty; webhook secrets long enough to be keys --------------------------
    (
        "webhook-secret-expanded-to-nothing",
        VALID + '    webhooks: {scheme: github, secret: "${API_ASSETS_TEST_UNSET_WH_SECRET:-}"}\n',
        [
            (
                7,
                "sources.shop.webhooks.secret",
                "`webhooks.secret` is empty: `${API_ASSETS_TEST_UNSET_WH_SECRET:-}` expanded to "
                "nothing; set API_ASSETS_TEST_UNSET_WH_SECRET (a secret must not be empty)",
            )
        ],
    ),
    (
        "empty-secrets-anywhere",
        VALID.replace(
            "    endpoints:",
            "    auth:\n      type: api_key_rotation\n      values:\n"
            '        - "${API_ASSETS_TEST_UNSET_KEY_A:-}${API_ASSETS_TEST_UNSET_KEY_B:-}"\n'
            "        - key-two\n    proxy: ${API_ASSETS_TEST_UNSET_PROXY:-}\n    endpoints:",
        )
        + "    webhooks:\n      scheme: hmac\n      secret: ''\n"
        + "      signature_header: X-Sig\n      event_id_header: X-Id\n",
        [
            (
                7,
                "sources.shop.auth.values[0]",
                "`auth.values[0]` is empty: `${API_ASSETS_TEST_UNSET_KEY_A:-}${API_ASSETS_TEST_UNSET_"
                "KEY_B:-}` expanded to nothing; set API_ASSETS_TEST_UNSET_KEY_A or "
                "API_ASSETS_TEST_UNSET_KEY_B",
            ),
            (
                9,
                "sources.shop.proxy",
                "`proxy` is empty: `${API_ASSETS_TEST_UNSET_PROXY:-}` expanded to nothing; set "
                "API_ASSETS_TEST_UNSET_PROXY",
            ),
            (
                15,
                "sources.shop.webhooks.secret",
                "`webhooks.secret` is empty: a secret must not be empty; write ${VAR} and set VAR",
            ),
        ],
    ),
    (
        "webhook-secrets-too-short-or-not-base64",
        VALID
        + "    webhooks: {scheme: github, secret: fifteen-bytes-x}\n"
        + "  - name: std\n    base_url: http://127.0.0.1:8765\n"
        + "    webhooks: {scheme: standard, secret: whsec_MDEyMzQ1Njc4OWFiY2Rl}\n"
        + "  - name: std_text\n    base_url: http://127.0.0.1:8765\n"
        + "    webhooks: {scheme: standard, secret: a-long-secret-but-not-base64}\n",
        [
            (
                7,
                "sources.shop.webhooks.secret",
                "a webhook secret must be at least 16 bytes (UTF-8): a short HMAC key can be "
                "guessed and events forged",
            ),
            (
                10,
                "sources.std.webhooks.secret",
                "a webhook secret must be at least 16 bytes once base64-decoded",
            ),
            (
                13,
                "sources.std_text.webhooks.secret",
                "a `standard` webhook secret is `whsec_` and the base64 of the key",
            ),
        ],
    ),
    # --- upper bounds: no setting lets one request, wait or body grow without limit -------------
    (
        "settings-over-their-bounds",
        VALID.replace(
            "    endpoints:",
            "    timeout_seconds: 601\n    request_deadline_seconds: 3601\n"
            "    max_page_bytes: 1073741825\n    max_wire_page_bytes: 1073741825\n"
            "    retry: {max_backoff_seconds: 3601}\n    rate_limit: {max_pause_seconds: 86401}\n"
            "    endpoints:",
        )
        + "    webhooks:\n      scheme: github\n      secret: gh-secret-0123456789\n"
        + "      tolerance_seconds: 86401\n      max_body_bytes: 33554433\n",
        [
            (4, "sources.shop.timeout_seconds", "expected a number of at most 600 (10 minutes)"),
            (5, "sources.shop.request_deadline_seconds", "at most 3600 (1 hour) for one response"),
            (6, "sources.shop.max_page_bytes", "at most 1073741824 (1 GiB): a page is held"),
            (7, "sources.shop.max_wire_page_bytes", "at most 1073741824 (1 GiB)"),
            (8, "sources.shop.retry.max_backoff_seconds", "at most 3600 (1 hour) between two"),
            (9, "sources.shop.rate_limit.max_pause_seconds", "at most 86400 (1 day)"),
            (16, "sources.shop.webhooks.tolerance_seconds", "at most 86400 (1 day): a wider"),
            (17, "sources.shop.webhooks.max_body_bytes", "at most 33554432 (32 MiB)"),
        ],
    ),
    (
        "allowed-origins-are-origins",
        VALID
        + """\
    allowed_origins:
      - https://files.example.com
      - https://files.example.com/v1
      - ftp://files.example.com
      - http://user:pw@cdn.example.com
      - http://cdn.example.com:99999
""",
        [
            (9, "sources.shop.allowed_origins[1]", "expected an origin such as https://"),
            (10, "sources.shop.allowed_origins[2]", "expected an origin such as https://"),
            (11, "sources.shop.allowed_origins[3]", "no path, query or user"),
            (12, "sources.shop.allowed_origins[4]", "expected an origin such as https://"),
        ],
    ),
]


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_malformed_file_reports_every_problem(
    write: Callable[..., Path], text: str | bytes, expected: list[Expected]
) -> None:
    path = write(text)
    with pytest.raises(SourcesError) as caught:
        load_sources(path)
    got = [(p.line, p.key_path or "<root>", p.message) for p in caught.value.problems]
    assert len(got) == len(expected), "\n".join(str(p) for p in caught.value.problems)
    for (line, key_path, message), (want_line, want_path, fragment) in zip(
        got, sorted(expected), strict=True
    ):
        assert (line, key_path) == (want_line, want_path), message
        assert fragment in message
    assert all(p.file == str(path) for p in caught.value.problems)


def test_there_are_enough_cases() -> None:
    assert len(CASES) >= 25


def test_mistakes_across_two_files_in_a_folder(write: Callable[..., Path]) -> None:
    write(VALID, "a.yaml")
    write(
        textwrap.dedent(
            """\
            sources:
              - name: crm
                base_url: http://127.0.0.1:8765
                endpoints:
                  - {name: contacts, path: /contacts, paginator: {type: pages}}
              - name: shop
                base_url: http://127.0.0.1:8765
            """
        ),
        "b.yml",
    )
    folder = write("not yaml, not read", "notes.txt").parent
    with pytest.raises(SourcesError) as caught:
        load_sources(folder)
    lines = [str(p) for p in caught.value.problems]
    b = str(folder / "b.yml")
    assert len(lines) == 2, lines
    assert lines[0].startswith(
        f"{b}:5: sources.crm.endpoints.contacts.paginator.type: unknown paginator type `pages`"
    )
    assert lines[1] == (
        f"{b}:6: sources.shop.name: source name `shop` is already used at {folder / 'a.yaml'}:2; "
        "source names must be unique across all files"
    )


def test_a_folder_without_yaml_files(tmp_path: Path) -> None:
    with pytest.raises(SourcesError) as caught:
        load_sources(tmp_path)
    assert [(p.line, p.message) for p in caught.value.problems] == [
        (0, "no *.yaml or *.yml files in this folder")
    ]


def test_a_path_that_does_not_exist(tmp_path: Path) -> None:
    with pytest.raises(SourcesError) as caught:
        load_sources(tmp_path / "missing.yaml")
    assert "no such file or folder" in str(caught.value)


def test_messages_are_single_lines(write: Callable[..., Path]) -> None:
    path = write("sources:\n  - {name: shop, base_url: 'http://x'\n    endpoints: []\n")
    with pytest.raises(SourcesError) as caught:
        load_sources(path)
    assert caught.value.problems
    assert all("\n" not in p.message for p in caught.value.problems)


def test_alias_bombs_and_deep_nesting_are_refused(write: Callable[..., Path]) -> None:
    bomb = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}]\n"
        for i in range(1, 9)
    )
    with pytest.raises(SourcesError, match="expands to more than"):
        load_sources(write(bomb, "bomb.yaml"))

    deep = (
        "sources:\n  - name: shop\n    base_url: http://h\n    headers: "
        + "[" * 80
        + "]" * 80
        + "\n"
    )
    with pytest.raises(SourcesError) as caught:
        load_sources(write(deep, "deep.yaml"))
    first, second = caught.value.problems
    assert (first.line, first.key_path, first.message) == (
        4,
        "sources.shop.headers",
        "expected a mapping, got a list",
    )
    assert second.line == 4
    assert re.fullmatch(r"sources\.shop\.headers(\[0\]){60,}", second.key_path)
    assert second.message == "nested deeper than 64 levels"

    deeper = "sources: " + "[" * 700 + "]" * 700 + "\n"
    with pytest.raises(SourcesError, match="nested too deeply"):
        load_sources(write(deeper, "deeper.yaml"))
