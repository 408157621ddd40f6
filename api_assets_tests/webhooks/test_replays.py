"""Replays of a captured delivery, over real HTTP: under a fresh id where the scheme does not sign
the id (github; hmac with `event_id_header`), a duplicate by the signed content's digest, kept
with the landing across a kill -9; where it does (stripe, standard), refused as before."""

import os
import signal
import time

import httpx
import pytest

from api_assets.storage.layout import DataLayout
from api_assets.webhooks.signing import sign_headers

from .conftest import Receiver, landed, landed_ids, spawn_receiver, start_receiver
from .schemes import event_body, signed, source, webhooks_config

# the sources whose signature does not cover the id, and the header that carries it
UNSIGNED_ID = {"gh": "X-GitHub-Delivery", "hx": "X-Hook-Id"}


@pytest.mark.parametrize("name", list(UNSIGNED_ID))
def test_a_replay_under_a_fresh_id_is_answered_2xx_and_not_stored_again(
    receiver: Receiver, layout: DataLayout, name: str
) -> None:
    body, headers = signed(name, "evt-1")
    assert receiver.post(name, body, headers).json()["status"] == "stored"
    replay = receiver.post(name, body, {**headers, UNSIGNED_ID[name]: "evt-fresh"})
    assert replay.status_code == 200, replay.text
    assert replay.json() == {"status": "duplicate", "event_id": "evt-fresh"}
    # another event is stored as ever
    assert receiver.post(name, *signed(name, "evt-2")).json()["status"] == "stored"
    assert landed_ids(layout, name) == ["evt-1", "evt-2"]
    [first, _] = landed(layout, name)
    assert len(first["digest"]) == 64
    health = httpx.get(f"{receiver.url}/healthz").json()["landing"][name]
    assert (health["stored"], health["duplicates"], health["replays"]) == (2, 1, 1)


def test_hmac_with_a_timestamp_and_an_id_header_dedups_the_signed_content(
    layout: DataLayout,
) -> None:
    """The digest covers `"<ts>.<body>"`: the same signed delivery under a fresh id is a
    duplicate; the same body signed again later (a new timestamp only the sender can sign) is a
    new event."""
    overrides = {"timestamp_header": "X-Hook-Ts"}
    receiver = start_receiver(layout, [source("hx", **overrides)])
    config = webhooks_config("hx", **overrides)
    body = event_body("evt-1")
    now = int(time.time())
    try:
        headers = sign_headers(config, body, event_id="evt-1", timestamp=now)
        assert receiver.post("hx", body, headers).json()["status"] == "stored"
        replay = receiver.post("hx", body, {**headers, "X-Hook-Id": "evt-fresh"})
        assert replay.status_code == 200 and replay.json()["status"] == "duplicate"
        resent = sign_headers(config, body, event_id="evt-3", timestamp=now - 10)
        assert receiver.post("hx", body, resent).json()["status"] == "stored"
    finally:
        receiver.stop()
    assert landed_ids(layout, "hx") == ["evt-1", "evt-3"]


def test_the_digests_survive_a_kill_9(layout: DataLayout) -> None:
    body, headers = signed("gh", "evt-k")
    proc, url = spawn_receiver(layout)
    try:
        answer = httpx.post(f"{url}/webhooks/gh", content=body, headers=headers)
        assert answer.json()["status"] == "stored"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    proc, url = spawn_receiver(layout)
    try:
        replay = httpx.post(
            f"{url}/webhooks/gh", content=body, headers={**headers, "X-GitHub-Delivery": "evt-new"}
        )
        assert replay.status_code == 200 and replay.json()["status"] == "duplicate"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert landed_ids(layout, "gh") == ["evt-k"]


def test_schemes_that_sign_the_id_and_a_timestamp_refuse_replays_as_before(
    receiver: Receiver, layout: DataLayout
) -> None:
    # standard signs its id: under a fresh id the signature no longer matches
    body, headers = signed("sw", "evt-1")
    assert receiver.post("sw", body, headers).json()["status"] == "stored"
    assert receiver.post("sw", body, {**headers, "webhook-id": "evt-fresh"}).status_code == 401
    # stripe signs the body (which holds the id) with a timestamp: a capture replayed after the
    # tolerance is stale, and within it the same id is a duplicate
    body, headers = signed("st", "evt-1", timestamp=int(time.time()) - 301)
    assert receiver.post("st", body, headers).status_code == 401
    body, headers = signed("st", "evt-2")
    assert receiver.post("st", body, headers).json()["status"] == "stored"
    assert receiver.post("st", body, headers).json()["status"] == "duplicate"
    assert landed_ids(layout, "sw") == ["evt-1"] and landed_ids(layout, "st") == ["evt-2"]
    assert all("digest" not in e for e in landed(layout, "sw") + landed(layout, "st"))
