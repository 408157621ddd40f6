"""The raw archive: atomic commit, abort, sweep, gzip round trip, manifest evidence."""

import gzip
import os
import threading
import time
from pathlib import Path

import orjson
import pytest

from api_assets.storage import archive
from api_assets.storage.archive import ArchiveError, ArchiveReader, ArchiveWriter, sweep_stale
from api_assets.storage.durable import exchange
from api_assets.storage.layout import DataLayout
from api_assets_tests.engine.datafixtures import make_page, nested_record

S, E, P = "shop", "orders", "2026-11-28"

MANIFEST_KEYS = {
    "index",
    "file",
    "offset",
    "length",
    "url",
    "params",
    "status",
    "headers",
    "fetched_at",
    "records",
    "bytes",
    "sha256",
    "attempts",
    "elapsed_s",
    "parent",
    "total_reported",
}


@pytest.fixture
def layout(tmp_path: Path) -> DataLayout:
    return DataLayout(tmp_path / "data")


def write_version(layout: DataLayout, tag: str, pages: int, run_id: str | None = None) -> Path:
    writer = ArchiveWriter(layout, S, E, P, run_id or f"run-{tag}")
    for i in range(pages):
        writer.write(make_page([{"id": i, "version": tag}], index=i))
    return writer.commit()


def read_versions(layout: DataLayout) -> set[str]:
    """The versions seen in one full read of the partition."""
    seen = set()
    for _entry, body in ArchiveReader(layout, S, E, P).iter_pages():
        seen.add(orjson.loads(body)["data"][0]["version"])
    return seen


def test_gzip_round_trip_and_manifest(layout: DataLayout) -> None:
    pages = [
        make_page([nested_record(i) for i in range(3)], index=0, total=5),
        make_page([nested_record(3), nested_record(4)], index=1, parent={"order_id": 7}),
        make_page([], index=2),
    ]
    writer = ArchiveWriter(layout, S, E, P, "r1")
    for page in pages:
        writer.write(page)
    final = writer.commit()

    assert final == layout.raw_dir(S, E, P)
    files = sorted(p.name for p in final.iterdir())
    # one segment holds every body, each its own gzip member: `zcat` reads them all in order
    assert files == ["bodies-000001.gz", "manifest.jsonl"]
    assert gzip.decompress((final / "bodies-000001.gz").read_bytes()) == b"".join(
        p.body for p in pages
    )
    reader = ArchiveReader(layout, S, E, P)
    assert reader.exists()
    entries = reader.manifest()
    assert [e["records"] for e in entries] == [3, 2, 0]
    for entry in entries:
        assert set(entry) >= MANIFEST_KEYS
    assert entries[0]["total_reported"] == 5
    assert entries[1]["parent"] == {"order_id": 7}
    assert entries[0]["fetched_at"] == "2026-11-28T03:00:00+00:00"
    assert entries[0]["headers"] == {"date": "Sat, 28 Nov 2026 03:00:00 GMT"}
    read = list(reader.iter_pages())
    assert [body for _e, body in read] == [p.body for p in pages]
    assert [e["sha256"] for e, _b in read] == [p.sha256 for p in pages]
    assert [e["bytes"] for e, _b in read] == [len(p.body) for p in pages]


def test_manifest_holds_no_secret(layout: DataLayout) -> None:
    secret = "s3cr3t-token-value"
    page = make_page(
        [{"id": 1}],
        url=f"https://user:{secret}@api.example.test/v1/items",
        params={"api_key": "***", "limit": 10},
        headers={
            "date": "Sat, 28 Nov 2026 03:00:00 GMT",
            "x-ratelimit-remaining": "9",
            "authorization": f"Bearer {secret}",
            "set-cookie": f"session={secret}",
        },
    )
    writer = ArchiveWriter(layout, S, E, P, "r1")
    writer.write(page)
    final = writer.commit()
    manifest = (final / "manifest.jsonl").read_bytes()
    assert secret.encode() not in manifest
    entry = ArchiveReader(layout, S, E, P).manifest()[0]
    assert entry["url"] == "https://api.example.test/v1/items"
    assert entry["params"] == {"api_key": "***", "limit": 10}
    assert entry["headers"] == {
        "date": "Sat, 28 Nov 2026 03:00:00 GMT",
        "x-ratelimit-remaining": "9",
    }


