"""No secret in any log record at any level (`http/redact.py`, `redact_logs`), over real HTTP
against the demo API: every logger captured at DEBUG while a source fetches with an API key in
the query (which httpx's INFO request line prints whole), a bearer token and a Basic password."""

import base64
import logging
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote, quote_plus

import pytest

from api_assets.demo_api import DEMO_CREDENTIALS, DemoServer
from api_assets.http.client import SourceClient
from api_assets_tests.engine.conftest import API_KEY_QUERY, KEY_2, fetch, make_source

Clients = Callable[..., SourceClient]

USER, PASSWORD = DEMO_CREDENTIALS["basic"]
BEARER = DEMO_CREDENTIALS["bearer_token"]
BASIC_PAIR = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()

CASES: list[tuple[str, dict[str, Any], tuple[str, ...]]] = [
    ("api_key_query", API_KEY_QUERY, (KEY_2,)),
    ("bearer", {"type": "bearer", "token": BEARER}, (BEARER,)),
    ("basic", {"type": "basic", "username": USER, "password": PASSWORD}, (PASSWORD, BASIC_PAIR)),
]


class Everything(logging.Handler):
    """Every record of every logger: its name, formatted message and arguments."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.name}: {record.getMessage()} | args={record.args!r}")


@pytest.fixture
def every_log() -> Iterator[Everything]:
    """The root logger at DEBUG with `Everything` on it; the HTTP libraries' loggers put back to
    inheriting its level, in case anything quieted them."""
    handler = Everything()
    root = logging.getLogger()
    names = ["httpx", "httpcore", "httpcore.http11", "httpcore.connection", "api_assets"]
    levels = {name: logging.getLogger(name).level for name in names}
    before = root.level
    root.setLevel(logging.DEBUG)
    for name in names:
        logging.getLogger(name).setLevel(logging.NOTSET)
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(before)
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


@pytest.mark.parametrize(("kind", "auth", "secrets"), CASES, ids=[c[0] for c in CASES])
def test_no_secret_in_any_log_record_at_any_level(
    demo_api: DemoServer,
    clients: Clients,
    every_log: Everything,
    kind: str,
    auth: dict[str, Any],
    secrets: tuple[str, ...],
) -> None:
    source = make_source(demo_api.url, "products", "events", auth=auth)
    client = clients(source)
    for ep in source.endpoints:
        pages, _ = fetch(client, ep)
        assert pages[0].records  # the credential was accepted: it was in play

    text = "\n".join(every_log.lines)
    # the capture sees what it must: httpx's request lines and httpcore's traces
    assert "HTTP Request: GET" in text and "httpcore.http11" in text, text[:2000]
    for secret in secrets:
        for form in {secret, quote(secret, safe=""), quote_plus(secret)}:
            assert form not in text, f"{kind}: a secret in the logs"
    if kind == "api_key_query":
        assert "api_key=***" in text  # masked where it was, not dropped


def test_credential_headers_in_httpcore_traces_are_masked_by_name(
    demo_api: DemoServer, clients: Clients, every_log: Everything
) -> None:
    """A cookie the server sets is no secret the process knows: httpcore's DEBUG trace of the
    response headers is masked by the header's name (as httpcore prints a header)."""
    clients(make_source(demo_api.url, "products"))  # a client installs the filter
    logging.getLogger("httpcore.http11").debug(
        "receive_response_headers.complete return_value=%r",
        (b"HTTP/1.1", 200, b"OK", [(b"set-cookie", b"sid=sekrit-sid"), (b"x-trace", b"t-1")]),
    )
    text = "\n".join(every_log.lines)
    assert "sekrit-sid" not in text
    assert "(b'set-cookie', b'***')" in text and "(b'x-trace', b't-1')" in text
