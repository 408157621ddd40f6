"""The webhook landing zone, `landing/S/`: durable, idempotent, crash-safe.

On disk, a source's landing is a folder of append-only JSONL segments named by a sequence
number (`000000000001.jsonl`, ...). One line is one event:

    {"event_id":"...","event_type":"...","received_at":"2026-11-28T10:00:00.123456+00:00","payload":"<JSON text>","crc32":"1a2b3c4d"}

`crc32` is the CRC-32 of the same object without that last member (the bytes before
`,"crc32"` followed by `}`), so every line checks itself: a line torn by `kill -9` or a crash
mid-write, or garbage, fails the check and is skipped by the reader; it never breaks it.

`LandingWriter` is the one writer of a source (an exclusive `flock` on `.writer.lock` keeps a
second receiver out). It GROUP-COMMITS: callers `submit` events from any thread; a single writer
thread takes everything queued, writes it in one `write`, `fdatasync`s once, and only then
resolves the callers' futures. A future resolves to `"stored"`, or to `"duplicate"` for an event
id already on disk (the id set is rebuilt from the segments at start, so dedup survives restarts)
or already in flight (that caller waits until the first copy is durable). With a
`replay_window_seconds`, an event submitted with a `digest` (the signed content's SHA-256, for
schemes whose signature does not cover the id) is also a `"duplicate"` when one with the same
digest was received within that window, whatever its id. The digest is a member of the event's
own line (`"digest":"<hex>"`, before `crc32`), so it is exactly as durable as the event, and the
digests of the window are rebuilt with the ids at start. Each writer start opens a new segment,
so a torn tail is only ever at the end of a segment nobody appends to. A write or fsync error fails the batch and every later submit (`LandingError`): what reached the
disk is then unknown until a restart rereads it, and answering 2xx blindly could lose an event.

`LandingReader` reads without locks and never writes: `read_from(offset)` returns the complete
events after a `LandingOffset` (segment name + byte position, stable across restarts) and the
offset to continue from; `events_in_window(start, end)` returns the events received in
`[start, end)`, one per event id.
"""

import contextlib
import fcntl
import json
import logging
import os
import re
import threading
import time
import zlib
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, NotRequired, TypedDict

import orjson

from api_assets.errors import ApiAssetsError
from api_assets.storage.layout import DataLayout

log = logging.getLogger(__name__)

SEGMENT_PATTERN = re.compile(r"^(\d{12})\.jsonl$")
LOCK_FILE = ".writer.lock"
DEFAULT_SEGMENT_MAX_BYTES = 128 * 1024 * 1024
DEFAULT_MAX_BATCH = 2048
_CRC_TAG = b',"crc32":"'
_CRC_SUFFIX_LEN = len(_CRC_TAG) + 8 + 2  # ,"crc32":"xxxxxxxx"}
_READ_CHUNK = 4 * 1024 * 1024

Outcome = Literal["stored", "duplicate"]


class LandingError(ApiAssetsError):
    """The landing cannot take events: locked by another writer, closed, or failed to write."""


class LandedEvent(TypedDict):
    """One event as it lies in the landing."""

    event_id: str
    event_type: str | None
    received_at: str  # UTC ISO 8601 with microseconds
    payload: str  # the body's JSON text, as received
    # hex SHA-256 of the signed content, for schemes whose signature does not cover the id
    # (`signing.replay_window`); absent otherwise
    digest: NotRequired[str]


# --- one line ---------------------------------------------------------------------------------


def encode_line(event: LandedEvent) -> bytes:
    """The self-checking JSONL line (with its newline) for `event`."""
    fields: dict[str, Any] = {
        "event_id": event["event_id"],
        "event_type": event["event_type"],
        "received_at": event["received_at"],
        "payload": event["payload"],
    }
    if "digest" in event:
        fields["digest"] = event["digest"]
    body = orjson.dumps(fields)
    return body[:-1] + b'%s%08x"}\n' % (_CRC_TAG, zlib.crc32(body))


