"""No secret may be empty, and a webhook secret must be long enough to be a key: an empty HMAC
key lets anyone sign a webhook, an empty token authenticates nothing. The loader names the
variable that expanded to nothing; models built in code refuse it too."""

import base64
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, get_origin

import pytest
from pydantic import SecretStr, TypeAdapter, ValidationError
from pydantic.fields import FieldInfo

from api_assets.config.loader import load_sources
from api_assets.config.models import (
    EMPTY_SECRET,
    MIN_WEBHOOK_SECRET_BYTES,
    BearerAuth,
    Model,
    SourceConfig,
    WebhooksConfig,
)
from api_assets.errors import SourcesError

HEAD = "sources:\n  - name: shop\n    base_url: http://127.0.0.1:8765\n"
EMPTY = "${SHOP_EMPTY_SECRET}"  # set to "" in the environment of these tests
TOKEN_URL = "http://127.0.0.1:1/t"

# (the YAML below HEAD, the key path of the empty secret, its line): every secret of every auth
# type, the webhook secret and the proxy URL (its password is a secret)
FIELDS: list[tuple[str, str, int]] = [
    (f"    auth: {{type: api_key, value: '{EMPTY}'}}\n", "auth.value", 4),
    (f"    auth: {{type: bearer, token: '{EMPTY}'}}\n", "auth.token", 4),
    (f"    auth: {{type: basic, username: u, password: '{EMPTY}'}}\n", "auth.password", 4),
    (
        "    auth:\n      type: oauth2_client_credentials\n"
        f"      token_url: {TOKEN_URL}\n      client_id: c\n      client_secret: '{EMPTY}'\n",
        "auth.client_secret",
        8,
    ),
    (
        f"    auth:\n      type: api_key_rotation\n      values: [key-one, '{EMPTY}']\n",
        "auth.values[1]",
        6,
    ),
    (
        "    auth:\n      type: oauth2_refresh_token\n"
        f"      token_url: {TOKEN_URL}\n      client_id: c\n      refresh_token: '{EMPTY}'\n",
        "auth.refresh_token",
        8,
    ),
    (
        "    auth:\n      type: oauth2_refresh_token\n"
        f"      token_url: {TOKEN_URL}\n      client_id: c\n      client_secret: '{EMPTY}'\n"
        "      refresh_token: rt-0123\n",
        "auth.client_secret",
        8,
    ),
    (f"    auth: {{type: jwt_bearer, secret: '{EMPTY}'}}\n", "auth.secret", 4),
    (
        f"    auth: {{type: jwt_bearer, algorithm: RS256, private_key: '{EMPTY}'}}\n",
        "auth.private_key",
        4,
    ),
    (f"    webhooks: {{scheme: stripe, secret: '{EMPTY}'}}\n", "webhooks.secret", 4),
    (f"    proxy: '{EMPTY}'\n", "proxy", 4),
]


@pytest.mark.parametrize(("text", "key", "line"), FIELDS, ids=[f[1] for f in FIELDS])
def test_every_empty_secret_is_one_line_naming_its_variable(
    write: Callable[..., Path], text: str, key: str, line: int
) -> None:
    path = write(HEAD + text)
    with pytest.raises(SourcesError) as caught:
        load_sources(path, environ={"SHOP_EMPTY_SECRET": ""})
    assert [str(p) for p in caught.value.problems] == [
        f"{path}:{line}: sources.shop.{key}: `{key}` is empty: `${{SHOP_EMPTY_SECRET}}` expanded "
        "to nothing; set SHOP_EMPTY_SECRET (a secret must not be empty)"
    ]


def test_a_secret_of_spaces_is_empty_too(write: Callable[..., Path]) -> None:
    path = write(HEAD + f"    auth: {{type: bearer, token: '{EMPTY}'}}\n")
    with pytest.raises(SourcesError, match=r"`auth\.token` is empty"):
        load_sources(path, environ={"SHOP_EMPTY_SECRET": "   "})


