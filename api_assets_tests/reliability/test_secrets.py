"""Secrets never leave memory: every auth type, the webhook secret, failing runs, then a grep of
everything the product left behind.

Each secret is unique and recognizable (`sekrit-<what>-<uuid>`) and comes from the environment;
the demo API is taught to accept them. Credentials the API issued (access tokens, rotated
refresh tokens) and every credential that reached the API (signed JWTs included) are collected
from the server itself. Then the data root, `DAGSTER_HOME` (SQLite run and event storage,
compute logs, everything), the command's stdout and stderr, the failures of the failing runs
(messages and stacks) and every materialization's metadata are searched for each secret in
every form (raw, URL-encoded, base64, JSON-escaped; gzip bodies opened, Parquet decoded,
SQLite dumped). The one allowed copy: the live refresh token in the credential store (0600,
under `DAGSTER_HOME`, never under the data root).

The second test proves that credentials are never sent to another origin when a next URL, a
Link header or a redirect points there (a recording server on another port; another host name
for the same port).
"""

import base64
import json
import logging
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote_plus

import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from api_assets.config.loader import load_sources
from api_assets.demo_api import DEMO_CREDENTIALS
from api_assets.demo_api.auth import _Grant
from api_assets.storage.layout import DataLayout
from api_assets.webhooks.receiver import create_app

from .conftest import Project, secret_hits, serve, text_hits

pytestmark = pytest.mark.e2e

NONE = {"type": "none"}
CATEGORIES = {"name": "categories", "path": "/v1/categories", "primary_key": "id"}
STREAM = {
    "name": "orders_stream",
    "path": "/v1/orders/stream",
    "primary_key": "id",
    "paginator": {"type": "cursor", "cursor_header": "X-Next-Cursor", "cursor_param": "cursor"},
}


def sekrit(what: str) -> str:
    return f"sekrit-{what}-{uuid.uuid4().hex}"


def _unpartitioned(
    project: Project, name: str, auth: dict[str, Any], *eps: Any, **extra: Any
) -> dict[str, Any]:
    return project.source(*eps, name=name, auth=auth, partitions={"type": "none"}, **extra)


