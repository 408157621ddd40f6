"""The redactor: registered secrets and credential-bearing names are masked in text, URLs,
params and headers; `for_source` knows a source's static secrets."""

import threading
from typing import Any

import httpx

from api_assets.config.models import SourceConfig
from api_assets.http.redact import RUNTIME_SECRETS, Redactor


def test_text_masks_registered_values_and_their_url_encodings() -> None:
    r = Redactor()
    r.add("p@ss w/rd+1")
    r.add("")  # ignored, never masks everything
    r.add(None)
    assert r.text("x p@ss w/rd+1 y") == "x *** y"
    assert r.text("q=p%40ss%20w%2Frd%2B1") == "q=***"
    assert r.text("q=p%40ss+w%2Frd%2B1") == "q=***"
    assert r.text("nothing here") == "nothing here"
    assert "p@ss" not in repr(r)


def test_longer_secret_containing_a_shorter_is_masked_whole() -> None:
    r = Redactor()
    r.add("abc123")
    r.add("xxabc123yy")
    assert r.text("xxabc123yy abc123") == "*** ***"


def test_url_strips_userinfo_and_masks_params() -> None:
    r = Redactor()
    r.add("tok-999")
    r.add_param_name("X-Custom-Key")
    url = (
        "https://user:pw@api.example.com/v1/items?x-custom-key=abc&access_token=zz&q=tok-999&page=2"
    )
    shown = r.url(url)
    assert shown.startswith("https://api.example.com/v1/items?")
    assert "user" not in shown and "pw@" not in shown
    assert "x-custom-key=***" in shown and "access_token=***" in shown
    assert "q=***" in shown and "page=2" in shown
    assert "abc" not in shown and "zz" not in shown
    assert r.url(httpx.URL("https://h/p?api_key=k")) == "https://h/p?api_key=***"


def test_params_and_headers() -> None:
    r = Redactor()
    r.add("s-123456")
    r.add_param_name("apiToken")
    r.add_header_name("X-Vendor-Key")
    assert r.params({"apitoken": "v", "page": 2, "ids": ["s-123456", 3], "q": "a s-123456"}) == {
        "apitoken": "***",
        "page": 2,
        "ids": ["***", 3],
        "q": "a ***",
    }
    assert r.params({"api_key": ""}) == {"api_key": ""}  # nothing to hide
    headers = {
        "Authorization": "Bearer whatever",
        "Proxy-Authorization": "Basic x",
        "Cookie": "session=1",
        "x-vendor-key": "k",
        "X-Echo": "prefix s-123456",
        "Accept": "application/json",
    }
    assert r.headers(headers) == {
        "Authorization": "***",
        "Proxy-Authorization": "***",
        "Cookie": "***",
        "x-vendor-key": "***",
        "X-Echo": "***",
        "Accept": "application/json",
    }
    assert r.headers(httpx.Headers({"authorization": "x"})) == {"authorization": "***"}


def test_for_source_preregisters_auth_secrets_and_key_names() -> None:
    source = SourceConfig.model_validate(
        {
            "name": "shop",
            "base_url": "https://api.example.com",
            "headers": {"X-Static-Token": "Bearer static-abc-1"},
            "auth": {"type": "api_key", "name": "key", "value": "k-7777", "location": "query"},
            "endpoints": [{"name": "e", "path": "/e", "params": {"secret": "p-8888"}}],
        }
    )
    r = Redactor.for_source(source)
    assert r.text("k-7777 static-abc-1 p-8888") == "*** *** ***"
    assert r.url("https://api.example.com/e?key=other") == "https://api.example.com/e?key=***"
    assert r.headers({"X-Static-Token": "anything"}) == {"X-Static-Token": "***"}


def test_for_source_every_auth_type() -> None:
    cases: list[tuple[dict[str, Any], list[str]]] = [
        ({"type": "bearer", "token": "bearer-1"}, ["bearer-1"]),
        (
            {"type": "basic", "username": "u", "password": "basic-pw"},
            ["basic-pw", "dTpiYXNpYy1wdw=="],
        ),
        (
            {"type": "api_key_rotation", "values": ["rk-1", "rk-2"]},
            ["rk-1", "rk-2"],
        ),
        (
            {
                "type": "oauth2_client_credentials",
                "token_url": "https://a.example/t",
                "client_id": "cid",
                "client_secret": "cs-1",
            },
            ["cs-1"],
        ),
        (
            {
                "type": "oauth2_refresh_token",
                "token_url": "https://a.example/t",
                "client_id": "cid",
                "client_secret": "cs-2",
                "refresh_token": "rt-2",
            },
            ["cs-2", "rt-2"],
        ),
        ({"type": "jwt_bearer", "secret": "jwt-s"}, ["jwt-s"]),
    ]
    for auth, secrets in cases:
        source = SourceConfig.model_validate(
            {"name": "s", "base_url": "https://api.example.com", "auth": auth}
        )
        r = Redactor.for_source(source)
        for secret in secrets:
            assert r.text(f"<{secret}>") == "<***>", (auth["type"], secret)


def test_concurrent_registration_loses_nothing() -> None:
    r = Redactor()
    secrets = [f"secret-{i:04d}-value" for i in range(120)]

    def worker(chunk: list[str]) -> None:
        for s in chunk:
            r.add(s)
            assert r.text(s) == "***"

    threads = [threading.Thread(target=worker, args=(secrets[i::8],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert r.text(" ".join(secrets)) == " ".join(["***"] * 120)


def test_runtime_secrets_are_bounded_static_ones_kept() -> None:
    r = Redactor()
    r.add("static-secret-1")
    for i in range(RUNTIME_SECRETS + 10):
        r.add(f"token-{i:05d}", runtime=True)
    assert r.text("static-secret-1") == "***"
    assert r.text(f"token-{RUNTIME_SECRETS + 9:05d}") == "***"  # the newest are masked
    assert r.text("token-00000") == "token-00000"  # the oldest were forgotten