def decode_line(line: bytes) -> LandedEvent | None:
    """The event of one line (without its newline), or None when the line is torn or garbage."""
    if len(line) < _CRC_SUFFIX_LEN + 2 or not line.endswith(b'"}'):
        return None
    if line[-_CRC_SUFFIX_LEN : -_CRC_SUFFIX_LEN + len(_CRC_TAG)] != _CRC_TAG:
        return None
    body = line[:-_CRC_SUFFIX_LEN] + b"}"
    if line[-10:-2] != b"%08x" % zlib.crc32(body):  # exactly as written: lower-case hex
        return None
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not (
        isinstance(obj, dict)
        and isinstance(obj.get("event_id"), str)
        and isinstance(obj.get("received_at"), str)
        and isinstance(obj.get("payload"), str)
        and (obj.get("event_type") is None or isinstance(obj.get("event_type"), str))
        and isinstance(obj.get("digest", ""), str)
    ):
        return None
    event = LandedEvent(
        event_id=obj["event_id"],
        event_type=obj.get("event_type"),
        received_at=obj["received_at"],
        payload=obj["payload"],
    )
    if "digest" in obj:
        event["digest"] = obj["digest"]
    return event


def utc_now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _timestamp(received_at: str) -> float | None:
    """`received_at` as a POSIX timestamp (naive: UTC), or None when it does not parse."""
    try:
        at = datetime.fromisoformat(received_at)
    except ValueError:
        return None
    return (at if at.tzinfo is not None else at.replace(tzinfo=UTC)).timestamp()


# --- offsets ----------------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class LandingOffset:
    """A position in a source's landing: everything before byte `position` of `segment`, and
    all earlier segments, has been read. The empty offset is the very beginning."""

    segment: str = ""
    position: int = 0

    def to_json(self) -> str:
        return json.dumps({"segment": self.segment, "position": self.position})

    @classmethod
    def from_json(cls, text: str | None) -> "LandingOffset":
        """Parse `to_json`'s output; None or empty text is the beginning."""
        if not text:
            return cls()
        data = json.loads(text)
        return cls(str(data.get("segment", "")), int(data.get("position", 0)))

    def token(self) -> str:
        """A short, stable text for run keys: `<segment number>:<position>`."""
        return f"{self.segment.removesuffix('.jsonl') or '0'}:{self.position}"


# --- reading ----------------------------------------------------------------------------------


class LandingReader:
    """Reads one source's landing. Safe to use while a writer appends (in this or another
    process): it only ever returns complete, checked lines."""

    def __init__(self, layout: DataLayout, source: str):
        self.source = source
        self.directory = layout.landing_dir(source)

    def segments(self) -> list[str]:
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return []
        return sorted(n for n in names if SEGMENT_PATTERN.match(n))

    def iter_from(
        self, offset: LandingOffset | None = None
    ) -> Iterator[tuple[LandedEvent, LandingOffset]]:
        """Each complete, valid event after `offset`, with the offset just past it."""
        for item in self._scan(offset or LandingOffset()):
            if item[0] is not None:
                yield item[0], item[1]

    def read_from(
        self, offset: LandingOffset | None = None, *, limit: int | None = None
    ) -> tuple[list[LandedEvent], LandingOffset]:
        """The events after `offset` (at most `limit`), and the offset to read on from.

        The returned offset only moves past complete lines, so an event being written right now
        is returned by a later call. Torn or garbage lines are skipped.
        """
        start = offset or LandingOffset()
        events: list[LandedEvent] = []
        new_offset = start
        for event, after in self._scan(start):
            if event is not None:
                if limit is not None and len(events) >= limit:
                    break
                events.append(event)
            new_offset = after
        return events, new_offset

    def events_in_window(self, start: datetime | None, end: datetime | None) -> list[LandedEvent]:
        """Events with `start <= received_at < end` (None: unbounded), one per event id (the
        first landed), ordered by `received_at`."""
        seen: set[str] = set()
        found: list[tuple[datetime, LandedEvent]] = []
        for event, _ in self.iter_from(None):
            if event["event_id"] in seen:
                continue
            seen.add(event["event_id"])
            try:
                at = datetime.fromisoformat(event["received_at"])
            except ValueError:
                continue
            if at.tzinfo is None:
                at = at.replace(tzinfo=UTC)
            if (start is None or at >= start) and (end is None or at < end):
                found.append((at, event))
        found.sort(key=lambda pair: pair[0])
        return [event for _, event in found]

    def _scan(self, start: LandingOffset) -> Iterator[tuple[LandedEvent | None, LandingOffset]]:
        """Every complete line after `start` (None for an invalid one), with the offset past it.
        A partial last line of an older segment (a crash mid-write) is stepped over by moving
        to the next segment; that of the newest segment may still be in flight and is left."""
        segments = [s for s in self.segments() if s >= start.segment]
        for i, name in enumerate(segments):
            position = start.position if name == start.segment else 0
            newest = i == len(segments) - 1
            try:
                handle = open(self.directory / name, "rb")  # noqa: SIM115 - closed below
            except FileNotFoundError:
                continue
            with handle:
                handle.seek(position)
                pending = b""
                while True:
                    chunk = handle.read(_READ_CHUNK)
                    if not chunk:
                        break
                    data = pending + chunk
                    lines = data.split(b"\n")
                    pending = lines.pop()
                    for line in lines:
                        position += len(line) + 1
                        yield decode_line(line), LandingOffset(name, position)
            if pending and not newest:
                log.warning(
                    "landing/%s/%s: skipping a torn last line (%d bytes)",
                    self.source,
                    name,
                    len(pending),
                )
            if not newest:
                # An older segment is finished: continue from the start of the next one.
                yield None, LandingOffset(segments[i + 1], 0)


