"""The raw archive `raw/S/E/P/`: every body as fetched, gzip, plus `manifest.jsonl`.

A run writes into a hidden sibling `raw/S/E/.P.tmp-<run_id>/` and `commit()` swaps it in whole:
a reader sees the old partition or the new one, never a half-written one. On Linux the swap is
one `renameat2(RENAME_EXCHANGE)`; elsewhere the old directory is renamed aside first, which
leaves a moment where the partition is absent (but never mixed).

Committed partitions are never modified in place, so `ArchiveReader` pins the directory it
opened (a directory fd): whatever it reads comes from one version. If a commit removes that
version while it is being read, the reader raises `ArchiveError` rather than mix versions.

Durable writes come from `durable.py`.
"""

import gzip
import hashlib
import os
import re
import shutil
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson

from api_assets.errors import ApiAssetsError
from api_assets.pages import EVIDENCE_HEADERS, Page
from api_assets.storage.durable import exchange, fsync_dir, fsync_file
from api_assets.storage.layout import DataLayout, check_name, partition_filename
from api_assets.utc import iso_utc

MANIFEST = "manifest.jsonl"
# Level 1: archiving must not slow the fetch; JSON still shrinks 5-10x at level 1.
GZIP_LEVEL = 1
# A temp dir untouched for this long belongs to a crashed run (a live run touches it every minute).
STALE_AFTER_S = 6 * 3600.0
# A segment of bodies rolls over past this many compressed bytes.
SEGMENT_BYTES = 64 * 1024 * 1024
TOUCH_EVERY_S = 60.0

_EVIDENCE = frozenset(EVIDENCE_HEADERS)
_RUN_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


class ArchiveError(ApiAssetsError):
    """The archive cannot be read as one consistent version (replaced while reading, or a body
    that does not match its manifest sha256)."""


def _strip_userinfo(url: str) -> str:
    """Defence in depth: a URL given as evidence never keeps `user:password@`."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


# --- writing ---------------------------------------------------------------------------------


Packed = tuple[bytes, str]  # (gzip member, sha256 hex) of one body


def pack_body(body: bytes) -> Packed:
    """(gzip member, sha256) of a body: the CPU part of `ArchiveWriter.write`, safe in any
    thread (zlib and hashlib release the GIL)."""
    return gzip.compress(body, compresslevel=GZIP_LEVEL, mtime=0), hashlib.sha256(body).hexdigest()


class ArchiveWriter:
    """Archive the pages of one run of one partition; `commit()` publishes them all at once.

    Bodies go into segment files (`bodies-NNNNNN.gz`): each body is one gzip member appended to
    the current segment, so a segment is a valid gzip file of every body it holds (`zcat` reads
    them all) and the manifest line gives each body's `file`, `offset` and `length` (compressed
    bytes) to read it alone. A segment rolls over at SEGMENT_BYTES. Why not a file per page: at
    10,000 pages a run, creating and fsyncing a file per page cost more than the fetch itself.

    Holds no page in memory. Safe to call `write` from several threads (compression and hashing
    run outside the lock). Use as a context manager to `abort()` on an exception (commit is
    always explicit).
    """

    def __init__(self, layout: DataLayout, source: str, endpoint: str, partition: str, run_id: str):
        self.layout = layout
        self.source = check_name(source, "source")
        self.endpoint = check_name(endpoint, "endpoint")
        self.partition = partition_filename(partition)
        self.run_id = _RUN_ID_UNSAFE.sub("_", run_id) or "run"
        self.final_dir = layout.raw_dir(source, endpoint, partition)
        self.temp_dir = self.final_dir.with_name(f".{self.partition}.tmp-{self.run_id}")
        self._lock = threading.Lock()
        self._count = 0
        self._records = 0
        self._bytes = 0
        self._closed = False
        if self.temp_dir.exists():  # the same run id retried in-process: start clean
            shutil.rmtree(self.temp_dir)
        self.temp_dir.mkdir(parents=True)
        self._manifest = open(self.temp_dir / MANIFEST, "ab")  # noqa: SIM115 (closed in commit/abort)
        self._segments: list[Path] = []
        self._segment: Any = None  # the open segment file
        self._segment_size = 0
        self._touched = time.monotonic()

    @property
    def pages(self) -> int:
        return self._count

    @property
    def records(self) -> int:
        return self._records

    @property
    def bytes(self) -> int:
        return self._bytes

    def write(self, page: Page, packed: Packed | None = None) -> None:
        """Append `page.body` as a gzip member to the current segment and its evidence as one
        manifest line; `packed` is `pack_body(page.body)` when the caller made it already."""
        if self._closed:
            raise ArchiveError(f"archive {self.final_dir} is already committed or aborted")
        body = page.body
        compressed, digest = packed if packed is not None else pack_body(body)
        with self._lock:
            if self._closed:
                raise ArchiveError(f"archive {self.final_dir} is already committed or aborted")
            if self._segment is None or self._segment_size >= SEGMENT_BYTES:
                self._roll()
            self._count += 1
            offset = self._segment_size
            self._segment.write(compressed)
            self._segment_size += len(compressed)
            entry = {
                "index": self._count,
                "page_index": page.index,
                "file": self._segments[-1].name,
                "offset": offset,
                "length": len(compressed),
                "url": _strip_userinfo(page.url),
                "params": page.params,
                "status": page.status,
                "headers": {k: v for k, v in page.headers.items() if k.lower() in _EVIDENCE},
                "fetched_at": iso_utc(page.fetched_at),
                "records": len(page.records),
                "bytes": len(body),
                "sha256": digest,
                "attempts": page.attempts,
                "elapsed_s": round(page.elapsed_s, 6),
                "parent": page.parent,
                "total_reported": page.total_reported,
            }
            line = orjson.dumps(entry, option=orjson.OPT_NON_STR_KEYS, default=str) + b"\n"
            self._manifest.write(line)
            self._records += len(page.records)
            self._bytes += len(body)
            now = time.monotonic()
            if now - self._touched > TOUCH_EVERY_S:  # a live run is never swept as stale
                self._touched = now
                os.utime(self.temp_dir)

    def _roll(self) -> None:
        if self._segment is not None:
            self._segment.close()
        path = self.temp_dir / f"bodies-{len(self._segments) + 1:06d}.gz"
        self._segment = open(path, "ab")  # noqa: SIM115 (closed on roll, commit or abort)
        self._segments.append(path)
        self._segment_size = 0

    def _close_files(self) -> None:
        if self._segment is not None:
            self._segment.close()
            self._segment = None
        self._manifest.close()

    def commit(self) -> Path:
        """Make every page durable and swap the new partition in for the old one. Returns
        `raw/S/E/P/`."""
        if self._closed:
            raise ArchiveError(f"archive {self.final_dir} is already committed or aborted")
        with self._lock:
            self._closed = True
            files = [self.temp_dir / MANIFEST, *self._segments]
            self._close_files()
            for path in files:
                fsync_file(path)
            fsync_dir(self.temp_dir)
            final, temp = self.final_dir, self.temp_dir
            if not final.exists():
                os.rename(temp, final)
            elif exchange(temp, final):
                shutil.rmtree(temp)  # now holds the old version
            else:
                old = final.with_name(f".{self.partition}.old-{self.run_id}")
                if old.exists():
                    shutil.rmtree(old)
                os.rename(final, old)
                os.rename(temp, final)
                shutil.rmtree(old)
            fsync_dir(final.parent)
            return final

    def abort(self) -> None:
        """Drop everything written; the committed partition (if any) is untouched."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._close_files()
            shutil.rmtree(self.temp_dir, ignore_errors=True)

    def __enter__(self) -> "ArchiveWriter":
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Without an exception the caller commits explicitly; an uncommitted writer is dropped.
        self.abort()


