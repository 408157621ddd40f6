"""Signing and verification of the four schemes, against published vectors and each other."""

import base64
import hashlib
import hmac
import json
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from api_assets.config.models import WebhooksConfig
from api_assets.errors import WebhookError
from api_assets.webhooks.signing import sign_headers, verify

from .schemes import SECRETS, TIMESTAMPED, WEBHOOKS, event_body, webhooks_config

NOW = 1_790_000_000


def test_github_matches_the_documented_example() -> None:
    # docs.github.com "Validating webhook deliveries": this secret and payload give this digest.
    config = WebhooksConfig(scheme="github", secret=SecretStr("It's a Secret to Everybody"))
    headers = sign_headers(config, b"Hello, World!", event_id="d-1", timestamp=NOW)
    assert headers["X-Hub-Signature-256"] == (
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    )


def test_standard_matches_the_spec_test_vector() -> None:
    # The Standard Webhooks reference libraries' test vector.
    config = WebhooksConfig(
        scheme="standard", secret=SecretStr("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    )
    body = b'{"test": 2432232314}'
    headers = sign_headers(
        config, body, event_id="msg_p5jXN8AQM9LWM0D4loKWxJek", timestamp=1614265330
    )
    assert headers["webhook-signature"] == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    event = verify(config, headers, body, now=1614265330 + 10)
    assert (event.event_id, event.timestamp) == ("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330)


def test_stripe_signature_is_hmac_of_timestamp_dot_body() -> None:
    config = webhooks_config("st")
    body = event_body("evt_1")
    header = sign_headers(config, body, event_id="evt_1", timestamp=NOW)["Stripe-Signature"]
    expected = hmac.new(
        WEBHOOKS["st"]["secret"].encode(), f"{NOW}.".encode() + body, hashlib.sha256
    ).hexdigest()
    assert header == f"t={NOW},v1={expected}"


@pytest.mark.parametrize("name", list(WEBHOOKS))
def test_round_trip_reads_id_type_and_timestamp(name: str) -> None:
    config = webhooks_config(name)
    body = event_body("evt-42", "order.paid")
    headers = sign_headers(config, body, event_id="evt-42", timestamp=NOW)
    event = verify(config, headers, body, now=NOW + 5)
    assert event.event_id == "evt-42"
    assert event.event_type == "order.paid"
    assert event.timestamp == (NOW if name in TIMESTAMPED else None)
    assert event.payload["data"]["id"] == "evt-42"


@pytest.mark.parametrize("name", list(WEBHOOKS))
def test_headers_are_case_insensitive(name: str) -> None:
    config = webhooks_config(name)
    body = event_body("e1")
    headers = {
        k.upper(): v for k, v in sign_headers(config, body, event_id="e1", timestamp=NOW).items()
    }
    assert verify(config, headers, body, now=NOW).event_id == "e1"


def _refused(
    config: WebhooksConfig, headers: dict[str, str], body: bytes, now: float = NOW
) -> WebhookError:
    with pytest.raises(WebhookError) as info:
        verify(config, headers, body, now=now)
    for secret in SECRETS:
        assert secret not in str(info.value)
    return info.value


@pytest.mark.parametrize("name", list(WEBHOOKS))
def test_tampered_body_is_401(name: str) -> None:
    config = webhooks_config(name)
    body = event_body("e1")
    headers = sign_headers(config, body, event_id="e1", timestamp=NOW)
    assert _refused(config, headers, body.replace(b"thing", b"thang")).status == 401


@pytest.mark.parametrize("name", list(WEBHOOKS))
def test_wrong_secret_is_401(name: str) -> None:
    body = event_body("e1")
    forged = sign_headers(
        webhooks_config(
            name,
            secret="not-the-secret-at-all"
            if name != "sw"
            else "whsec_" + base64.b64encode(b"x" * 24).decode(),
        ),
        body,
        event_id="e1",
        timestamp=NOW,
    )
    assert _refused(webhooks_config(name), forged, body).status == 401


@pytest.mark.parametrize("name", list(WEBHOOKS))
def test_missing_signature_header_is_401(name: str) -> None:
    config = webhooks_config(name)
    body = event_body("e1")
    headers = sign_headers(config, body, event_id="e1", timestamp=NOW)
    signature = {
        "gh": "X-Hub-Signature-256",
        "st": "Stripe-Signature",
        "sw": "webhook-signature",
        "hm": "X-Signature",
        "hx": "X-Hook-Sig",
    }[name]
    del headers[signature]
    assert _refused(config, headers, body).status == 401


@pytest.mark.parametrize("name", TIMESTAMPED)
@pytest.mark.parametrize("skew", [-301, 301, -86_400])
def test_timestamp_outside_tolerance_is_401(name: str, skew: int) -> None:
    config = webhooks_config(name)
    body = event_body("e1")
    headers = sign_headers(config, body, event_id="e1", timestamp=NOW)
    error = _refused(config, headers, body, now=NOW - skew)
    assert error.status == 401 and "tolerance" in str(error)
    assert verify(config, headers, body, now=NOW - skew // abs(skew) * 300).event_id == "e1"


@pytest.mark.parametrize("name", TIMESTAMPED)
def test_tolerance_is_configurable(name: str) -> None:
    config = webhooks_config(name, tolerance_seconds=10)
    body = event_body("e1")
    headers = sign_headers(config, body, event_id="e1", timestamp=NOW)
    assert verify(config, headers, body, now=NOW + 10).event_id == "e1"
    assert _refused(config, headers, body, now=NOW + 11).status == 401


def test_stripe_accepts_any_of_several_v1_signatures() -> None:
    config = webhooks_config("st")
    body = event_body("evt_9")
    good = sign_headers(config, body, event_id="evt_9", timestamp=NOW)["Stripe-Signature"]
    v1 = good.split("v1=")[1]
    header = f"t={NOW},v1={'0' * 64},v0=abc,v1={v1}"
    assert verify(config, {"Stripe-Signature": header}, body, now=NOW).event_id == "evt_9"
    only_bad = f"t={NOW},v1={'0' * 64},v1=zz"
    assert _refused(config, {"Stripe-Signature": only_bad}, body).status == 401


def test_standard_accepts_a_space_separated_list_and_ignores_other_versions() -> None:
    config = webhooks_config("sw")
    body = event_body("m1")
    headers = sign_headers(config, body, event_id="m1", timestamp=NOW)
    headers["webhook-signature"] = (
        f"v1a,AAAA v1,{base64.b64encode(b'x' * 32).decode()} " + headers["webhook-signature"]
    )
    assert verify(config, headers, body, now=NOW).event_id == "m1"


def test_standard_signature_covers_the_id() -> None:
    config = webhooks_config("sw")
    body = event_body("m1")
    headers = sign_headers(config, body, event_id="m1", timestamp=NOW)
    headers["webhook-id"] = "m2"  # a replay under another id must not verify
    assert _refused(config, headers, body).status == 401


def test_hmac_signature_covers_the_timestamp() -> None:
    config = webhooks_config("hm")
    body = event_body("h1")
    headers = sign_headers(config, body, event_id="h1", timestamp=NOW)
    headers["X-Timestamp"] = str(NOW + 1)
    assert _refused(config, headers, body).status == 401


def test_hmac_prefix_and_encoding_are_enforced() -> None:
    config = webhooks_config("hm")
    body = event_body("h1")
    headers = sign_headers(config, body, event_id="h1", timestamp=NOW)
    assert headers["X-Signature"].startswith("sha512=")
    digest = base64.b64decode(headers["X-Signature"].removeprefix("sha512="))
    assert len(digest) == 64  # sha512
    assert _refused(config, {**headers, "X-Signature": digest.hex()}, body).status == 401
    assert (
        _refused(config, {**headers, "X-Signature": "sha512=" + digest.hex()}, body).status == 401
    )


@pytest.mark.parametrize("name", list(WEBHOOKS))
def test_a_signed_body_that_is_not_json_is_400(name: str) -> None:
    config = webhooks_config(name)
    body = b"not json {"
    headers = sign_headers(config, body, event_id="e1", timestamp=NOW)
    assert _refused(config, headers, body).status == 400


@pytest.mark.parametrize("name", ["st", "hm"])
def test_a_body_without_the_event_id_is_400(name: str) -> None:
    config = webhooks_config(name)
    body = json.dumps({"type": "x", "event": "x", "data": {}}).encode()
    headers = sign_headers(config, body, event_id="e1", timestamp=NOW)
    assert _refused(config, headers, body).status == 400


def test_an_unsigned_non_json_body_is_401_not_400() -> None:
    # The signature is checked first: an unauthenticated caller learns nothing about parsing.
    assert _refused(webhooks_config("gh"), {"X-GitHub-Delivery": "d"}, b"garbage").status == 401


def test_secrets_never_show_in_reprs() -> None:
    for name in WEBHOOKS:
        config = webhooks_config(name)
        assert config.secret.get_secret_value() not in repr(config)
        assert config.secret.get_secret_value() not in str(config)


@settings(max_examples=60, deadline=None)
@given(
    name=st.sampled_from(list(WEBHOOKS)),
    event_id=st.text(
        st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters=","),
        min_size=1,
        max_size=40,
    ),
    payload=st.dictionaries(st.text(max_size=8), st.integers() | st.text(max_size=20), max_size=5),
    flip=st.integers(min_value=0, max_value=10_000),
)
def test_any_single_byte_change_is_refused(
    name: str, event_id: str, payload: dict[str, object], flip: int
) -> None:
    config = webhooks_config(name)
    body = json.dumps(
        {"id": event_id, "type": "t", "event": "t", "data": {"id": event_id, **payload}}
    ).encode()
    now = int(time.time())
    headers = sign_headers(config, body, event_id=event_id, timestamp=now)
    assert verify(config, headers, body, now=now).event_id == event_id.strip()
    i = flip % len(body)
    tampered = body[:i] + bytes([body[i] ^ 0x01]) + body[i + 1 :]
    with pytest.raises(WebhookError) as info:
        verify(config, headers, tampered, now=now)
    assert info.value.status == 401