def test_commit_replaces_the_whole_partition(layout: DataLayout) -> None:
    write_version(layout, "old", pages=3)
    write_version(layout, "new", pages=1)
    final = layout.raw_dir(S, E, P)
    assert sorted(p.name for p in final.iterdir()) == ["bodies-000001.gz", "manifest.jsonl"]
    assert read_versions(layout) == {"new"}
    # nothing left beside it: no temp dir, no aside dir
    assert [p.name for p in final.parent.iterdir()] == [P]


def test_commit_fallback_without_exchange(layout: DataLayout, monkeypatch) -> None:
    monkeypatch.setattr(archive, "exchange", lambda a, b: False)
    write_version(layout, "old", pages=2)
    write_version(layout, "new", pages=1)
    assert read_versions(layout) == {"new"}
    assert [p.name for p in layout.raw_dir(S, E, P).parent.iterdir()] == [P]


def test_abort_leaves_nothing(layout: DataLayout) -> None:
    writer = ArchiveWriter(layout, S, E, P, "r1")
    writer.write(make_page([{"id": 1}]))
    assert writer.temp_dir.is_dir()
    writer.abort()
    parent = layout.raw_dir(S, E, P).parent
    assert list(parent.iterdir()) == []
    assert not ArchiveReader(layout, S, E, P).exists()
    assert list(ArchiveReader(layout, S, E, P).iter_pages()) == []


def test_exception_in_context_aborts_and_keeps_the_old_partition(layout: DataLayout) -> None:
    write_version(layout, "old", pages=2)
    with pytest.raises(RuntimeError), ArchiveWriter(layout, S, E, P, "r2") as writer:
        writer.write(make_page([{"id": 0, "version": "new"}]))
        raise RuntimeError("fetch failed")
    assert read_versions(layout) == {"old"}
    assert [p.name for p in layout.raw_dir(S, E, P).parent.iterdir()] == [P]


def test_write_after_commit_is_refused(layout: DataLayout) -> None:
    writer = ArchiveWriter(layout, S, E, P, "r1")
    writer.commit()
    with pytest.raises(ArchiveError):
        writer.write(make_page([{"id": 1}]))
    assert ArchiveReader(layout, S, E, P).manifest() == []


def test_sweep_removes_only_stale_temp_dirs(layout: DataLayout) -> None:
    write_version(layout, "committed", pages=1)
    crashed = ArchiveWriter(layout, S, E, "2026-11-27", "crashed")
    crashed.write(make_page([{"id": 1}]))
    old = time.time() - 7 * 3600
    os.utime(crashed.temp_dir, (old, old))
    aside = layout.raw_dir(S, E, P).with_name(f".{P}.old-crashed2")
    aside.mkdir()
    os.utime(aside, (old, old))
    live = ArchiveWriter(layout, S, E, "2026-11-26", "live")
    live.write(make_page([{"id": 2}]))

    removed = sweep_stale(layout, S, E)

    assert sorted(p.name for p in removed) == sorted([crashed.temp_dir.name, aside.name])
    assert not crashed.temp_dir.exists()
    assert live.temp_dir.is_dir()
    assert read_versions(layout) == {"committed"}
    live.commit()
    assert ArchiveReader(layout, S, E, "2026-11-26").exists()


def test_damaged_body_is_detected(layout: DataLayout) -> None:
    final = write_version(layout, "v", pages=2)
    second = ArchiveReader(layout, S, E, P).manifest()[1]
    segment = final / second["file"]
    data = bytearray(segment.read_bytes())
    forged = gzip.compress(b'{"data": [{"id": 99}]}', mtime=0)
    data[second["offset"] : second["offset"] + second["length"]] = forged
    segment.write_bytes(bytes(data))
    with pytest.raises(ArchiveError, match="sha256"):
        list(ArchiveReader(layout, S, E, P).iter_pages())
    # a torn member (bytes flipped inside it) is reported the same way, not as a gzip crash
    data = bytearray(segment.read_bytes())
    data[second["offset"] + 12] ^= 0xFF
    segment.write_bytes(bytes(data))
    with pytest.raises(ArchiveError, match="sha256"):
        list(ArchiveReader(layout, S, E, P).iter_pages())


