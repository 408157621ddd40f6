"""The landing: self-checking lines, group commit, dedup across restarts, torn tails, offsets."""

import json
import os
import threading
from concurrent.futures import wait
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from api_assets.storage.layout import DataLayout
from api_assets.webhooks import landing as landing_module
from api_assets.webhooks.landing import (
    LandedEvent,
    LandingError,
    LandingOffset,
    LandingReader,
    LandingWriter,
    decode_line,
    encode_line,
)

from .conftest import landed_ids

SOURCE = "shop"

texts = st.text(max_size=200)
events = st.builds(
    LandedEvent,
    event_id=st.text(min_size=1, max_size=40),
    event_type=st.none() | st.text(max_size=20),
    received_at=st.datetimes(timezones=st.just(UTC)).map(lambda d: d.isoformat()),
    payload=texts,
)


@settings(max_examples=200, deadline=None)
@given(event=events)
def test_a_line_round_trips_and_is_one_line(event: LandedEvent) -> None:
    line = encode_line(event)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert decode_line(line[:-1]) == event


@settings(max_examples=200, deadline=None)
@given(event=events, data=st.data())
def test_a_torn_or_damaged_line_never_decodes(event: LandedEvent, data: st.DataObject) -> None:
    line = encode_line(event)[:-1]
    cut = data.draw(st.integers(min_value=0, max_value=len(line) - 1))
    assert decode_line(line[:cut]) is None
    i = data.draw(st.integers(min_value=0, max_value=len(line) - 1))
    damaged = line[:i] + bytes([line[i] ^ 0x20]) + line[i + 1 :]
    assert decode_line(damaged) is None


def test_garbage_never_decodes() -> None:
    for garbage in [b"", b"{}", b"\x00" * 40, b'{"event_id":"x","crc32":"00000000"}', b"not json"]:
        assert decode_line(garbage) is None


def _submit(writer: LandingWriter, event_id: str, received_at: str | None = None) -> str:
    return writer.submit(
        event_id, "t", json.dumps({"id": event_id}), received_at=received_at
    ).result(timeout=30)


def test_store_then_duplicate_then_read(layout: DataLayout) -> None:
    with LandingWriter(layout, SOURCE) as writer:
        assert _submit(writer, "a") == "stored"
        assert _submit(writer, "b") == "stored"
        assert _submit(writer, "a") == "duplicate"
    events, offset = LandingReader(layout, SOURCE).read_from(None)
    assert [e["event_id"] for e in events] == ["a", "b"]
    assert events[0]["payload"] == '{"id": "a"}'
    assert datetime.fromisoformat(events[0]["received_at"]).tzinfo == UTC
    assert offset.position == os.path.getsize(layout.landing_dir(SOURCE) / offset.segment)


def test_dedup_holds_across_restarts(layout: DataLayout) -> None:
    with LandingWriter(layout, SOURCE) as writer:
        _submit(writer, "a")
    with LandingWriter(layout, SOURCE) as writer:
        assert _submit(writer, "a") == "duplicate"
        assert _submit(writer, "c") == "stored"
    assert landed_ids(layout, SOURCE) == ["a", "c"]
    # each start writes to a new segment; an idle start leaves none behind
    with LandingWriter(layout, SOURCE):
        pass
    assert LandingReader(layout, SOURCE).segments() == ["000000000001.jsonl", "000000000002.jsonl"]


def test_read_from_continues_where_it_stopped(layout: DataLayout) -> None:
    reader = LandingReader(layout, SOURCE)
    assert reader.read_from(None) == ([], LandingOffset())
    with LandingWriter(layout, SOURCE) as writer:
        for i in range(5):
            _submit(writer, f"e{i}")
        first, offset = reader.read_from(None, limit=3)
        assert [e["event_id"] for e in first] == ["e0", "e1", "e2"]
        rest, offset = reader.read_from(LandingOffset.from_json(offset.to_json()))
        assert [e["event_id"] for e in rest] == ["e3", "e4"]
        assert reader.read_from(offset) == ([], offset)
    with LandingWriter(layout, SOURCE) as writer:  # a new segment
        _submit(writer, "e5")
    more, offset2 = reader.read_from(offset)
    assert [e["event_id"] for e in more] == ["e5"]
    assert offset2.segment == "000000000002.jsonl" and offset2 > offset