def test_no_secret_reaches_disk_logs_errors_or_metadata(
    project: Project, api_factory, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    server = api_factory(token_lifetime=2.0)
    project.api = server
    url = server.url
    auth = server.app.auth
    s = {
        "api_key_header": sekrit("hdr"),
        "api_key_query": sekrit("qry"),
        "bearer": sekrit("bearer"),
        "basic_password": sekrit("pass"),
        "client_secret": sekrit("cs"),
        "rotation_a": sekrit("rota"),
        "rotation_b": sekrit("rotb"),
        "webhook": sekrit("whsec"),
        "refused_key": sekrit("refused"),
        "refused_client_secret": sekrit("badcs"),
        "broken_query_key": sekrit("brk"),
        "jwt_secret": DEMO_CREDENTIALS["jwt_secret"],  # the demo API verifies with its own
    }
    # teach the demo API the new credentials
    auth.api_keys.update(
        {
            s["api_key_header"]: "api_key#h",
            s["api_key_query"]: "api_key#q",
            s["rotation_a"]: "api_key#ra",
            s["rotation_b"]: "api_key#rb",
            s["broken_query_key"]: "api_key#b",
        }
    )
    auth.access[s["bearer"]] = _Grant("bearer:rel", "rel", "read", time.time() + 3600)
    pair = base64.b64encode(f"reluser:{s['basic_password']}".encode()).decode()
    auth.basic[f"Basic {pair}"] = "basic:reluser"
    auth.clients["rel-client"] = s["client_secret"]
    s["basic_header"] = pair
    s["consent_refresh_token"] = server.consent("rel-client")
    # record every credential that reaches the API
    seen: set[str] = set()
    identify = auth.identify

    def recording(authorization: str | None, api_key: str | None) -> str | None:
        for value in (authorization, api_key):
            if value:
                seen.add(value.partition(" ")[2] if " " in value else value)
        return identify(authorization, api_key)

    auth.identify = recording  # type: ignore[method-assign]
    for name, value in s.items():
        monkeypatch.setenv(f"REL_{name.upper()}", value)

    token_url = f"{url}/oauth/token"
    project.write(
        _unpartitioned(
            project,
            "by_header",
            {"type": "api_key", "name": "X-API-Key", "value": "${REL_API_KEY_HEADER}"},
            "products",
        ),
        _unpartitioned(
            project,
            "by_query",
            {
                "type": "api_key",
                "name": "api_key",
                "location": "query",
                "value": "${REL_API_KEY_QUERY}",
            },
            "products_feed",
        ),
        _unpartitioned(
            project, "by_bearer", {"type": "bearer", "token": "${REL_BEARER}"}, CATEGORIES
        ),
        _unpartitioned(
            project,
            "by_basic",
            {"type": "basic", "username": "reluser", "password": "${REL_BASIC_PASSWORD}"},
            "customers_keyset",
        ),
        _unpartitioned(
            project,
            "by_oauth",
            {
                "type": "oauth2_client_credentials",
                "token_url": token_url,
                "client_id": "rel-client",
                "client_secret": "${REL_CLIENT_SECRET}",
                "client_auth": "body",
            },
            "orders",
        ),
        _unpartitioned(
            project,
            "by_refresh",
            {
                "type": "oauth2_refresh_token",
                "token_url": token_url,
                "client_id": "rel-client",
                "client_secret": "${REL_CLIENT_SECRET}",
                "refresh_token": "${REL_CONSENT_REFRESH_TOKEN}",
            },
            CATEGORIES,
        ),
        _unpartitioned(
            project,
            "by_rotation",
            {
                "type": "api_key_rotation",
                "name": "X-API-Key",
                "location": "header",
                "values": ["${REL_ROTATION_A}", "${REL_ROTATION_B}"],
            },
            CATEGORIES,
        ),
        _unpartitioned(
            project,
            "by_jwt",
            {
                "type": "jwt_bearer",
                "secret": "${REL_JWT_SECRET}",
                "algorithm": "HS256",
                "claims": {"iss": "rel", "sub": "rel"},
                "lifetime_seconds": 60,
            },
            CATEGORIES,
        ),
        {
            "name": "hooks",
            "base_url": url,
            "partitions": {"type": "none"},
            "endpoints": [],
            "webhooks": {"scheme": "github", "secret": "${REL_WEBHOOK}"},
        },
        # failing runs: a refused key, a refused client secret, a key in the query of a
        # request that keeps failing (its URL ends up in the error)
        _unpartitioned(
            project,
            "refused",
            {"type": "api_key", "name": "X-API-Key", "value": "${REL_REFUSED_KEY}"},
            CATEGORIES,
        ),
        _unpartitioned(
            project,
            "refused_oauth",
            {
                "type": "oauth2_client_credentials",
                "token_url": token_url,
                "client_id": "rel-client",
                "client_secret": "${REL_REFUSED_CLIENT_SECRET}",
            },
            CATEGORIES,
        ),
        _unpartitioned(
            project,
            "broken",
            {
                "type": "api_key",
                "name": "api_key",
                "location": "query",
                "value": "${REL_BROKEN_QUERY_KEY}",
            },
            STREAM,
        ),
    )
    server.set_faults("5xx_burst", path="/v1/orders/stream", persistent=True)

    # webhooks: three signed events and one forgery through the receiver
    layout = DataLayout(project.data)
    with (
        caplog.at_level(logging.DEBUG),
        serve(create_app(load_sources(project.sources_file), layout), lifespan="on") as receiver,
    ):
        sent = server.send_webhooks(f"{receiver}/webhooks/hooks", "github", s["webhook"], count=3)
        forged = server.send_webhooks(
            f"{receiver}/webhooks/hooks", "github", s["webhook"], count=1, tamper=True
        )
    assert [r["status"] for r in sent] == [200, 200, 200], sent
    assert [r["status"] for r in forged] == [401], forged

    # every asset of every source, as the shell runs it
    cli = project.cli(
        "asset",
        "materialize",
        "-m",
        "api_assets.definitions",
        "--select",
        "*",
        "--config-json",
        json.dumps({"execution": {"config": {"in_process": {}}}}),
    )
    assert cli.returncode != 0, "the refused credentials should fail the run"
    assert "RUN_FAILURE" in cli.stderr
    for good in (
        "by_header",
        "by_query",
        "by_bearer",
        "by_basic",
        "by_oauth",
        "by_refresh",
        "by_rotation",
        "by_jwt",
    ):
        report = project.report(project.config(good).endpoints[0].name, "current", source=good)
        assert report is not None and report["status"] == "success", (good, report, cli.stderr)
    for bad in ("refused", "refused_oauth", "broken"):
        report = project.report(project.config(bad).endpoints[0].name, "current", source=bad)
        assert report is not None and report["status"] == "failed", (bad, report)
    events = project.table("webhook_events", "current", source="hooks")
    assert events is not None and events.height == 3

    # the failing sources again in process, for their exceptions (messages and stacks)
    failures = {}
    for bad in ("refused", "refused_oauth", "broken"):
        run = project.materialize(None, source=bad)
        assert not run.success
        failures[bad] = run.failure(stack=True)
    assert "401" in failures["refused"] and "503" in failures["broken"]

    # what the API issued and what reached it
    issued = {f"access_{i}": t for i, t in enumerate(auth.access)}
    issued |= {f"refresh_{i}": t for i, t in enumerate(set(auth.refresh) | auth.used_refresh)}
    issued |= {f"seen_{i}": v for i, v in enumerate(sorted(seen))}
    secrets = {**s, **issued}
    assert any(v.startswith("eyJ") for v in seen), "no signed JWT reached the API"
    assert s["api_key_query"] in seen and s["bearer"] in seen and pair in seen

    store = project.home / "credentials"
    refresh_tokens = {k: v for k, v in secrets.items() if "refresh" in k}
    others = {k: v for k, v in secrets.items() if k not in refresh_tokens}
    hits = secret_hits([project.data, project.home], others)
    hits += secret_hits(
        [project.data, project.home],
        refresh_tokens,
        skip=lambda p: p.parent == store and p.suffix == ".secret",
    )
    metadata = [
        str(record.asset_materialization.metadata)
        for key in project.instance.get_asset_keys()
        for record in project.instance.fetch_materializations(key, limit=100).records
        if record.asset_materialization is not None
    ]
    assert metadata, "no materialization metadata to search"
    hits += text_hits(
        {
            "stdout": cli.stdout,
            "stderr": cli.stderr,
            "log": caplog.text,
            "metadata": "\n".join(metadata),
            **{f"failure:{k}": v for k, v in failures.items()},
        },
        secrets,
    )
    assert not hits, "secrets found:\n" + "\n".join(hits)
    # the one allowed copy: owner-only, under DAGSTER_HOME
    stored = list(store.glob("*.secret"))
    assert stored and all(p.stat().st_mode & 0o077 == 0 for p in stored)
    assert not list(project.data.rglob("*.secret"))


# --- credentials never go to another origin ----------------------------------------------------


class Recorder:
    """Records path, headers and query of every request; answers as `answer(request)`."""

    def __init__(self, answer: Any) -> None:
        self.seen: list[dict[str, Any]] = []
        self.answer = answer

    def app(self) -> Starlette:
        async def any_path(request: Request) -> Response:
            body = (await request.body()).decode("utf-8", "replace")
            self.seen.append(
                {
                    "host": request.headers.get("host", ""),
                    "path": request.url.path,
                    "headers": {k.lower(): v for k, v in request.headers.items()},
                    "query": dict(request.query_params),
                    "form": dict(parse_qsl(body)),
                }
            )
            return self.answer(request)

        return Starlette(routes=[Route("/{path:path}", any_path, methods=["GET", "POST"])])


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(data), status, headers, media_type="application/json")