def test_segments_roll_over_and_read_back(layout: DataLayout, monkeypatch) -> None:
    monkeypatch.setattr(archive, "SEGMENT_BYTES", 1)  # every page starts a new segment
    final = write_version(layout, "v", pages=3)
    assert sorted(p.name for p in final.iterdir()) == [
        "bodies-000001.gz",
        "bodies-000002.gz",
        "bodies-000003.gz",
        "manifest.jsonl",
    ]
    read = list(ArchiveReader(layout, S, E, P).iter_pages())
    assert [orjson.loads(b)["data"][0]["id"] for _e, b in read] == [0, 1, 2]


def test_archives_with_a_file_per_page_still_read(layout: DataLayout) -> None:
    """Archives written before segments (`page-NNNNNN.json.gz`, no offset) read as before."""
    final = write_version(layout, "v", pages=2)
    lines = []
    for entry, body in ArchiveReader(layout, S, E, P).iter_pages():
        name = f"page-{entry['index']:06d}.json.gz"
        (final / name).write_bytes(gzip.compress(body))
        lines.append(
            orjson.dumps(
                {**{k: v for k, v in entry.items() if k not in ("offset", "length")}, "file": name}
            )
        )
    for segment in final.glob("bodies-*.gz"):
        segment.unlink()
    (final / "manifest.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    assert read_versions(layout) == {"v"}


def _replace_repeatedly(
    layout: DataLayout, stop: threading.Event, errors: list, commits: list
) -> None:
    n = 0
    try:
        while not stop.is_set():
            n += 1
            tag = "A" if n % 2 else "B"
            write_version(layout, tag, pages=4 if tag == "A" else 6, run_id=f"run{n}")
            commits.append(n)
    except BaseException as exc:  # surfaced by the test
        errors.append(exc)


@pytest.mark.parametrize("exchange", [True, False], ids=["exchange", "rename-aside"])
def test_reader_during_replace_sees_one_version(layout: DataLayout, monkeypatch, exchange) -> None:
    if not exchange:
        monkeypatch.setattr(archive, "exchange", lambda a, b: False)
    write_version(layout, "A", pages=4)
    stop, errors, commits = threading.Event(), [], []
    writer = threading.Thread(target=_replace_repeatedly, args=(layout, stop, errors, commits))
    writer.start()
    complete_reads = reads = 0
    try:
        # read until many commits happened under the reads (bounded, not timed)
        while (len(commits) < 30 or reads < 200) and reads < 50_000 and not errors:
            reads += 1
            try:
                entries = list(ArchiveReader(layout, S, E, P).iter_pages())
            except ArchiveError as exc:
                # the version being read was removed: refused, never mixed
                assert "replaced while being read" in str(exc)
                continue
            if not entries:
                assert not exchange, "with an atomic exchange the partition never disappears"
                continue
            versions = {orjson.loads(body)["data"][0]["version"] for _e, body in entries}
            assert len(versions) == 1, f"a read mixed versions {versions}"
            expected_pages = 4 if versions == {"A"} else 6
            assert len(entries) == expected_pages
            complete_reads += 1
    finally:
        stop.set()
        writer.join()
    assert not errors
    assert len(commits) >= 30
    assert complete_reads > 0


def test_exchange_keeps_the_partition_visible(layout: DataLayout) -> None:
    probe = layout.root / "probe"
    (probe / "a").mkdir(parents=True)
    (probe / "b").mkdir()
    if not exchange(probe / "a", probe / "b"):
        pytest.skip("renameat2(RENAME_EXCHANGE) is not available here")
    write_version(layout, "A", pages=2)
    stop, errors, commits = threading.Event(), [], []
    writer = threading.Thread(target=_replace_repeatedly, args=(layout, stop, errors, commits))
    writer.start()
    try:
        reader = ArchiveReader(layout, S, E, P)
        checks = 0
        while (len(commits) < 30 or checks < 2000) and checks < 2_000_000 and not errors:
            checks += 1
            assert reader.exists()
    finally:
        stop.set()
        writer.join()
    assert not errors
    assert len(commits) >= 30
