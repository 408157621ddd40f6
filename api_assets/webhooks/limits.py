"""What the webhook receiver lets its clients hold, so that slow or greedy ones cannot starve it.

| limit (`webhooks serve` option)         | default | past it                                         |
| --------------------------------------- | ------- | ----------------------------------------------- |
| headers (`--header-timeout`)            | 10 s    | 408, connection closed                          |
| header bytes (`MAX_HEADER_BYTES`)       | 64 KiB  | 431, connection closed                          |
| body (`--body-timeout`)                 | 10 s    | 408, connection closed (`receiver._read_body`)  |
| open connections (`--max-connections`) | 1000    | 503 at once (uvicorn's `limit_concurrency`)     |
| bodies held (`--max-buffered-bytes`)    | 64 MiB  | 503 at once, `Retry-After: 1`                   |

The header deadline runs from the moment a connection opens (or, on a kept-alive connection,
from the first byte of the next request; uvicorn closes one idle for 5 s) until the request's
headers are complete. The body deadline runs from then until the last byte of the body: it is a
deadline for the whole body, not an idle timeout, so a body trickled a byte at a time cannot
hold a connection longer than it. Open connections count every connection, including those
still sending their headers: the deadlines bound how long a slow one keeps its place.
`BodyBudget` counts the body bytes every request holds, from the first byte read until the
request is answered, across all sources.
"""

import asyncio
from dataclasses import dataclass
from typing import Any

import orjson

# httptools comes with uvicorn[standard], which dagster-webserver requires; it is also what
# uvicorn's "auto" picks when installed
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

DEFAULT_HEADER_TIMEOUT_SECONDS = 10.0
DEFAULT_BODY_TIMEOUT_SECONDS = 10.0
DEFAULT_MAX_CONNECTIONS = 1000
DEFAULT_MAX_BUFFERED_BYTES = 64 * 1024 * 1024
MAX_HEADER_BYTES = 64 * 1024


@dataclass(frozen=True)
class ReceiverLimits:
    """The receiver's limits (see the module docstring); every value must be positive."""

    header_timeout_seconds: float = DEFAULT_HEADER_TIMEOUT_SECONDS
    body_timeout_seconds: float = DEFAULT_BODY_TIMEOUT_SECONDS
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    max_buffered_bytes: int = DEFAULT_MAX_BUFFERED_BYTES

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if value <= 0:
                raise ValueError(f"the receiver's {name} must be positive, got {value}")


class BodyBudget:
    """The body bytes held by all requests together, at most `limit`.

    Used from the event loop only (every request handler runs there), so it needs no lock.
    """

    def __init__(self, limit: int):
        self.limit = limit
        self.held = 0

    def fits(self, size: int) -> bool:
        """Whether `size` more bytes would fit right now (nothing is taken)."""
        return self.held + size <= self.limit

    def take(self, size: int) -> bool:
        """Take `size` bytes if they fit; False (and nothing taken) if they do not."""
        if not self.fits(size):
            return False
        self.held += size
        return True

    def give_back(self, size: int) -> None:
        self.held -= size


def uvicorn_options(limits: ReceiverLimits) -> dict[str, Any]:
    """The `uvicorn.run`/`uvicorn.Config` arguments that enforce `limits` below the app: the
    header deadline and the connection limit."""
    protocol = type(
        "HeaderDeadlineProtocol",
        (HeaderDeadlineProtocol,),
        {"header_timeout": limits.header_timeout_seconds},
    )
    return {"http": protocol, "limit_concurrency": limits.max_connections}


class HeaderDeadlineProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline and a size cap for a request's headers,
    which uvicorn has neither of (its keep-alive timeout only runs between requests).

    "Waiting for headers" is: no request yet, or the last one's body is complete (the bytes
    that follow belong to the next request). It ends when uvicorn starts a new request cycle.
    """

    header_timeout: float = DEFAULT_HEADER_TIMEOUT_SECONDS
    _header_timer: asyncio.TimerHandle | None = None
    _header_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_deadline()

    def data_received(self, data: bytes) -> None:
        cycle = self.cycle
        waiting = cycle is None or not cycle.more_body
        if waiting:
            if self._header_timer is None:  # a kept-alive connection's next request begins
                self._arm_header_deadline()
            self._header_bytes += len(data)
        super().data_received(data)
        if self.cycle is not cycle:  # a request's headers are complete
            self._disarm_header_deadline()
            self._header_bytes = 0
        elif waiting and self._header_bytes > MAX_HEADER_BYTES:
            self._refuse(431, f"the request's headers are over {MAX_HEADER_BYTES} bytes")

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_deadline()
        super().connection_lost(exc)

    def _arm_header_deadline(self) -> None:
        self._header_timer = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def _disarm_header_deadline(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            cycle.keep_alive = False  # a pipelined request stalls: close once this one is answered
            return
        self._refuse(408, f"the request's headers took over {self.header_timeout:g} s")

    def _refuse(self, status: int, message: str) -> None:
        self._disarm_header_deadline()
        if self.transport.is_closing():
            return
        body = orjson.dumps({"error": message})
        reason = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}[status]
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
            b"connection: close\r\n\r\n%s" % (status, reason, len(body), body)
        )
        self.transport.close()