# --- writing ----------------------------------------------------------------------------------


@dataclass
class _Queued:
    line: bytes
    event_id: str
    future: "Future[Outcome]"
    digest: str | None = None
    received: float = 0.0  # received_at as a POSIX timestamp


class LandingWriter:
    """The single, group-committing writer of one source's landing (see the module docstring).

    Use as a context manager, or `start()` ... `close()`. `submit` may be called from any
    thread; its future resolves only once the event is on disk (fdatasync'd).
    """

    def __init__(
        self,
        layout: DataLayout,
        source: str,
        *,
        max_batch: int = DEFAULT_MAX_BATCH,
        segment_max_bytes: int = DEFAULT_SEGMENT_MAX_BYTES,
        fsync: bool = True,
        replay_window_seconds: float | None = None,
    ):
        self.source = source
        self._replay_window = replay_window_seconds
        # digest -> when its event was received, for the events of the last replay window
        self._digests: dict[str, float] = {}
        self._digest_order: deque[tuple[float, str]] = deque()
        self._pending_digests: dict[str, Future[Outcome]] = {}
        self.directory = layout.landing_dir(source)
        self._reader = LandingReader(layout, source)
        self._max_batch = max(1, max_batch)
        self._segment_max_bytes = segment_max_bytes
        self._fsync = fsync
        self._cond = threading.Condition()
        self._queue: list[_Queued] = []
        self._seen: set[str] = set()
        self._pending: dict[str, Future[Outcome]] = {}
        self._closing = False
        self._failure: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._lock_fd: int | None = None
        self._fd: int | None = None
        self._segment_size = 0
        self._next_segment = 1
        # duplicates: by id or by digest; replays: the part of them caught by digest alone
        self.stats = {"stored": 0, "duplicates": 0, "replays": 0, "batches": 0, "max_batch": 0}

    # lifecycle

    def start(self) -> "LandingWriter":
        if not self.directory.is_dir():
            self.directory.mkdir(parents=True, exist_ok=True)
            if self._fsync:  # make the new folders themselves survive a power cut
                _fsync_dir(self.directory.parent)
                _fsync_dir(self.directory.parent.parent)
        lock_fd = os.open(self.directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(lock_fd)
            raise LandingError(
                f"landing/{self.source} is being written by another process (a second "
                f"receiver?); stop it first"
            ) from None
        self._lock_fd = lock_fd
        segments = self._reader.segments()
        if segments:
            last = SEGMENT_PATTERN.match(segments[-1])
            assert last is not None
            self._next_segment = int(last.group(1)) + 1
        self._seen = set()
        now = time.time()
        for event, _ in self._reader.iter_from(None):
            self._seen.add(event["event_id"])
            if self._replay_window is not None and "digest" in event:
                received = _timestamp(event["received_at"])
                if received is not None and now - received <= self._replay_window:
                    self._remember_digest(event["digest"], received)
        self._thread = threading.Thread(
            target=self._run, name=f"landing-writer-{self.source}", daemon=True
        )
        self._thread.start()
        log.info(
            "landing/%s: %d event ids on disk in %d segments (%d digests in the replay window)",
            self.source,
            len(self._seen),
            len(segments),
            len(self._digests),
        )
        return self

    def close(self) -> None:
        """Write what is queued, then stop. Submits after this fail."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None

    def __enter__(self) -> "LandingWriter":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # the callers' side

    @property
    def failed(self) -> bool:
        """Whether a write failed: every submit is refused until a restart."""
        return self._failure is not None

    @property
    def in_flight(self) -> int:
        """Events submitted and not yet durable."""
        with self._cond:
            return len(self._pending)

    def known(self, event_id: str) -> bool:
        """Whether `event_id` is on disk already."""
        with self._cond:
            return event_id in self._seen

    def submit(
        self,
        event_id: str,
        event_type: str | None,
        payload: str,
        *,
        received_at: str | None = None,
        digest: str | None = None,
    ) -> "Future[Outcome]":
        """Queue one event; the future resolves once it (or its first copy) is durable.

        With a replay window, `digest` makes the event a duplicate of one with the same digest
        received within the window (on disk or in flight), whatever its id."""
        future: Future[Outcome] = Future()
        event = LandedEvent(
            event_id=event_id,
            event_type=event_type,
            received_at=received_at or utc_now_iso(),
            payload=payload,
        )
        received = _timestamp(event["received_at"]) or time.time()
        if self._replay_window is None:
            digest = None
        elif digest is not None:
            event["digest"] = digest
        with self._cond:
            known = event_id in self._seen
            replayed = not known and digest is not None and self._replayed(digest, received)
            if known or replayed:
                self.stats["duplicates"] += 1
                self.stats["replays"] += int(replayed)
                future.set_result("duplicate")
                return future
            if self._failure is not None or self._closing or self._thread is None:
                future.set_exception(self._refusal())
                return future
            first = self._pending.get(event_id)
            if first is None and digest is not None:
                first = self._pending_digests.get(digest)
                self.stats["replays"] += int(first is not None)
            if first is not None:
                self.stats["duplicates"] += 1
                first.add_done_callback(lambda f: _chain_duplicate(f, future))
                return future
            self._pending[event_id] = future
            if digest is not None:
                self._pending_digests[digest] = future
            self._queue.append(_Queued(encode_line(event), event_id, future, digest, received))
            self._cond.notify()
        return future

    def _replayed(self, digest: str, received: float) -> bool:
        """Whether an event with `digest` was received within the replay window of `received`
        (call with the condition held)."""
        assert self._replay_window is not None
        horizon = time.time() - self._replay_window
        while self._digest_order and self._digest_order[0][0] < horizon:
            at, old = self._digest_order.popleft()
            if self._digests.get(old) == at:
                del self._digests[old]
        first = self._digests.get(digest)
        return first is not None and abs(received - first) <= self._replay_window

    def _remember_digest(self, digest: str, received: float) -> None:
        self._digests[digest] = received
        self._digest_order.append((received, digest))

    # the writer thread

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue:
                    return  # closing, and everything is written
                batch = self._queue[: self._max_batch]
                del self._queue[: self._max_batch]
            try:
                self._commit(b"".join(q.line for q in batch))
            except BaseException as exc:
                log.exception("landing/%s: writing a batch failed", self.source)
                self._fail(batch, exc)
                continue
            with self._cond:
                for q in batch:
                    self._seen.add(q.event_id)
                    del self._pending[q.event_id]
                    if q.digest is not None:
                        self._remember_digest(q.digest, q.received)
                        del self._pending_digests[q.digest]
                self.stats["stored"] += len(batch)
                self.stats["batches"] += 1
                self.stats["max_batch"] = max(self.stats["max_batch"], len(batch))
            for q in batch:
                q.future.set_result("stored")

    def _commit(self, data: bytes) -> None:
        if self._fd is None or (
            self._segment_size > 0 and self._segment_size + len(data) > self._segment_max_bytes
        ):
            self._open_segment()
        assert self._fd is not None
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        self._segment_size += len(data)
        if self._fsync:
            os.fdatasync(self._fd)

    def _open_segment(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        name = f"{self._next_segment:012d}.jsonl"
        self._fd = os.open(
            self.directory / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644
        )
        self._next_segment += 1
        self._segment_size = 0
        if self._fsync:
            _fsync_dir(self.directory)

    def _fail(self, batch: list[_Queued], exc: BaseException) -> None:
        with self._cond:
            self._failure = exc
            failed = batch + self._queue
            self._queue = []
            for q in failed:
                self._pending.pop(q.event_id, None)
                if q.digest is not None:
                    self._pending_digests.pop(q.digest, None)
        for q in failed:
            q.future.set_exception(self._refusal())

    def _refusal(self) -> LandingError:
        if self._failure is not None:
            return LandingError(
                f"landing/{self.source} failed to write ({type(self._failure).__name__}: "
                f"{self._failure}); restart the receiver once the disk is healthy"
            )
        return LandingError(f"landing/{self.source} is closed")


def _chain_duplicate(first: "Future[Outcome]", future: "Future[Outcome]") -> None:
    exc = first.exception()
    if exc is None:
        future.set_result("duplicate")
    else:
        future.set_exception(exc)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)