def sweep_stale(
    layout: DataLayout, source: str, endpoint: str, *, older_than_s: float = STALE_AFTER_S
) -> list[Path]:
    """Remove temp and aside directories of `raw/S/E/` untouched for `older_than_s`: those of
    crashed runs. A live run touches its temp dir at least every minute, so it is never swept."""
    parent = layout.raw_dir(source, endpoint, "current").parent
    if not parent.is_dir():
        return []
    cutoff = time.time() - older_than_s
    removed = []
    for entry in os.scandir(parent):
        if not entry.name.startswith(".") or not entry.is_dir(follow_symlinks=False):
            continue
        if ".tmp-" not in entry.name and ".old-" not in entry.name:
            continue
        try:
            if entry.stat(follow_symlinks=False).st_mtime >= cutoff:
                continue
        except FileNotFoundError:
            continue
        shutil.rmtree(entry.path, ignore_errors=True)
        removed.append(Path(entry.path))
    return removed


# --- reading ---------------------------------------------------------------------------------


class ArchiveReader:
    """Read one committed partition of the raw archive."""

    def __init__(self, layout: DataLayout, source: str, endpoint: str, partition: str):
        self.dir = layout.raw_dir(source, endpoint, partition)

    def exists(self) -> bool:
        return (self.dir / MANIFEST).is_file()

    def manifest(self) -> list[dict[str, Any]]:
        """The manifest entries in fetch order; [] when the partition was never archived."""
        try:
            with open(self.dir / MANIFEST, "rb") as f:
                return _parse_manifest(f.read())
        except FileNotFoundError:
            return []

    def iter_pages(self) -> Iterator[tuple[dict[str, Any], bytes]]:
        """(manifest entry, decompressed body) in fetch order, all from one committed version;
        each body is checked against its sha256."""
        try:
            dir_fd = os.open(self.dir, os.O_RDONLY | os.O_DIRECTORY)
        except FileNotFoundError:
            return
        segments: dict[str, int] = {}  # segment name → open fd
        try:
            entries = _parse_manifest(_read_at(dir_fd, MANIFEST, self.dir))
            for entry in entries:
                name = entry["file"]
                if "offset" in entry:  # a gzip member in a segment file
                    fd = segments.get(name)
                    if fd is None:
                        fd = segments[name] = _open_at(dir_fd, name, self.dir)
                    member = os.pread(fd, int(entry["length"]), int(entry["offset"]))
                else:  # archives written before segments: a file per page
                    member = _read_at(dir_fd, name, self.dir)
                try:
                    body = gzip.decompress(member)
                except (OSError, EOFError, zlib.error):
                    body = None
                if body is None or hashlib.sha256(body).hexdigest() != entry["sha256"]:
                    raise ArchiveError(
                        f"{self.dir / name} (page {entry.get('index')}): body does not match "
                        "the manifest sha256; the archive is damaged, re-materialize the partition"
                    )
                yield entry, body
        finally:
            for fd in segments.values():
                os.close(fd)
            os.close(dir_fd)


def _open_at(dir_fd: int, name: str, where: Path) -> int:
    try:
        return os.open(name, os.O_RDONLY, dir_fd=dir_fd)
    except FileNotFoundError:
        raise ArchiveError(
            f"{where}: partition was replaced while being read ({name} vanished); read it again"
        ) from None


def _read_at(dir_fd: int, name: str, where: Path) -> bytes:
    with os.fdopen(_open_at(dir_fd, name, where), "rb") as f:
        return f.read()


def _parse_manifest(data: bytes) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in data.splitlines() if line.strip()]