def test_credentials_never_follow_a_next_url_link_or_redirect_to_another_origin(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = {
        "key": sekrit("key"),
        "qkey": sekrit("qkey"),
        "bearer": sekrit("bearer"),
        "password": sekrit("pw"),
        "client_secret": sekrit("cs"),
        "jwt": sekrit("jwt"),
        "access_token": sekrit("at"),
    }
    for k, v in s.items():
        monkeypatch.setenv(f"REL_{k.upper()}", v)
    foreign = Recorder(lambda r: _json({"data": [], "next": None}))
    ports: dict[str, str] = {}

    def origin_answer(request: Request) -> Response:
        path = request.url.path
        if path == "/oauth/token":
            return _json(
                {"access_token": s["access_token"], "token_type": "Bearer", "expires_in": 3600}
            )
        page2 = request.query_params.get("page") == "2"
        if path == "/v1/next":  # the next page lives on another port
            return _json(
                {"data": [{"id": 1}, {"id": 2}], "next": f"{ports['foreign']}/v1/next?page=2"}
            )
        if path == "/v1/link":  # the next page: the same server under another host name
            if page2:
                return _json([])
            origin = ports["origin"].replace("127.0.0.1", "localhost")
            return _json([{"id": 1}], headers={"Link": f'<{origin}/v1/link?page=2>; rel="next"'})
        if path == "/v1/redirect":
            return Response(status_code=302, headers={"Location": f"{ports['foreign']}/v1/x"})
        return _json({"error": "no route"}, 404)

    origin = Recorder(origin_answer)
    with serve(foreign.app()) as foreign_url, serve(origin.app()) as origin_url:
        ports.update(foreign=foreign_url, origin=origin_url)
        nxt = {
            "name": "items",
            "path": "/v1/next",
            "records_path": "data",
            "primary_key": "id",
            "paginator": {"type": "next_url", "next_path": "next"},
        }
        link = {
            "name": "linked",
            "path": "/v1/link",
            "primary_key": "id",
            "paginator": {"type": "link_header"},
        }
        redirect = {"name": "moved", "path": "/v1/redirect", "primary_key": "id"}
        auths = {
            "by_header": {"type": "api_key", "name": "X-API-Key", "value": "${REL_KEY}"},
            "by_query": {
                "type": "api_key",
                "name": "api_key",
                "location": "query",
                "value": "${REL_QKEY}",
            },
            "by_bearer": {"type": "bearer", "token": "${REL_BEARER}"},
            "by_basic": {"type": "basic", "username": "u", "password": "${REL_PASSWORD}"},
            "by_oauth": {
                "type": "oauth2_client_credentials",
                "token_url": f"{origin_url}/oauth/token",
                "client_id": "c",
                "client_secret": "${REL_CLIENT_SECRET}",
            },
            "by_jwt": {
                "type": "jwt_bearer",
                "secret": "${REL_JWT}",
                "algorithm": "HS256",
                "claims": {"iss": "rel"},
            },
        }
        # both other origins are allowed, so that their pages are fetched (bare): a next URL
        # on an origin not allowed is refused before anything is sent (test_origins_http)
        allowed = [foreign_url, origin_url.replace("127.0.0.1", "localhost")]
        project.write(
            *[
                _unpartitioned(
                    project,
                    name,
                    a,
                    nxt,
                    link,
                    redirect,
                    base_url=origin_url,
                    allowed_origins=allowed,
                )
                for name, a in auths.items()
            ]
        )
        run = project.materialize_all()

    # the redirect fails the run (never followed); the rest landed
    assert not run.success and "302" in run.failure()
    for name in auths:
        for ep, rows in (("items", 2), ("linked", 1)):
            df = project.table(ep, "current", source=name)
            assert df is not None and df.height == rows, (name, ep)
    # one next page per source, asked twice when it ends the series empty (the re-ask)
    assert len(auths) <= len(foreign.seen) <= 2 * len(auths), foreign.seen
    second = [r for r in origin.seen if r["host"].startswith("localhost")]
    assert len(auths) <= len(second) <= 2 * len(auths), origin.seen
    first = [r for r in origin.seen if r["path"] == "/v1/next"]
    assert len(first) == len(auths)
    sent = json.dumps(first)
    assert s["key"] in sent and s["qkey"] in sent and s["bearer"] in sent  # they were in play
    leaked = text_hits(
        {f"{r['host']}{r['path']}": json.dumps(r) for r in [*foreign.seen, *second]}, s
    )
    assert not leaked, leaked
    for r in [*foreign.seen, *second]:
        assert not {"authorization", "x-api-key", "cookie"} & set(r["headers"]), r
        assert "api_key" not in r["query"], r


def test_the_secret_search_sees_through_gzip_parquet_and_sqlite(tmp_path: Path) -> None:
    """The search above can fail: a secret hidden in each kind of file is found."""
    import gzip
    import sqlite3

    import polars as pl

    secret = sekrit("probe")
    (tmp_path / "body.json.gz").write_bytes(gzip.compress(f'{{"k": "{secret}"}}'.encode()))
    pl.DataFrame({"v": [secret] * 50}).write_parquet(tmp_path / "t.parquet", compression="zstd")
    pl.DataFrame({"v": [1]}).write_parquet(tmp_path / "m.parquet", metadata={"x": secret})
    with sqlite3.connect(tmp_path / "events.db") as db:
        db.execute("create table e (body blob)")
        db.execute("insert into e values (?)", (gzip.compress(secret.encode()),))
        db.execute("insert into e values (?)", (secret,))
    (tmp_path / "url.txt").write_text(f"https://x.test/?k={quote_plus(secret + ' ')}")
    (tmp_path / "b64.txt").write_text(base64.b64encode(secret.encode()).decode())
    hits = secret_hits([tmp_path], {"probe": secret})
    found = sorted(Path(h.split(": ")[0]).name for h in hits)
    assert found == ["b64.txt", "body.json.gz", "events.db", "m.parquet", "t.parquet", "url.txt"]
    assert text_hits({"x": f"Bearer {secret}"}, {"probe": secret})
