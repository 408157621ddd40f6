"""The webhook receiver: a small ASGI app serving `POST /webhooks/<source>`.

A request is answered, in this order:

- 404 when no source of that name declares `webhooks:`;
- 413 when the body is over the source's `max_body_bytes` (by `Content-Length`, and counted
  while streaming, so an unbounded body is never read);
- 401 when the signature is missing, wrong or stale; 400 when the body is not JSON or has no
  event id (see `signing.verify`);
- 200 `{"status": "stored"}` once the event is durable in `landing/S/`, or
  `{"status": "duplicate"}` for an event id already there;
- 503 when the landing cannot write (see `landing.LandingWriter`).

`GET /healthz` answers 200 with the sources and the landing counters (503 once a landing failed).

Nothing is stored for a refused request. On SIGTERM uvicorn stops accepting connections and
waits for the requests in flight; the app's lifespan then closes the writers, which write
everything queued first.
"""

import argparse
import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from api_assets.config.models import SourceConfig, WebhooksConfig
from api_assets.errors import ApiAssetsError, WebhookError
from api_assets.storage.layout import DataLayout
from api_assets.webhooks.landing import DEFAULT_MAX_BATCH, LandingError, LandingWriter
from api_assets.webhooks.signing import verify

log = logging.getLogger(__name__)

GRACEFUL_SHUTDOWN_SECONDS = 30


def _json(status: int, content: dict[str, Any]) -> Response:
    # 404 and 413 leave the body unread: close the connection rather than let the client go on
    # uploading into a body uvicorn would have to discard.
    headers = {"Connection": "close"} if status in (404, 413) else None
    return Response(
        orjson.dumps(content), status_code=status, media_type="application/json", headers=headers
    )


# long: the ASGI handlers close over the app's sources, writers and limits; split, they would pass
# them around
def create_app(
    sources: list[SourceConfig],
    layout: DataLayout,
    *,
    max_batch: int = DEFAULT_MAX_BATCH,
    fsync: bool = True,
) -> Starlette:
    """The receiver for every source in `sources` that declares `webhooks:`.

    The landing writers start with the app's lifespan (so run it under uvicorn, or enter a
    `TestClient` as a context manager) and close, after writing what is queued, at shutdown.
    `max_batch` and `fsync` exist for benchmarks; keep the defaults in production.
    """
    configs: dict[str, WebhooksConfig] = {s.name: s.webhooks for s in sources if s.webhooks}
    writers: dict[str, LandingWriter] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            for name in configs:
                writers[name] = LandingWriter(
                    layout, name, max_batch=max_batch, fsync=fsync
                ).start()
            log.info("webhook receiver ready for %s", ", ".join(sorted(configs)) or "no source")
            yield
        finally:
            for writer in writers.values():
                writer.close()
            writers.clear()

    async def receive(request: Request) -> Response:
        name = request.path_params["source"]
        config = configs.get(name)
        writer = writers.get(name)
        if config is None or writer is None:
            return _json(404, {"error": f"no source {name!r} declares `webhooks:`"})
        try:
            body = await _read_body(request, config.max_body_bytes)
            event = verify(config, request.headers, body, now=time.time())
        except WebhookError as exc:
            return _json(exc.status, {"error": str(exc)})
        except ClientDisconnect:
            return Response(status_code=400)
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            return _json(400, {"error": "the body is not UTF-8 JSON"})
        try:
            outcome = await asyncio.wrap_future(
                writer.submit(event.event_id, event.event_type, text)
            )
        except LandingError as exc:
            return _json(503, {"error": str(exc)})
        return _json(200, {"status": outcome, "event_id": event.event_id})

    async def health(request: Request) -> Response:
        failed = sorted(name for name, w in writers.items() if w.failed)
        return _json(
            503 if failed else 200,
            {
                "status": "failing" if failed else "ok",
                "failed": failed,
                "sources": sorted(configs),
                "landing": {
                    name: {**w.stats, "in_flight": w.in_flight} for name, w in writers.items()
                },
            },
        )

    return Starlette(
        routes=[
            Route("/webhooks/{source}", receive, methods=["POST"]),
            Route("/healthz", health, methods=["GET"]),
        ],
        lifespan=lifespan,
    )


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise WebhookError(400, "Content-Length is not an integer") from None
        if size > limit:
            raise WebhookError(413, f"the body is {size} bytes, over the limit of {limit}")
    chunks: list[bytes] = []
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:  # a chunked body, or one longer than it said
            raise WebhookError(413, f"the body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def serve_command(args: argparse.Namespace) -> int:
    """`api-assets webhooks serve`: the receiver for every source that declares `webhooks:`."""
    import uvicorn

    from api_assets.config.loader import load_sources

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    path = Path(args.sources) if getattr(args, "sources", None) else None
    try:
        sources = load_sources(path)
    except ApiAssetsError as exc:
        print(exc, file=sys.stderr)
        return 2
    with_webhooks = [s for s in sources if s.webhooks is not None]
    if not with_webhooks:
        print(
            "no source declares `webhooks:`; add one (see the README) or point --sources elsewhere",
            file=sys.stderr,
        )
        return 2
    layout = DataLayout.from_env()
    app = create_app(with_webhooks, layout)
    print(
        f"webhook receiver on http://{args.host}:{args.port}/webhooks/<source> for "
        f"{', '.join(s.name for s in with_webhooks)}; landing in {layout.root / 'landing'}",
        file=sys.stderr,
    )
    try:
        uvicorn.run(
            app,
            host=args.host,
            port=args.port,
            access_log=False,
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
            log_level="info",
        )
    except LandingError as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0
