"""Fuzzing the loader: whatever the file holds, it returns sources or raises SourcesError, every
problem is one well-formed line, and no value of a secret field is ever repeated."""

import copy
import re
import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api_assets.config import models as sources_module
from api_assets.config.loader import load_sources
from api_assets.config.models import SourceConfig
from api_assets.errors import SourcesError

PROBLEM_LINE = re.compile(r"^[^:\n]+:\d+: [^:\n]+: [^\n]+$")
SECRET_KEYS = [
    "token",
    "password",
    "client_secret",
    "value",
    "values",
    "refresh_token",
    "secret",
    "private_key",
    "client_key_password",
]
# every key of every model, so that random structures reach deep into validation
KEYS = sorted(
    {
        name
        for model in vars(sources_module).values()
        if isinstance(model, type) and issubclass(model, sources_module.Model)
        for name in model.model_fields
    }
)
TYPES = [
    "none",
    "bearer",
    "basic",
    "api_key",
    "oauth2_client_credentials",
    "jwt_bearer",
    "cursor",
    "offset",
    "single_page",
    "keyset",
    "daily",
    "none",
    "hmac",
    "github",
]
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def load_text(text: str | bytes) -> list[SourceConfig] | SourcesError:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "sources.yaml"
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text, encoding="utf-8", errors="surrogatepass")
        try:
            return load_sources(path, environ={"SET": "x", "SECRET_VAR": "fuzzsecret_from_env_77"})
        except SourcesError as err:
            for problem in err.problems:
                assert PROBLEM_LINE.match(str(problem)), str(problem)
                assert problem.line >= 0
            return err


yaml_tokens = st.sampled_from(
    [
        "sources:",
        "\n",
        "  ",
        "    ",
        "- ",
        "name: ",
        "shop",
        ": ",
        "{",
        "}",
        "[",
        "]",
        ", ",
        "${",
        "SET",
        "}",
        ":-",
        "$${",
        "&a ",
        "*a",
        "<<: ",
        "!!str ",
        "!!python/name:os.system ",
        "'",
        '"',
        "# c",
        "---",
        "\t",
        "type: ",
        "cursor",
        "endpoints:",
        "path: /x/{id}",
        "base_url: http://h",
        "auth:",
        "? ",
        "~",
        "1e9",
        "2026-01-01",
        "\x00",
        "\u2028",
        "é",
        "-1",
        "parent: ",
        "window: ",
    ]
)


@FUZZ
@given(st.lists(yaml_tokens, max_size=60).map("".join))
def test_yamlish_text(text: str) -> None:
    load_text(text)


@FUZZ
@given(st.text(max_size=200) | st.binary(max_size=200))
def test_random_text_and_bytes(text: str | bytes) -> None:
    load_text(text)


def secret_value(draw: Any) -> str:
    return "fuzzsecret_" + draw(
        st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=4, max_size=8)
    )


scalars = (
    st.none()
    | st.booleans()
    | st.integers(-5, 10**12)
    | st.floats(allow_nan=True)
    | st.text(max_size=12)
    | st.sampled_from(TYPES)
    | st.sampled_from(["http://127.0.0.1:1", "${SET}", "${UNSET}", "/p/{id}", "0 3 * * *"])
)


@st.composite
def structures(draw: Any, depth: int = 0) -> Any:
    """Random nested data built mostly from the real keys, so that it reaches deep validation;
    every secret key holds a marked secret (or a list of them, or a `${VAR}` whose value is one)."""
    if depth > 4 or draw(st.integers(0, 3)) == 0:
        return draw(scalars)
    if draw(st.booleans()):
        return [draw(structures(depth + 1)) for _ in range(draw(st.integers(0, 3)))]
    out: dict[Any, Any] = {}
    for _ in range(draw(st.integers(0, 6))):
        key = draw(st.sampled_from(KEYS) | st.text(max_size=6) | st.integers(0, 3))
        if key in SECRET_KEYS:
            choice = draw(st.integers(0, 3))
            if choice == 0:
                out[key] = [secret_value(draw) for _ in range(draw(st.integers(1, 2)))]
            elif choice == 1:
                out[key] = "${SECRET_VAR}"
            else:
                out[key] = secret_value(draw)
        else:
            out[key] = draw(structures(depth + 1))
    return out


@st.composite
def sources_files(draw: Any) -> Any:
    sources = []
    for _ in range(draw(st.integers(0, 3))):
        source = draw(structures(1))
        if isinstance(source, dict) and draw(st.booleans()):
            source.setdefault("name", draw(st.sampled_from(["shop", "crm", "Shop"])))
            source.setdefault("base_url", "http://127.0.0.1:8765")
        sources.append(source)
    return {"sources": sources} if draw(st.integers(0, 5)) else draw(structures())