def test_a_torn_last_line_is_skipped_and_never_blocks_later_events(layout: DataLayout) -> None:
    with LandingWriter(layout, SOURCE) as writer:
        _submit(writer, "a")
        _submit(writer, "b")
    segment = layout.landing_dir(SOURCE) / "000000000001.jsonl"
    whole = encode_line(LandedEvent(event_id="torn", event_type="t", received_at="x", payload="{}"))
    with open(segment, "ab") as f:
        f.write(whole[: len(whole) // 2])  # what kill -9 mid-write leaves behind
    reader = LandingReader(layout, SOURCE)
    events, offset = reader.read_from(None)
    assert [e["event_id"] for e in events] == ["a", "b"]
    assert offset.position < segment.stat().st_size  # may still be in flight: not stepped over
    with LandingWriter(layout, SOURCE) as writer:  # a restart: the torn event is not "seen"
        assert _submit(writer, "torn") == "stored"
        assert _submit(writer, "c") == "stored"
    more, _ = reader.read_from(offset)
    assert [e["event_id"] for e in more] == ["torn", "c"]
    assert landed_ids(layout, SOURCE) == ["a", "b", "torn", "c"]


def test_a_garbage_line_in_the_middle_is_skipped(layout: DataLayout) -> None:
    with LandingWriter(layout, SOURCE) as writer:
        _submit(writer, "a")
    segment = layout.landing_dir(SOURCE) / "000000000001.jsonl"
    with open(segment, "ab") as f:
        f.write(b'{"event_id":"evil","payload":"{}"}\n\x00\x00garbage\n')
    with LandingWriter(layout, SOURCE) as writer:
        _submit(writer, "b")
    assert landed_ids(layout, SOURCE) == ["a", "b"]


def test_events_in_window_filters_by_received_at(layout: DataLayout) -> None:
    day = datetime(2026, 11, 28, tzinfo=UTC)
    with LandingWriter(layout, SOURCE) as writer:
        _submit(writer, "before", (day - timedelta(microseconds=1)).isoformat())
        _submit(writer, "first", day.isoformat())
        _submit(writer, "last", (day + timedelta(days=1, microseconds=-1)).isoformat())
        _submit(writer, "after", (day + timedelta(days=1)).isoformat())
    reader = LandingReader(layout, SOURCE)
    inside = reader.events_in_window(day, day + timedelta(days=1))
    assert [e["event_id"] for e in inside] == ["first", "last"]
    assert len(reader.events_in_window(None, None)) == 4


def test_concurrent_submits_are_group_committed_and_stored_once(
    layout: DataLayout, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = [f"e{i}" for i in range(400)]
    results: list[str] = []
    lock = threading.Lock()
    # the first fsync waits until every client has submitted: what queues meanwhile must go to
    # disk in batches, whatever the threads' timing (with free-running fsyncs, a slow machine
    # could hand the writer one event at a time)
    submitted = threading.Semaphore(0)
    gate = threading.Event()
    real_fdatasync = os.fdatasync

    def gated_fdatasync(fd: int) -> None:
        gate.wait(timeout=30)
        real_fdatasync(fd)

    monkeypatch.setattr(landing_module.os, "fdatasync", gated_fdatasync)

    def client(k: int) -> None:
        mine = ids[k::20] + ids[(k + 1) % 20 :: 20]  # every id is sent by two clients
        futures = [writer.submit(i, "t", "{}") for i in mine]
        submitted.release()
        done = [f.result(timeout=30) for f in futures]
        with lock:
            results.extend(done)

    with LandingWriter(layout, SOURCE) as writer:
        threads = [threading.Thread(target=client, args=(k,)) for k in range(20)]
        for t in threads:
            t.start()
        for _ in threads:
            assert submitted.acquire(timeout=30)
        gate.set()
        for t in threads:
            t.join()
        stats = dict(writer.stats)
    assert results.count("stored") == 400 and results.count("duplicate") == 400
    assert sorted(landed_ids(layout, SOURCE)) == sorted(ids)
    # the batch that waited on the gate, then the rest of the 400 in one (max_batch: 2048)
    assert stats["batches"] <= 2 and stats["max_batch"] >= 200  # several events per fsync


def test_an_in_flight_duplicate_waits_for_the_first_copy(
    layout: DataLayout, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = threading.Event()
    real_fdatasync = os.fdatasync

    def slow_fdatasync(fd: int) -> None:
        gate.wait(timeout=30)
        real_fdatasync(fd)

    monkeypatch.setattr(landing_module.os, "fdatasync", slow_fdatasync)
    with LandingWriter(layout, SOURCE) as writer:
        first = writer.submit("x", "t", "{}")
        second = writer.submit("x", "t", "{}")
        assert not first.done() and not second.done()  # nothing is answered before the fsync
        gate.set()
        assert first.result(timeout=30) == "stored"
        assert second.result(timeout=30) == "duplicate"
    assert landed_ids(layout, SOURCE) == ["x"]


def test_a_failed_fsync_refuses_the_batch_and_everything_after(
    layout: DataLayout, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(fd: int) -> None:
        raise OSError(5, "Input/output error")

    with LandingWriter(layout, SOURCE) as writer:
        assert _submit(writer, "ok") == "stored"
        monkeypatch.setattr(landing_module.os, "fdatasync", broken)
        with pytest.raises(LandingError, match="failed to write"):
            _submit(writer, "lost")
        monkeypatch.undo()
        with pytest.raises(LandingError):
            _submit(writer, "later")
        assert _submit(writer, "ok") == "duplicate"  # what is known durable stays answerable
    # after a restart the landing is reread: "lost" reached the file, so it is a duplicate now
    with LandingWriter(layout, SOURCE) as writer:
        assert _submit(writer, "lost") == "duplicate"
        assert _submit(writer, "later") == "stored"


def test_one_writer_per_source(layout: DataLayout) -> None:
    with LandingWriter(layout, SOURCE), pytest.raises(LandingError, match="another process"):
        LandingWriter(layout, SOURCE).start()
    with LandingWriter(layout, SOURCE) as writer:  # released on close
        assert _submit(writer, "a") == "stored"


def test_segments_roll_over_by_size(layout: DataLayout) -> None:
    with LandingWriter(layout, SOURCE, segment_max_bytes=600) as writer:
        wait([writer.submit(f"e{i}", "t", "x" * 100) for i in range(1)])
        for i in range(1, 12):
            _submit(writer, f"e{i}")
    reader = LandingReader(layout, SOURCE)
    assert len(reader.segments()) > 2
    assert landed_ids(layout, SOURCE) == [f"e{i}" for i in range(12)]
    # reading in small steps across segments yields each event once
    seen: list[str] = []
    offset = None
    while True:
        batch, offset = reader.read_from(offset, limit=1)
        if not batch:
            break
        seen.extend(e["event_id"] for e in batch)
    assert seen == [f"e{i}" for i in range(12)]


def test_submit_after_close_is_refused(layout: DataLayout) -> None:
    writer = LandingWriter(layout, SOURCE).start()
    writer.close()
    with pytest.raises(LandingError, match="closed"):
        _submit(writer, "a")


# --- replays: dedup by the signed content's digest --------------------------------------------

DIGEST = "d" * 64


def test_a_line_keeps_its_digest_and_a_line_without_one_reads_as_before() -> None:
    plain = LandedEvent(
        event_id="x", event_type=None, received_at="2026-01-01T00:00:00+00:00", payload="{}"
    )
    with_digest = LandedEvent(**plain, digest=DIGEST)
    assert decode_line(encode_line(with_digest)[:-1]) == with_digest
    assert decode_line(encode_line(plain)[:-1]) == plain
    assert b"digest" not in encode_line(plain)


def test_a_digest_is_a_duplicate_within_the_window_whatever_the_id(layout: DataLayout) -> None:
    def put(writer: LandingWriter, event_id: str, at: datetime | None = None) -> str:
        received_at = at.isoformat() if at is not None else None
        future = writer.submit(event_id, "t", "{}", received_at=received_at, digest=DIGEST)
        return future.result(timeout=30)

    now = datetime.now(UTC)
    with LandingWriter(layout, SOURCE, replay_window_seconds=3600) as writer:
        assert put(writer, "a", now - timedelta(hours=2)) == "stored"
        assert put(writer, "b") == "stored"  # a's digest is two hours old: past the window
        assert put(writer, "c") == "duplicate"
        # many copies at once under fresh ids: one is stored, the others wait for it
        racing = [writer.submit(f"r{i}", "t", "{}", digest="e" * 64) for i in range(50)]
        assert sorted(f.result(timeout=30) for f in racing) == ["duplicate"] * 49 + ["stored"]
        assert writer.stats["replays"] == 50
    # the digests of the window are rebuilt from the lines, as the ids are
    with LandingWriter(layout, SOURCE, replay_window_seconds=3600) as writer:
        assert put(writer, "d") == "duplicate"
    # without a window (a scheme that signs the id) the digest plays no part and is not kept
    with LandingWriter(layout, SOURCE) as writer:
        assert put(writer, "f") == "stored"
    events = [e for e, _ in LandingReader(layout, SOURCE).iter_from(None)]
    assert [e["event_id"] for e in events][:2] == ["a", "b"]
    assert [e["event_id"] for e in events][-1] == "f"
    assert len(events) == 4
    assert events[0]["digest"] == DIGEST and "digest" not in events[-1]
