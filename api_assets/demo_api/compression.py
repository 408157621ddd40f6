"""Response compression, as real APIs do it: the coding the client accepts, above a small size.

The client's `Accept-Encoding` decides (q-values honoured, `q=0` refused); among codings it
accepts equally the server prefers gzip, then br, zstd and deflate, so an ordinary client gets
gzip and `br` or `zstd` come when a client asks for them alone or first by q. Bodies under
`min_bytes` go as they are, like nginx's `gzip_min_length` and most frameworks' middleware.
Levels are those of dynamic content in production (nginx's gzip level 1, brotli 4, zstd 3).
"""

import gzip
import zlib
from functools import cache

import brotli
import zstandard

PREFERENCE = ("gzip", "br", "zstd", "deflate")

_zstd = zstandard.ZstdCompressor(level=3)


def compress(body: bytes, coding: str) -> bytes:
    """`body` in `coding` (one of `PREFERENCE`)."""
    if coding == "gzip":
        return gzip.compress(body, compresslevel=1, mtime=0)
    if coding == "br":
        return brotli.compress(body, quality=4)
    if coding == "zstd":
        return _zstd.compress(body)
    if coding == "deflate":
        return zlib.compress(body, 1)
    raise ValueError(f"unknown coding {coding!r}")


def choose(accept_encoding: str | None) -> str | None:
    """The coding to answer in for an `Accept-Encoding` header, or None (identity)."""
    if not accept_encoding:
        return None
    weights: dict[str, float] = {}
    for part in accept_encoding.split(","):
        name, _, params = part.strip().partition(";")
        q = 1.0
        params = params.strip()
        if params.startswith("q="):
            try:
                q = float(params[2:])
            except ValueError:
                q = 0.0
        weights[name.strip().lower()] = q
    star = weights.get("*", 0.0)
    best, best_q = None, 0.0
    for coding in PREFERENCE:
        q = weights.get(coding, star)
        if q > best_q:
            best, best_q = coding, q
    return best


BOMB_BLOCK = 16 << 20


@cache
def bomb(coding: str, size: int) -> bytes:
    """A body in `coding` that decodes to `size` zero bytes: gzip members or zstd frames of
    16 MiB of zeros back to back (both formats allow that), or one brotli stream."""
    if coding == "br":
        return brotli.compress(bytes(size), quality=5)
    blocks, rest = divmod(size, BOMB_BLOCK)
    if coding == "gzip":
        block, tail = gzip.compress(bytes(BOMB_BLOCK), 9, mtime=0), gzip.compress(bytes(rest))
    elif coding == "zstd":
        block, tail = _zstd.compress(bytes(BOMB_BLOCK)), _zstd.compress(bytes(rest))
    else:
        raise ValueError(f"no bomb in {coding!r}")
    return block * blocks + (tail if rest else b"")
