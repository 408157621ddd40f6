"""The bounded decoder (`api_assets.decoding`) on bodies made by the codecs' own compressors: any
body, split at any points, decodes to itself in every coding, in steps of at most `STEP` bytes;
stacked and concatenated encodings decode; broken, truncated and unknown ones raise
`BadEncoding` naming the coding."""

import gzip
import zlib

import brotli
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from api_assets.http.decoding import STEP, BadEncoding, decode, encodings_of

ENCODE = {
    "gzip": lambda b: gzip.compress(b, mtime=0),
    "deflate": lambda b: zlib.compress(b),
    "br": lambda b: brotli.compress(b),
    "zstd": lambda b: zstandard.ZstdCompressor().compress(b),
}


def raw_deflate(body: bytes) -> bytes:
    c = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    return c.compress(body) + c.flush()


def pieces(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    out, last = [], 0
    for p in points:
        out.append(data[last:p])
        last = p
    out.append(data[last:])
    return out


def decoded(chunks: list[bytes], header: str | None) -> bytes:
    return b"".join(decode(chunks, header))


@settings(max_examples=60, deadline=None)
@given(
    body=st.binary(max_size=5000) | st.text(max_size=3000).map(str.encode),
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=6),
    coding=st.sampled_from(["gzip", "deflate", "br", "zstd"]),
)
def test_any_body_split_anywhere_decodes_to_itself(body: bytes, cuts: list[int], coding: str):
    wire = ENCODE[coding](body)
    assert decoded(pieces(wire, cuts), coding) == body


def test_raw_deflate_is_read_too() -> None:
    body = b'{"data": [1, 2, 3]}' * 50
    assert decoded([raw_deflate(body)], "deflate") == body


def test_stacked_codings_are_undone_last_applied_first() -> None:
    body = b'[{"id": 1}]' * 100
    wire = brotli.compress(gzip.compress(body))
    assert decoded([wire], "gzip, br") == body
    assert encodings_of("gzip, identity, BR") == ["gzip", "br"]
    assert decoded([body], "identity") == body
    assert decoded([body], None) == body


def test_gzip_members_back_to_back_are_one_body() -> None:
    assert decoded([gzip.compress(b"[1,") + gzip.compress(b"2]")], "gzip") == b"[1,2]"


def test_output_comes_in_bounded_steps() -> None:
    wire = gzip.compress(bytes(20 * STEP))
    steps = list(decode([wire], "gzip"))
    assert sum(map(len, steps)) == 20 * STEP
    assert max(map(len, steps)) <= STEP
    for coding in ("br", "zstd"):
        steps = list(decode([ENCODE[coding](bytes(20 * STEP))], coding))
        assert max(map(len, steps)) <= STEP, coding


@pytest.mark.parametrize("coding", ["gzip", "deflate", "br", "zstd"])
def test_a_plain_body_labelled_with_a_coding_is_refused(coding: str) -> None:
    with pytest.raises(BadEncoding, match=f"Content-Encoding: {coding}"):
        decoded([b'{"data": [{"id": 1}, {"id": 2}]}'], coding)


# zstd's bounded reader ends quietly on a truncated frame: the JSON parser refuses the body then
@pytest.mark.parametrize("coding", ["gzip", "deflate", "br"])
def test_a_truncated_stream_is_refused(coding: str) -> None:
    wire = ENCODE[coding](b'{"data": [' + b'{"id": 1},' * 2000 + b"]}")
    with pytest.raises(BadEncoding, match=coding):
        decoded([wire[: len(wire) // 2]], coding)


def test_an_unknown_coding_is_refused_by_name() -> None:
    with pytest.raises(BadEncoding, match="Content-Encoding: compress"):
        decoded([b"x"], "compress")
