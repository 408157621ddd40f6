"""Conformance: api_assets end to end against API servers not written here.

Each test starts a third-party server (or a small app on a third-party framework whose own
library does the paginating; only the app and its seed data are ours) on 127.0.0.1, configures
the project only through a sources YAML file and the environment, runs `dagster asset
materialize` as a user does, and compares the table, the run report and the raw archive with
the server's own data. A server that is not installed or does not start fails its test.

| test module | server (versions from uv.lock / feathers/package-lock.json) | what it covers |
| --- | --- | --- |
| test_fastapi_pagination | FastAPI 0.165.0 + fastapi-pagination 0.16.1 (SQLAlchemy 2.1.9, sqlakeyset 2.0.1787969905, SQLite), Starlette 1.10.0 GZipMiddleware, uvicorn 0.54.0 | offset + total in body, offset + `total_header`, page number, next URL in body, Link header, cursor in body, keyset; gzip |
| test_flask_smorest | Flask-Smorest 0.47.0 (Flask 3.1.3, marshmallow 4.4.0), waitress 3.0.2 | page number + `total_header`, Link header (absolute URLs), a bare-list body |
| test_feathers | Feathers 5.0.50 (`@feathersjs/koa`, `@feathersjs/memory`, Koa 3.3.0), Node 20 | offset `$skip`/`$limit` + total in body, keyset on `id[$gt]`, incremental `updated_at[$gt]` run twice with records created and updated between runs |
| test_json_server | json-server 0.17.4 (Express 4.22.3, compression 1.8.2) | offset `_start`/`_limit` + `X-Total-Count`, Link header, inclusive keyset (`id_gte`); brotli |
| test_httpbin | httpbin 0.10.4 on waitress 3.0.2 | gzip, deflate and brotli bodies decoded once; a nested `records_path`; loud failures on an endless 503, an HTML body, a redirect |
| test_oauth2_authlib | Authlib 1.9.10 authorization server (client credentials) + Flask-Smorest, waitress | OAuth2 tokens that expire (2 s) during a slow run, secrets from `${VAR}` |
| test_rate_limited | slowapi 0.1.10 (limits 5.8.0) on FastAPI + fastapi-pagination | real 429s with `Retry-After`, retried; `throttled` equals the server's count |

The Python servers come from the `conformance` dependency group (a default group: `uv run
--locked` installs it); the Node ones from `feathers/package-lock.json` through
`.ci/install-conformance`, which `.ci/run` calls first. The apps are in `servers/` and
`feathers/`; `harness.py` holds the process, project and comparison helpers.
"""