@FUZZ
@given(sources_files())
def test_random_structures_never_leak_a_secret(data: Any) -> None:
    text = yaml.safe_dump(data, allow_unicode=True, sort_keys=False)
    result = load_text(text)
    if isinstance(result, SourcesError):
        assert "fuzzsecret_" not in str(result)
    else:
        assert all(isinstance(s, SourceConfig) for s in result)
        assert "fuzzsecret_" not in repr(result)


def template(secret: str) -> list[dict[str, Any]]:
    """Valid sources that use every auth type and every secret field, holding `secret`."""
    auths: list[dict[str, Any]] = [
        {"type": "api_key", "name": "X-Key", "value": secret},
        {"type": "bearer", "token": secret},
        {"type": "basic", "username": "u", "password": secret},
        {
            "type": "oauth2_client_credentials",
            "token_url": "http://127.0.0.1:1/t",
            "client_id": "c",
            "client_secret": secret,
        },
        {"type": "api_key_rotation", "values": [secret, secret + "2"]},
        {
            "type": "oauth2_refresh_token",
            "token_url": "http://127.0.0.1:1/t",
            "client_id": "c",
            "client_secret": secret,
            "refresh_token": secret,
        },
        {"type": "jwt_bearer", "secret": secret, "algorithm": "HS256"},
        {
            "type": "jwt_bearer",
            "private_key": secret,
            "algorithm": "RS256",
            "token_url": "http://127.0.0.1:1/t",
        },
    ]
    endpoints: list[dict[str, Any]] = [
        {
            "name": "orders",
            "path": "/orders",
            "paginator": {"type": "cursor", "cursor_path": "next"},
            "incremental": {"cursor_field": "u", "param": "since"},
        },
        {
            "name": "lines",
            "path": "/orders/{id}/lines",
            "parent": {"endpoint": "orders", "fields": {"id": "id"}},
            "primary_key": ["id", "n"],
        },
        {
            "name": "events",
            "path": "/events",
            "paginator": {"type": "offset", "total_path": "total"},
            "window": {"start_param": "a", "end_param": "b"},
        },
    ]
    return [
        {
            "name": f"s{i}",
            "base_url": "http://127.0.0.1:8765",
            "auth": auth,
            "schedule": "0 3 * * *",
            "partitions": {"type": "daily", "start": "2026-01-01"},
            "endpoints": copy.deepcopy(endpoints),
            "webhooks": {
                "scheme": "hmac",
                "secret": secret + "_webhook",  # a webhook secret is 16 bytes at least
                "signature_header": "X-Sig",
                "event_id_path": "id",
            },
        }
        for i, auth in enumerate(auths)
    ]


def is_secret_spot(path: tuple[Any, ...]) -> bool:
    return any(part in SECRET_KEYS for part in path if isinstance(part, str))


@st.composite
def mutated_sources(draw: Any) -> tuple[dict[str, Any], str]:
    secret = secret_value(draw)
    sources = template(secret)
    picked = draw(st.lists(st.integers(0, len(sources) - 1), min_size=1, max_size=3, unique=True))
    data: dict[str, Any] = {"sources": [sources[i] for i in picked]}
    for _ in range(draw(st.integers(1, 6))):
        # walk to a random mapping or list, then break something there
        node: Any = data["sources"]
        path: tuple[Any, ...] = ("sources",)
        while True:
            keys = list(node) if isinstance(node, dict) else list(range(len(node)))
            if not keys:
                break
            key = draw(st.sampled_from(keys))
            child = node[key]
            if not isinstance(child, dict | list) or draw(st.integers(0, 3)) == 0:
                break
            node, path = child, (*path, key)
        action = draw(st.sampled_from(["replace", "delete", "add", "retype"]))
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        if action == "add" and isinstance(node, dict):
            node[draw(st.sampled_from(KEYS))] = draw(scalars)
        elif action == "retype" and isinstance(node, dict) and "type" in node:
            node["type"] = draw(st.sampled_from(TYPES))
        elif keys:
            key = draw(st.sampled_from(keys))
            if action == "delete":
                del node[key]
            elif not is_secret_spot((*path, key)):
                node[key] = draw(scalars | structures(3))
    return data, secret


@FUZZ
@given(mutated_sources())
def test_mutated_valid_sources_never_leak_a_secret(case: tuple[dict[str, Any], str]) -> None:
    data, secret = case
    result = load_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False))
    if isinstance(result, SourcesError):
        assert secret not in str(result)
        assert "fuzzsecret_" not in str(result)
    else:
        assert secret not in repr(result)


def test_the_template_is_valid() -> None:
    sources = load_text(yaml.safe_dump({"sources": template("fuzzsecret_x")}))
    assert isinstance(sources, list) and len(sources) == 8
