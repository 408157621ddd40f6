"""The models on their own: the cross-field rules hold for models built in code too, and the
cron check agrees with Dagster's."""

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr, ValidationError

from api_assets.config.cron import cron_problem
from api_assets.config.loader import load_sources
from api_assets.config.models import (
    EndpointConfig,
    JwtBearerAuth,
    ParentConfig,
    PartitionsConfig,
    SinglePagePaginator,
    SourceConfig,
    WebhooksConfig,
    WindowConfig,
)
from api_assets.errors import SourcesError


def test_defaults_are_kept() -> None:
    endpoint = EndpointConfig(name="orders", path="/orders")
    assert endpoint.paginator == SinglePagePaginator()
    assert (endpoint.kind, endpoint.primary_key_fields, endpoint.placeholders) == (
        "snapshot",
        [],
        [],
    )
    source = SourceConfig(name="shop", base_url="http://h/", endpoints=[endpoint])
    assert source.base_url == "http://h"
    assert source.auth.type == "none"
    assert (source.partitions.type, source.rate_limit.requests_per_second) == ("daily", 10.0)
    assert source.endpoint("orders") is endpoint
    with pytest.raises(KeyError):
        source.endpoint("nope")


def test_endpoint_rules_apply_to_models() -> None:
    with pytest.raises(ValidationError, match="`incremental` or `window`, not both"):
        EndpointConfig.model_validate(
            {
                "name": "e",
                "path": "/e",
                "incremental": {"cursor_field": "u", "param": "p"},
                "window": {"start_param": "a", "end_param": "b"},
            }
        )
    with pytest.raises(ValidationError, match=re.escape("placeholder(s) {id} need a `parent:`")):
        EndpointConfig(name="e", path="/e/{id}")


def test_source_rules_apply_to_models() -> None:
    a = EndpointConfig(
        name="a", path="/a/{x}", parent=ParentConfig(endpoint="b", fields={"x": "id"})
    )
    b = EndpointConfig(
        name="b", path="/b/{x}", parent=ParentConfig(endpoint="a", fields={"x": "id"})
    )
    with pytest.raises(ValidationError, match="parent cycle a -> b -> a"):
        SourceConfig(name="s", base_url="http://h", endpoints=[a, b])
    window = EndpointConfig(
        name="w", path="/w", window=WindowConfig(start_param="a", end_param="b")
    )
    with pytest.raises(ValidationError, match="`window` needs time partitions"):
        SourceConfig(
            name="s",
            base_url="http://h",
            partitions=PartitionsConfig(type="none"),
            endpoints=[window],
        )
    with pytest.raises(ValidationError, match="defined twice"):
        SourceConfig(name="s", base_url="http://h", endpoints=[window, window])


def test_auth_and_webhook_rules_apply_to_models() -> None:
    with pytest.raises(ValidationError, match="algorithm RS256 signs with `private_key`"):
        JwtBearerAuth(type="jwt_bearer", secret=SecretStr("s"), algorithm="RS256")
    assert JwtBearerAuth(type="jwt_bearer", secret=SecretStr("s")).algorithm == "HS256"
    hook_secret = SecretStr("a-webhook-secret-of-32-characters")
    with pytest.raises(ValidationError, match="`prefix` belongs to webhook scheme hmac"):
        WebhooksConfig(scheme="github", secret=hook_secret, prefix="sha256=")
    assert WebhooksConfig(scheme="github", secret=hook_secret).prefix == ""


VALID_CRONS = [
    "0 3 * * *",
    "*/15 * * * *",
    "0 0 1 jan *",
    "0 9-17 * * mon-fri",
    "5,35 * * * 0",
    "0 0 * * 7",
    "@daily",
    "@hourly",
    "0 0 29 2 *",
    "0-59/5 * * * *",
    "0 0 * * fri-sun",
]
INVALID_CRONS = [
    "",
    "* * * *",
    "0 0 3 * * *",
    "61 * * * *",
    "* 24 * * *",
    "* * 0 * *",
    "* * * 13 *",
    "* * * * 8",
    "*/0 * * * *",
    "a b c d e",
    "0 0 30 2 *",
    "1,,2 * * * *",
    "@reboot",
    "1-x * * * *",
    "5-1 * * * *",
    "0 0 * * fri-mon",
    "\u0663 * * * *",
]


@pytest.mark.parametrize("expression", VALID_CRONS)
def test_valid_cron_is_valid_for_dagster_too(expression: str) -> None:
    from dagster._utils.schedules import is_valid_cron_string

    assert cron_problem(expression) is None
    assert is_valid_cron_string(expression)


@pytest.mark.parametrize("expression", INVALID_CRONS)
def test_invalid_cron_says_why(expression: str) -> None:
    problem = cron_problem(expression)
    assert problem and ("cron" in problem)


cron_field = st.sampled_from(
    [
        "*",
        "0",
        "5",
        "59",
        "60",
        "*/5",
        "1-5",
        "5-1",
        "mon",
        "jan",
        "7",
        "1,2",
        "*/0",
        "L",
        "?",
        "31",
        "2",
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(cron_field, min_size=5, max_size=5).map(" ".join))
def test_what_we_accept_dagster_accepts(expression: str) -> None:
    from dagster._utils.schedules import is_valid_cron_string

    if cron_problem(expression) is None:
        assert is_valid_cron_string(expression), expression


def test_odd_keys_are_quoted_and_never_hold_a_colon(write: Callable[..., Path]) -> None:
    text = "sources:\n  - name: shop\n    base_url: http://h\n    'we:ird key': 1\n    2: x\n"
    with pytest.raises(SourcesError) as caught:
        load_sources(write(text))
    assert [p.key_path for p in caught.value.problems] == [
        'sources.shop."we\\u003aird key"',
        "sources.shop.2",
    ]
    for problem in caught.value.problems:
        assert re.match(r"^[^:]+:\d+: [^:]+: .+$", str(problem)), str(problem)
