"""Credentials that change under a running job, through Dagster: an access token that expires
mid-run, and refresh tokens that the API rotates (each one works once)."""

import stat
from pathlib import Path

import pytest

from api_assets.demo_api import DEMO_CREDENTIALS

from .conftest import P0, P1, Project, endpoint, expected_ids

pytestmark = pytest.mark.e2e

# every order since 2025: 1000 records, 20 sequential cursor pages of 50
ALL_ORDERS = endpoint(
    "orders",
    incremental={**endpoint("orders")["incremental"], "initial_value": "2025-01-01T00:00:00Z"},
)


def _token_calls(server) -> list[int]:  # type: ignore[no-untyped-def]
    return [int(r["status"]) for r in server.requests("/oauth/token")]


def test_access_token_expiring_mid_run_is_refreshed_and_the_run_completes(
    project: Project, api_factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tokens live 1 s; 20 sequential pages at 120 ms latency take longer than that."""
    server = api_factory(token_lifetime=1.0, latency_ms=120)
    monkeypatch.setenv("SHOP_CLIENT_SECRET", DEMO_CREDENTIALS["client_secret"])
    project.write(
        project.source(
            ALL_ORDERS,
            base_url=server.url,
            auth={
                "type": "oauth2_client_credentials",
                "token_url": f"{server.url}/oauth/token",
                "client_id": DEMO_CREDENTIALS["client_id"],
                "client_secret": "${SHOP_CLIENT_SECRET}",
                "refresh_margin_seconds": 0,
            },
        )
    )
    expected = expected_ids(server, "orders", P0, "2025-01-01T00:00:00Z")

    run = project.materialize(P0)

    assert run.success, run.failure()
    tokens = _token_calls(server)
    assert len(tokens) >= 2, f"the token never expired during the run: {tokens}"
    assert set(tokens) == {200}
    df = project.table("orders", P0)
    assert df is not None and set(df["id"].to_list()) == expected and df.height == len(expected)
    report = project.report("orders", P0)
    assert report is not None and report["status"] == "success"


def test_rotating_refresh_tokens_are_each_spent_once_across_runs(
    project: Project, api_factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The consent's refresh token is in the environment; every refresh rotates it. Two runs,
    each spanning several 1 s tokens: every token call succeeds (a refresh token spent twice
    is `invalid_grant`), the second run starts from the stored token, and the store is one
    owner-only file under DAGSTER_HOME holding the one live refresh token."""
    server = api_factory(token_lifetime=1.0, latency_ms=120)
    first = server.consent(DEMO_CREDENTIALS["client_id"])
    monkeypatch.setenv("SHOP_REFRESH_TOKEN", first)
    monkeypatch.setenv("SHOP_CLIENT_SECRET", DEMO_CREDENTIALS["client_secret"])
    project.write(
        project.source(
            ALL_ORDERS,
            base_url=server.url,
            auth={
                "type": "oauth2_refresh_token",
                "token_url": f"{server.url}/oauth/token",
                "client_id": DEMO_CREDENTIALS["client_id"],
                "client_secret": "${SHOP_CLIENT_SECRET}",
                "refresh_token": "${SHOP_REFRESH_TOKEN}",
                "refresh_margin_seconds": 0,
            },
        )
    )

    for partition in (P0, P1):
        run = project.materialize(partition)
        assert run.success, run.failure()
        server.mutate("orders", updates=400)  # the next run has pages (and tokens) to spend
    tokens = _token_calls(server)
    assert len(tokens) >= 4, f"too few rotations to prove anything: {tokens}"
    assert set(tokens) == {200}, f"a refresh token was refused (spent twice?): {tokens}"

    auth = server.app.auth
    assert first in auth.used_refresh
    live = [t for t in auth.refresh if t not in auth.used_refresh]
    store = Path(project.instance.root_directory) / "credentials"
    secrets = list(store.glob("*.secret"))
    assert len(secrets) == 1, secrets
    stored = secrets[0].read_text()
    assert any(token in stored for token in live), "the store does not hold the live token"
    assert first not in stored
    assert stat.S_IMODE(secrets[0].stat().st_mode) == 0o600
    assert stat.S_IMODE(store.stat().st_mode) == 0o700
    assert not any(project.data.rglob("*.secret"))
    df = project.table("orders", P0)
    assert df is not None and df.height == len(
        expected_ids(server, "orders", P0, "2025-01-01T00:00:00Z")
    )


def test_a_refresh_grant_answered_503_is_sent_once_and_every_step_fails_loudly(
    project: Project, api_factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The provider may have rotated the refresh token before failing to answer: presenting it
    again would make one that detects reuse revoke the whole family. One run of two endpoints:
    the first step's grant gets the 503 and is not retried; the second step finds the token
    marked in the credential store and does not present it either. Loud: the run fails with
    what happened and what to do, reports say `failed`, no table."""
    server = api_factory()
    first = server.consent(DEMO_CREDENTIALS["client_id"])
    monkeypatch.setenv("SHOP_REFRESH_TOKEN", first)
    monkeypatch.setenv("SHOP_CLIENT_SECRET", DEMO_CREDENTIALS["client_secret"])
    server.set_faults("5xx_burst", path="/oauth/token", count=1)
    project.write(
        project.source(
            ALL_ORDERS,
            "products",
            base_url=server.url,
            auth={
                "type": "oauth2_refresh_token",
                "token_url": f"{server.url}/oauth/token",
                "client_id": DEMO_CREDENTIALS["client_id"],
                "client_secret": "${SHOP_CLIENT_SECRET}",
                "refresh_token": "${SHOP_REFRESH_TOKEN}",
            },
        )
    )

    run = project.materialize(P0)

    assert not run.success
    failure = run.failure()
    assert "HTTP 503" in failure
    assert "may have rotated the refresh token and the answer was lost" in failure
    assert "an earlier refresh token grant" in failure  # the other step: not sent again
    assert "authorize the application again and set the new refresh_token" in failure
    assert first not in failure
    assert _token_calls(server) == [503]
    assert [r["path"] for r in server.requests() if r["path"].startswith("/v1")] == []
    for name in ("orders", "products"):
        report = project.report(name, P0)
        assert report is not None and report["status"] == "failed", report
        assert project.table(name, P0) is None