def _models(cls: type[Model]) -> Iterator[type[Model]]:
    for sub in cls.__subclasses__():
        yield sub
        yield from _models(sub)


def _secret_fields() -> list[tuple[str, FieldInfo]]:
    return sorted(
        (
            (f"{model.__name__}.{name}", info)
            for model in set(_models(Model))
            for name, info in model.model_fields.items()
            if "SecretStr" in str(info.annotation)
        ),
        key=lambda f: f[0],
    )


SECRET_FIELDS = _secret_fields()


def test_the_walk_finds_every_secret_field() -> None:
    names = [name for name, _ in SECRET_FIELDS]
    assert "WebhooksConfig.secret" in names and "TlsConfig.client_key_password" in names
    assert len(names) >= 12, names


@pytest.mark.parametrize(("name", "info"), SECRET_FIELDS, ids=[n for n, _ in SECRET_FIELDS])
def test_every_secret_field_of_every_model_refuses_an_empty_value(
    name: str, info: FieldInfo
) -> None:
    """A secret field added later without the rule fails here."""
    annotation: Any = info.annotation
    if info.metadata:
        annotation = Annotated[(annotation, *info.metadata)]  # type: ignore[valid-type]
    empty: Any = [""] if get_origin(info.annotation) is list else ""
    with pytest.raises(ValidationError) as caught:
        TypeAdapter(annotation).validate_python(empty)
    assert [e["type"] for e in caught.value.errors()] == [EMPTY_SECRET], name


def _standard(key_bytes: int) -> SecretStr:
    return SecretStr("whsec_" + base64.b64encode(b"k" * key_bytes).decode())


def test_models_built_in_code_refuse_empty_and_short_secrets() -> None:
    with pytest.raises(ValidationError, match="is empty"):
        WebhooksConfig(scheme="github", secret=SecretStr(""))
    with pytest.raises(ValidationError, match="is empty"):
        BearerAuth(type="bearer", token=SecretStr(" "))
    short = "x" * (MIN_WEBHOOK_SECRET_BYTES - 1)
    for scheme in ("github", "stripe"):
        with pytest.raises(ValidationError, match="at least 16 bytes"):
            WebhooksConfig(scheme=scheme, secret=SecretStr(short))
        WebhooksConfig(scheme=scheme, secret=SecretStr(short + "x"))
    with pytest.raises(ValidationError, match="at least 16 bytes once base64-decoded"):
        WebhooksConfig(scheme="standard", secret=_standard(MIN_WEBHOOK_SECRET_BYTES - 1))
    WebhooksConfig(scheme="standard", secret=_standard(MIN_WEBHOOK_SECRET_BYTES))
    with pytest.raises(ValidationError, match="at least 16 bytes once base64-decoded"):
        # 20 characters, 15 bytes: the decoded key is what counts
        WebhooksConfig(scheme="standard", secret=SecretStr("MDEyMzQ1Njc4OWFiY2Rl"))


def test_every_bound_admits_its_maximum() -> None:
    source = SourceConfig.model_validate(
        {
            "name": "shop",
            "base_url": "http://127.0.0.1:1",
            "timeout_seconds": 600,
            "request_deadline_seconds": 3600,
            "max_page_bytes": 1 << 30,
            "max_wire_page_bytes": 1 << 30,
            "retry": {"max_backoff_seconds": 3600},
            "rate_limit": {"max_pause_seconds": 86400},
            "webhooks": {
                "scheme": "github",
                "secret": "gh-secret-0123456789",
                "tolerance_seconds": 86400,
                "max_body_bytes": 32 << 20,
            },
        }
    )
    assert source.deadline_seconds == 3600
    defaults = SourceConfig(name="s", base_url="http://h")
    assert defaults.deadline_seconds == 120  # 4 × the 30 s timeout
    assert defaults.rate_limit.max_pause_seconds == 300
    assert SourceConfig(name="s", base_url="http://h", timeout_seconds=1).deadline_seconds == 60
