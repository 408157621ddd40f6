"""Content-Encoding: a response body decoded once, in bounded steps.

httpx decodes as it streams, but a decoder asked for one chunk may return everything that chunk
expands to: 64 KiB of gzip can be 64 MiB of output, and brotli or zstd far more. Here every
decoder yields at most `STEP` bytes at a time, so the caller's cap on the decoded size
(`max_page_bytes`) bounds memory even for a decompression bomb. gzip, deflate (zlib-wrapped or
raw), br and zstd are read, stacked encodings (`gzip, br`) undone last-applied first.

A body that does not decode as the encoding its header declares raises `BadEncoding`, naming the
encoding: servers that label plain JSON as gzip, or send a truncated stream, exist.
"""

import io
import zlib
from collections.abc import Callable, Iterable, Iterator
from typing import IO, cast

import brotli
import zstandard

STEP = 256 * 1024  # the most decoded bytes produced per step

Decoder = Callable[[Iterator[bytes]], Iterator[bytes]]


class BadEncoding(Exception):
    """A body that does not decode as its declared Content-Encoding."""

    def __init__(self, encoding: str, problem: str):
        super().__init__(f"the API declared `Content-Encoding: {encoding}` but the body {problem}")
        self.encoding = encoding


def encodings_of(header: str | None) -> list[str]:
    """The codings of a Content-Encoding header in the order they were applied, `identity`
    dropped."""
    if not header:
        return []
    return [c for c in (p.strip().lower() for p in header.split(",")) if c and c != "identity"]


def decode(chunks: Iterable[bytes], header: str | None) -> Iterator[bytes]:
    """The decoded body of `chunks` (the bytes as received) for a Content-Encoding `header`."""
    stream: Iterator[bytes] = iter(chunks)
    for coding in reversed(encodings_of(header)):
        decoder = DECODERS.get(coding)
        if decoder is None:
            raise BadEncoding(coding, "uses a coding this client does not read")
        stream = _named(coding, decoder(stream))
    return stream


def _named(coding: str, stream: Iterator[bytes]) -> Iterator[bytes]:
    try:
        yield from stream
    except (zlib.error, brotli.error, zstandard.ZstdError) as exc:
        raise BadEncoding(coding, f"is not valid {coding} ({exc})") from None


def _zlib(wbits: int | None, coding: str) -> Decoder:
    gzip = wbits is not None

    def run(chunks: Iterator[bytes]) -> Iterator[bytes]:
        d = None
        data, done = b"", False
        for chunk in chunks:
            if done:
                continue  # trailing bytes after the stream, ignored as zlib and httpx do
            data += chunk
            while data and not done:
                if d is None:
                    if not gzip and len(data) < 2:
                        break  # deflate: the first two bytes tell zlib-wrapped from raw
                    d = zlib.decompressobj(wbits if wbits is not None else _deflate_bits(data))
                out = d.decompress(data, STEP)
                data = d.unconsumed_tail
                if out:
                    yield out
                if d.eof:
                    # gzip allows several members back to back (RFC 1952 §2.2)
                    data = d.unused_data + data
                    if gzip and data[:2] == b"\x1f\x8b":
                        d = None
                    else:
                        done = True
                elif not out and not data:
                    break  # all input taken: the next chunk
        if d is None:
            if data:
                raise BadEncoding(coding, f"is too short to be {coding}")
            return
        if not done:
            out = d.flush()
            if out:
                yield out
            if not d.eof:
                raise BadEncoding(coding, f"ended before the end of its {coding} stream")

    return run


def _deflate_bits(head: bytes) -> int:
    """`deflate` is meant as zlib-wrapped (RFC 9110) but some servers send raw deflate."""
    cmf, flg = head[0], head[1]
    zlib_wrapped = cmf & 0x0F == 8 and (cmf * 256 + flg) % 31 == 0
    return zlib.MAX_WBITS if zlib_wrapped else -zlib.MAX_WBITS


def _brotli(chunks: Iterator[bytes]) -> Iterator[bytes]:
    d = brotli.Decompressor()
    # brotli's limit stops the output buffer growing, but a step of growth may overshoot it by
    # almost as much again: half a step keeps each output within `STEP`.
    limit = STEP // 2
    for chunk in chunks:
        out = d.process(chunk, output_buffer_limit=limit)
        while out:  # more may be pending even when it says it can take input
            yield out
            out = d.process(b"", output_buffer_limit=limit)
    if not d.is_finished():
        raise BadEncoding("br", "ended before the end of its br stream")


class _Chunks(io.RawIOBase):
    """An iterator of byte chunks as a readable file (what zstd's stream reader pulls from)."""

    def __init__(self, chunks: Iterator[bytes]):
        self._chunks = chunks
        self._rest = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: "memoryview | bytearray") -> int:  # type: ignore[override]
        while not self._rest:
            nxt = next(self._chunks, None)
            if nxt is None:
                return 0
            self._rest = nxt
        n = min(len(buffer), len(self._rest))
        buffer[:n] = self._rest[:n]
        self._rest = self._rest[n:]
        return n


def _zstd(chunks: Iterator[bytes]) -> Iterator[bytes]:
    # zstd's stream reader bounds each output (its decompressobj does not), but it ends quietly
    # on a truncated frame: that shows up as a body that is not JSON, retried the same way.
    source = _Chunks(chunks)
    reader = zstandard.ZstdDecompressor().stream_reader(
        cast(IO[bytes], source), read_across_frames=True
    )
    while out := reader.read(STEP):
        yield out


DECODERS: dict[str, Decoder] = {
    "gzip": _zlib(zlib.MAX_WBITS | 16, "gzip"),
    "x-gzip": _zlib(zlib.MAX_WBITS | 16, "x-gzip"),
    "deflate": _zlib(None, "deflate"),
    "br": _brotli,
    "zstd": _zstd,
}
