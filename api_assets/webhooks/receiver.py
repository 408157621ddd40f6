"""The webhook receiver: a small ASGI app serving `POST /webhooks/<source>`.

A request is answered, in this order:

- 404 when no source of that name declares `webhooks:`;
- 413 when the body is over the source's `max_body_bytes` (by `Content-Length`, and counted
  while streaming, so an unbounded body is never read);
- 503 with `Retry-After: 1` when the body would not fit in the bytes all requests may hold
  together (`max_buffered_bytes`), and 408 when it is not complete within `body_timeout_seconds`
  (see `limits`: headers have their own deadline, connections their own limit, below the app);
- 401 when the signature is missing, wrong or stale; 400 when the body is not JSON or has no
  event id (see `signing.verify`);
- 200 `{"status": "stored"}` once the event is durable in `landing/S/`, or
  `{"status": "duplicate"}` for an event id already there (or, for schemes that do not sign the
  id, the same signed content within the replay window: `signing.replay_window`);
- 503 when the landing cannot write (see `landing.LandingWriter`).

`GET /healthz` answers 200 with the sources, the landing counters and the body bytes held
(`buffered_bytes`) (503 once a landing failed).

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
from api_assets.webhooks.limits import BodyBudget, ReceiverLimits, uvicorn_options
from api_assets.webhooks.signing import replay_window, verify

log = logging.getLogger(__name__)

GRACEFUL_SHUTDOWN_SECONDS = 30


def _json(status: int, content: dict[str, Any], *, unread: bool = False) -> Response:
    # An answer that leaves the body unread (404, 408, 413, a 503 for lack of room) closes the
    # connection rather than let the client go on uploading into a body uvicorn would discard.
    headers = {"Connection": "close"} if unread or status in (404, 408, 413) else {}
    if unread and status == 503:
        headers["Retry-After"] = "1"
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
    limits: ReceiverLimits | None = None,
) -> Starlette:
    """The receiver for every source in `sources` that declares `webhooks:`.

    The landing writers start with the app's lifespan (so run it under uvicorn, or enter a
    `TestClient` as a context manager) and close, after writing what is queued, at shutdown.
    `limits` bound the bodies held and their deadline here; run the app with
    `limits.uvicorn_options` for the header deadline and the connection limit.
    `max_batch` and `fsync` exist for benchmarks; keep the defaults in production.
    """
    configs: dict[str, WebhooksConfig] = {s.name: s.webhooks for s in sources if s.webhooks}
    writers: dict[str, LandingWriter] = {}
    limits = limits or ReceiverLimits()
    budget = BodyBudget(limits.max_buffered_bytes)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            for name in configs:
                writers[name] = LandingWriter(
                    layout,
                    name,
                    max_batch=max_batch,
                    fsync=fsync,
                    replay_window_seconds=replay_window(configs[name]),
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
            body = await _read_body(
                request, config.max_body_bytes, budget, limits.body_timeout_seconds
            )
        except WebhookError as exc:
            return _json(exc.status, {"error": str(exc)}, unread=exc.status == 503)
        except ClientDisconnect:
            return Response(status_code=400)
        try:  # the body's bytes are held in the budget until the answer
            return await _land(config, writer, request, body)
        finally:
            budget.give_back(len(body))

    async def health(request: Request) -> Response:
        failed = sorted(name for name, w in writers.items() if w.failed)
        return _json(
            503 if failed else 200,
            {
                "status": "failing" if failed else "ok",
                "failed": failed,
                "sources": sorted(configs),
                "buffered_bytes": budget.held,
                "max_buffered_bytes": budget.limit,
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


async def _land(
    config: WebhooksConfig, writer: LandingWriter, request: Request, body: bytes
) -> Response:
    """Verify `body` and land its event: the answer once it is durable (or refused)."""
    try:
        event = verify(config, request.headers, body, now=time.time())
        text = body.decode("utf-8")
    except WebhookError as exc:
        return _json(exc.status, {"error": str(exc)})
    except UnicodeDecodeError:
        return _json(400, {"error": "the body is not UTF-8 JSON"})
    try:
        outcome = await asyncio.wrap_future(
            writer.submit(event.event_id, event.event_type, text, digest=event.replay_digest)
        )
    except LandingError as exc:
        return _json(503, {"error": str(exc)})
    return _json(200, {"status": outcome, "event_id": event.event_id})


async def _read_body(request: Request, limit: int, budget: BodyBudget, timeout: float) -> bytes:
    """The whole body, its bytes taken from `budget` (the caller gives them back once it has
    answered). Raises `WebhookError` 413 over `limit`, 503 when `budget` has no room, 408 when
    the body is not complete within `timeout` seconds; nothing is then held."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise WebhookError(400, "Content-Length is not an integer") from None
        if size > limit:
            raise WebhookError(413, f"the body is {size} bytes, over the limit of {limit}")
        if not budget.fits(size):  # refused at once rather than after the upload
            raise WebhookError(503, "the receiver holds too many bodies right now; retry")
    chunks: list[bytes] = []
    held = 0
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                if held + len(chunk) > limit:  # a chunked body, or one longer than it said
                    raise WebhookError(413, f"the body is over the limit of {limit} bytes")
                if not budget.take(len(chunk)):
                    raise WebhookError(503, "the receiver holds too many bodies right now; retry")
                held += len(chunk)
                chunks.append(chunk)
    except BaseException as exc:
        budget.give_back(held)
        if isinstance(exc, TimeoutError):
            raise WebhookError(408, f"the body took over {timeout:g} s to arrive") from None
        raise
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
    try:
        limits = _limits_from(args, with_webhooks)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    layout = DataLayout.from_env()
    app = create_app(with_webhooks, layout, limits=limits)
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
            **uvicorn_options(limits),
        )
    except LandingError as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


def _limits_from(args: argparse.Namespace, sources: list[SourceConfig]) -> ReceiverLimits:
    """The `webhooks serve` options as limits (defaults for the ones not given). Raises
    ValueError for a value that is not positive, or a budget that one allowed body outgrows."""
    defaults = ReceiverLimits()
    limits = ReceiverLimits(
        header_timeout_seconds=_option(args, "header_timeout", defaults.header_timeout_seconds),
        body_timeout_seconds=_option(args, "body_timeout", defaults.body_timeout_seconds),
        max_connections=_option(args, "max_connections", defaults.max_connections),
        max_buffered_bytes=_option(args, "max_buffered_bytes", defaults.max_buffered_bytes),
    )
    for source in sources:
        assert source.webhooks is not None
        if source.webhooks.max_body_bytes > limits.max_buffered_bytes:
            raise ValueError(
                f"--max-buffered-bytes {limits.max_buffered_bytes} is below source "
                f"{source.name!r}'s webhooks.max_body_bytes {source.webhooks.max_body_bytes}: "
                f"such a body could never be received; raise the one or lower the other"
            )
    return limits


def _option(args: argparse.Namespace, name: str, default: Any) -> Any:
    value = getattr(args, name, None)
    return default if value is None else value
