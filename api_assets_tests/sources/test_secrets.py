"""A secret never appears in an error, whatever is wrong around it."""

from collections.abc import Callable
from pathlib import Path

import pytest
from pydantic import SecretStr

from api_assets.config.loader import load_sources
from api_assets.config.models import BearerAuth, OAuth2ClientCredentialsAuth
from api_assets.errors import SourcesError

HEAD = "sources:\n  - name: shop\n    base_url: http://127.0.0.1:8765\n"


def problems_of(path: Path, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(SourcesError) as caught:
        load_sources(path, environ=environ or {})
    return str(caught.value)


def test_a_secret_of_the_wrong_type_is_named_not_shown(write: Callable[..., Path]) -> None:
    text = HEAD + (
        "    auth:\n      type: oauth2_client_credentials\n      token_url: http://127.0.0.1:1/t\n"
        "      client_id: c\n      client_secret: 918273645\n"
    )
    text_out = problems_of(write(text))
    assert "sources.shop.auth.client_secret: expected a string, got a whole number" in text_out
    assert "918273645" not in text_out


def test_secrets_in_lists_and_mappings(write: Callable[..., Path]) -> None:
    text = HEAD + (
        "    auth: {type: api_key_rotation, values: [rot-secret-one, {k: rot-secret-two}]}\n"
        "    webhooks: {scheme: hmac, secret: [hook-secret-three]}\n"
    )
    out = problems_of(write(text))
    assert "sources.shop.auth.values[1]: expected a string, got a mapping" in out
    assert "sources.shop.webhooks.secret: expected a string, got a list" in out
    for secret in ("rot-secret-one", "rot-secret-two", "hook-secret-three"):
        assert secret not in out


def test_a_weird_environment_value_is_taken_as_is(write: Callable[..., Path]) -> None:
    weird = "we:ird\n${NOT_EXPANDED} $${x} \u2603 'quote\" \\ end"
    path = write(HEAD + "    auth: {type: bearer, token: '${TOKEN}'}\n")
    (shop,) = load_sources(path, environ={"TOKEN": weird})
    assert isinstance(shop.auth, BearerAuth)
    assert shop.auth.token.get_secret_value() == weird
    assert weird not in repr(shop)


def test_a_password_in_a_bad_url_is_not_shown(write: Callable[..., Path]) -> None:
    text = (
        "sources:\n  - name: shop\n    base_url: 'https://user:${PASSWORD}@ bad host'\n"
        "    auth:\n      type: oauth2_client_credentials\n      token_url: ${TOKEN_URL}\n"
        "      client_id: c\n      client_secret: ${SECRET}\n"
    )
    environ = {
        "PASSWORD": "hunter2-pass",
        "TOKEN_URL": "ftp://me:hunter3-pass@host/",
        "SECRET": "s",
    }
    out = problems_of(write(text), environ)
    assert "sources.shop.base_url: expected an absolute http(s) URL" in out
    assert "sources.shop.auth.token_url: expected an absolute http(s) URL" in out
    assert "hunter2" not in out and "hunter3" not in out


def test_secret_from_env_failing_validation_is_not_shown(write: Callable[..., Path]) -> None:
    # the variable lands in a number field: the message says a string was found, not which
    path = write(HEAD + "    timeout_seconds: ${SHOP_CLIENT_SECRET}\n")
    out = problems_of(path, {"SHOP_CLIENT_SECRET": "sk_live_0123456789"})
    assert "expected a number, got a string" in out
    assert "sk_live_0123456789" not in out


def test_unknown_and_misplaced_secret_keys_show_only_the_key(write: Callable[..., Path]) -> None:
    text = HEAD + (
        "    auth: {type: bearer, token: tok-secret-aaa, client_secret: cs-secret-bbb}\n"
        "    endpoints:\n      - name: orders\n        path: /o\n        pasword: pw-secret-ccc\n"
    )
    out = problems_of(write(text))
    assert "`client_secret` belongs to auth types" in out
    assert "unknown key `pasword`" in out
    for secret in ("tok-secret-aaa", "cs-secret-bbb", "pw-secret-ccc"):
        assert secret not in out


def test_models_mask_secrets() -> None:
    auth = OAuth2ClientCredentialsAuth(
        type="oauth2_client_credentials",
        token_url="http://h/t",
        client_id="c",
        client_secret=SecretStr("masked-value-x"),
    )
    assert "masked-value-x" not in repr(auth) and "masked-value-x" not in str(auth)
