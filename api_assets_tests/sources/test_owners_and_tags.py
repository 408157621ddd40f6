"""`owners` and `tags` on a source and an endpoint: what Dagster accepts, checked when the
sources file is read, each mistake a line naming its key."""

from collections.abc import Callable
from pathlib import Path

import dagster as dg
import pytest

from api_assets.config.loader import load_sources
from api_assets.errors import SourcesError

TEMPLATE = """\
sources:
  - name: shop
    base_url: http://127.0.0.1:1
    owners: {source_owners}
    tags: {source_tags}
    endpoints:
      - name: orders
        path: /orders
        owners: {endpoint_owners}
        tags: {endpoint_tags}
"""


def sources(
    source_owners: str = "[]",
    source_tags: str = "{}",
    endpoint_owners: str = "[]",
    endpoint_tags: str = "{}",
) -> str:
    return TEMPLATE.format(
        source_owners=source_owners,
        source_tags=source_tags,
        endpoint_owners=endpoint_owners,
        endpoint_tags=endpoint_tags,
    )


def test_owners_and_tags_are_read(write: Callable[..., Path]) -> None:
    [shop] = load_sources(
        write(
            sources(
                "[team:data, ana@example.com]",
                "{domain: sales, tier: gold}",
                "[team:orders]",
                "{team/area: fulfilment, empty: ''}",
            )
        )
    )
    assert shop.owners == ["team:data", "ana@example.com"]
    assert shop.tags == {"domain": "sales", "tier": "gold"}
    orders = shop.endpoint("orders")
    assert orders.owners == ["team:orders"]
    assert orders.tags == {"team/area": "fulfilment", "empty": ""}
    # and Dagster takes them as they are
    dg.AssetSpec("x", owners=[*shop.owners, *orders.owners], tags={**shop.tags, **orders.tags})


def test_defaults_are_empty(write: Callable[..., Path]) -> None:
    text = "sources:\n  - name: shop\n    base_url: http://h\n    endpoints:\n"
    text += "      - {name: orders, path: /orders}\n"
    [shop] = load_sources(write(text))
    assert (shop.owners, shop.tags) == ([], {})
    assert (shop.endpoint("orders").owners, shop.endpoint("orders").tags) == ([], {})


@pytest.mark.parametrize(
    ("fields", "line", "key_path", "message"),
    [
        ({"source_owners": "[alice]"}, 4, "sources.shop.owners[0]", "`team:<name>`"),
        ({"endpoint_owners": "['team:']"}, 9, "sources.shop.endpoints.orders.owners[0]", "email"),
        ({"source_tags": "{'bad key': x}"}, 5, "sources.shop.tags", "tag key"),
        ({"source_tags": "{dagster/kind/x: ''}"}, 5, "sources.shop.tags", "dagster/"),
        (
            {"endpoint_tags": "{tier: 'gold plated'}"},
            10,
            "sources.shop.endpoints.orders.tags",
            "tag tier: expected a value",
        ),
        ({"endpoint_tags": "{tier: " + "x" * 64 + "}"}, 10, None, "at most 63"),
    ],
)
def test_a_mistake_is_a_line_naming_its_key(
    write: Callable[..., Path],
    fields: dict[str, str],
    line: int,
    key_path: str | None,
    message: str,
) -> None:
    with pytest.raises(SourcesError) as caught:
        load_sources(write(sources(**fields)))
    [problem] = caught.value.problems
    assert problem.line == line, str(problem)
    if key_path is not None:
        assert problem.key_path == key_path, str(problem)
    assert message in problem.message, str(problem)
    assert "gold plated" not in str(problem) and "alice" not in str(problem)  # values not shown
