"""An OAuth2 authorization server built with Authlib (Flask, client credentials grant) whose
tokens live 2 seconds, guarding a slow Flask-Smorest API (0.4 s a page, pages followed by `Link`
header one after the other, ~4 s in all), served by waitress.

The client id and secret reach the sources file only through the environment (`${VAR}`).
Proves that `oauth2_client_credentials` keeps a run going across token expiries: the server
issued more than one token during the run (it counts them), every page was served to a valid
token, the table equals the server's readings exactly and the report says success with every
check passed; and that the secret is written nowhere under the data root.
"""

import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from api_assets_tests.conformance.harness import (
    ConformanceProject,
    ServerProcess,
    assert_complete_report,
    assert_same_records,
    free_port,
    python_server,
    running_server,
)

pytestmark = pytest.mark.e2e

COUNT = 200
PAGE_SIZE = 20
TOKEN_LIFETIME = 2
PAGE_DELAY = 0.4
CLIENT_ID = "conformance-client"
CLIENT_SECRET = secrets.token_urlsafe(24)
SOURCES = """
sources:
  - name: authlib
    base_url: ${AUTHLIB_URL}
    auth:
      type: oauth2_client_credentials
      token_url: ${AUTHLIB_URL}/oauth/token
      client_id: ${AUTHLIB_CLIENT_ID}
      client_secret: ${AUTHLIB_CLIENT_SECRET}
      scopes: [read]
      refresh_margin_seconds: 0.5
    retry: {max_attempts: 3, max_backoff_seconds: 1}
    partitions: {type: none}
    endpoints:
      - name: readings
        path: /v1/readings
        primary_key: id
        paginator: {type: link_header, params: {page_size: 20}}
"""


@pytest.fixture(scope="module")
def authlib_server(log_dir: Path) -> Iterator[ServerProcess]:
    port = free_port()
    command = python_server(
        "oauth_authlib",
        port,
        *("--count", str(COUNT), "--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET),
        *("--token-lifetime", str(TOKEN_LIFETIME), "--page-delay", str(PAGE_DELAY)),
    )
    with running_server("authlib", command, port=port, log_dir=log_dir) as server:
        yield server


def test_client_credentials_tokens_are_renewed_as_they_expire_mid_run(
    authlib_server: ServerProcess, project: Callable[..., ConformanceProject]
) -> None:
    truth = authlib_server.get_json("/_truth")
    assert len(truth) == COUNT
    before = authlib_server.get_json("/_stats")
    env = {
        "AUTHLIB_URL": authlib_server.url,
        "AUTHLIB_CLIENT_ID": CLIENT_ID,
        "AUTHLIB_CLIENT_SECRET": CLIENT_SECRET,
    }
    proj = project(SOURCES, env)
    proj.materialize_ok("group:authlib", in_process=False)
    after = authlib_server.get_json("/_stats")

    pages = COUNT // PAGE_SIZE
    report = proj.report("authlib", "readings")
    assert_complete_report(report, records=COUNT, min_pages=pages)
    assert_same_records(proj.table("authlib", "readings"), truth)
    # the run outlived its first token: the server issued others while it paged
    assert report["elapsed_s"] > TOKEN_LIFETIME
    issued = after["tokens_issued"] - before["tokens_issued"]
    assert issued >= 2, f"{issued} token(s) issued over a {report['elapsed_s']:.1f} s run"
    assert after["served"] - before["served"] == report["pages"]
    # a token may expire on the wire (a busy machine): each 401 costs one fresh token, no more
    refused = after["refused"] - before["refused"]
    assert refused <= issued - 1, f"{refused} request(s) refused, {issued} token(s) issued"

    secret = CLIENT_SECRET.encode()
    leaks = [p for p in proj.data.rglob("*") if p.is_file() and secret in p.read_bytes()]
    assert not leaks, f"the client secret is written in {leaks}"
