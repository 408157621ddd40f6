"""Building on the tables (issue 19.3) and the metadata users look at (issue 19.4).

- a downstream asset takes `S/E` as a `pl.LazyFrame` or `pl.DataFrame` parameter: a partitioned
  one gets that partition's committed file, an unpartitioned one the current rows per key;
- the demo's `shop/daily_revenue` (the README's "Build on it" example) and its check;
- materializations carry `dagster/uri`, a table preview, elapsed and rate-limiter seconds;
  specs carry the sources file's owners and tags and a code version of the endpoint's config.
"""

from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pytest

from api_assets.defs.assets import code_version
from api_assets.defs.daily_revenue import KEY as REVENUE
from api_assets.defs.daily_revenue import LINES_MATCH_TOTALS, build_daily_revenue
from api_assets.defs.inputs import TABLES_IO_MANAGER
from api_assets.demo_api import DemoServer
from api_assets.storage.tables import read_table

from .conftest import (
    SOURCES,
    Project,
    asset_keys,
    build_defs,
    check_evaluations,
    make_project,
    materializations,
    utc_day,
)

ORDERS = dg.AssetKey(["shop", "orders"])
DEMO_SOURCES = Path(__file__).resolve().parents[2] / "sources" / "demo.yaml"


def run(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    keys: list[dg.AssetKey],
    partition: str | None,
) -> dg.ExecuteInProcessResult:
    job = dg.define_asset_job("inputs_job", selection=dg.AssetSelection.assets(*keys))
    resolved = job.resolve(asset_graph=defs.resolve_asset_graph())
    return resolved.execute_in_process(
        instance=instance, partition_key=partition, resources=defs.resources, raise_on_error=False
    )


def with_assets(project: Project, *assets: dg.AssetsDefinition) -> dg.Definitions:
    return dg.Definitions.merge(project.defs, dg.Definitions(assets=list(assets)))


def test_a_partitioned_downstream_gets_its_partition_and_checks_it(
    project: Project, instance: Any
) -> None:
    day = utc_day(0)
    shop = project.defs.resolve_assets_def(ORDERS).partitions_def
    defs = with_assets(project, build_daily_revenue(shop))
    keys = [*asset_keys("shop", "orders"), *asset_keys("shop", "order_lines"), REVENUE]
    result = run(defs, instance, keys, day)
    assert result.success

    orders = project.table("shop", "orders", day)
    lines = project.table("shop", "order_lines", day)
    assert orders.height > 0 and lines.height > 0
    expected = (
        lines.join(orders.select("id", "status"), left_on="order_id", right_on="id")
        .group_by("status")
        .agg(revenue=(pl.col("qty") * pl.col("unit_price")).sum().round(2))
        .sort("status")
    )
    table = project.table("shop", "daily_revenue", day)
    assert table.select("status", "revenue").to_dicts() == expected.to_dicts()
    assert table["orders"].sum() == orders.height

    mat = materializations(result)[("shop/daily_revenue", day)]
    assert mat.metadata["orders"].value == orders.height
    evaluation = check_evaluations(result)[("shop/daily_revenue", LINES_MATCH_TOTALS)]
    assert evaluation.passed and evaluation.metadata["mismatched"].value == 0


def test_the_check_fails_when_lines_miss_a_total(project: Project, instance: Any) -> None:
    day = utc_day(0)
    shop = project.defs.resolve_assets_def(ORDERS).partitions_def
    defs = with_assets(project, build_daily_revenue(shop))
    source_keys = [*asset_keys("shop", "orders"), *asset_keys("shop", "order_lines")]
    assert run(defs, instance, source_keys, day).success
    # one line dropped from the committed table: its order's lines no longer add up
    path = project.layout.table_path("shop", "order_lines", day)
    pl.read_parquet(path).slice(1).write_parquet(path)
    result = run(defs, instance, [REVENUE], day)
    evaluation = check_evaluations(result)[("shop/daily_revenue", LINES_MATCH_TOTALS)]
    assert not evaluation.passed
    assert evaluation.metadata["mismatched"].value == 1


def test_an_unpartitioned_downstream_gets_the_current_rows(project: Project, instance: Any) -> None:
    days = [utc_day(-1), utc_day(0)]
    for day in days:
        assert project.run(instance, [("shop", "orders")], partition=day).success
    seen: dict[str, Any] = {}

    @dg.asset(ins={"orders": dg.AssetIn(key=ORDERS)})
    def order_count(orders: pl.DataFrame) -> dg.MaterializeResult:
        seen["orders"] = orders
        return dg.MaterializeResult(metadata={"dagster/row_count": orders.height})

    result = run(with_assets(project, order_count), instance, [order_count.key], None)
    assert result.success
    current = read_table("shop", "orders", current=True, data_dir=project.data).collect()
    assert isinstance(seen["orders"], pl.DataFrame)
    assert seen["orders"].sort("id").equals(current.sort("id"))
    # one row per key: the current rows, not every partition's rows stacked
    assert seen["orders"]["id"].n_unique() == seen["orders"].height > 0


def test_a_parameter_named_after_the_endpoint_is_a_lazy_frame(
    project: Project, instance: Any
) -> None:
    day = utc_day(0)
    assert project.run(instance, [("shop", "products")], partition=day).success
    shop = project.defs.resolve_assets_def(ORDERS).partitions_def
    seen: dict[str, Any] = {}

    # a key has two parts (`shop/products`): the parameter names the endpoint, the prefix the
    # source (Dagster does not apply an asset's own key_prefix to the keys of its inputs)
    @dg.asset(
        key_prefix="shop", partitions_def=shop, ins={"products": dg.AssetIn(key_prefix="shop")}
    )
    def product_count(products: pl.LazyFrame) -> dg.MaterializeResult:
        seen["products"] = products
        return dg.MaterializeResult(metadata={"n": products.select(pl.len()).collect().item()})

    assert dg.AssetKey(["shop", "products"]) in product_count.dependency_keys
    result = run(with_assets(project, product_count), instance, [product_count.key], day)
    assert result.success
    assert isinstance(seen["products"], pl.LazyFrame)
    assert seen["products"].collect().equals(project.table("shop", "products", day))


def test_a_missing_partition_fails_naming_it(project: Project, instance: Any) -> None:
    shop = project.defs.resolve_assets_def(ORDERS).partitions_def
    defs = with_assets(project, build_daily_revenue(shop))
    day = utc_day(0)
    result = run(defs, instance, [REVENUE], day)
    assert not result.success
    messages = [e.step_failure_data.error.message for e in result.all_events if e.is_step_failure]
    assert any("`shop/order" in m and day in m and "materialize" in m for m in messages)


def test_the_demo_loads_the_example_and_other_sources_do_not(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert REVENUE not in project.defs.resolve_asset_graph().get_all_asset_keys()
    demo = build_defs(DEMO_SOURCES)
    assert REVENUE in demo.resolve_asset_graph().get_all_asset_keys()
    table = demo.resolve_assets_def(dg.AssetKey(["shop", "orders"]))
    spec = next(s for s in table.specs if s.key == ORDERS)
    assert spec.metadata["dagster/io_manager_key"] == TABLES_IO_MANAGER


def test_materializations_carry_uri_preview_and_seconds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: DemoServer, instance: Any
) -> None:
    # a slow limiter (20 requests a second, no burst) so that requests wait on it
    sources = SOURCES.replace(
        "rate_limit: {requests_per_second: 1000, burst: 200, max_concurrency: 8}",
        "rate_limit: {requests_per_second: 20, burst: 1, max_concurrency: 1}",
        1,
    )
    assert sources != SOURCES
    project = make_project(tmp_path, monkeypatch, server, sources)
    day = utc_day(0)
    result = project.run(instance, [("shop", "products")], partition=day)
    assert result.success
    mats = materializations(result)
    table = mats[("shop/products", day)].metadata
    path = project.layout.table_path("shop", "products", day)
    assert table["dagster/uri"].value == path.resolve().as_uri()
    preview = table["preview"]
    assert isinstance(preview, dg.TableMetadataValue)
    assert len(preview.records) == 5
    columns = [c.name for c in preview.schema.columns]
    assert "id" in columns and not any(c.startswith("_") for c in columns)
    first = project.table("shop", "products", day).row(0, named=True)
    assert preview.records[0].data["id"] == str(first["id"])
    for key in ("shop/raw/products", "shop/products", "shop/schema/products"):
        md = mats[(key, day)].metadata
        assert isinstance(md["elapsed_seconds"], dg.FloatMetadataValue)
        assert isinstance(md["rate_limit_wait_seconds"], dg.FloatMetadataValue)
        assert md["elapsed_seconds"].value > 0
    # 7 pages at 20 a second with no burst: the later ones waited their turn
    assert table["rate_limit_wait_seconds"].value >= 0.1
    assert table["rate_limit_wait_seconds"].value <= table["elapsed_seconds"].value + 1


def test_owners_tags_and_code_version_reach_the_specs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: DemoServer
) -> None:
    sources = SOURCES.replace(
        '    schedule: "0 3 * * *"\n',
        '    schedule: "0 3 * * *"\n'
        "    owners: [team:data, ana@example.com]\n"
        "    tags: {domain: sales, tier: gold}\n",
        1,
    ).replace(
        "      - name: products\n        path: /v1/products\n        records_path: data\n",
        "      - name: products\n        path: /v1/products\n        records_path: data\n"
        "        owners: [team:catalog]\n        tags: {tier: silver, pii: 'no'}\n",
        1,
    )
    assert sources.count("owners") == 2
    project = make_project(tmp_path, monkeypatch, server, sources)
    products = project.defs.resolve_assets_def(dg.AssetKey(["shop", "products"]))
    orders = project.defs.resolve_assets_def(ORDERS)
    for spec in products.specs:
        assert list(spec.owners) == ["team:data", "ana@example.com", "team:catalog"]
        assert {k: v for k, v in spec.tags.items() if not k.startswith("dagster/")} == {
            "domain": "sales",
            "tier": "silver",
            "pii": "no",
        }
    for spec in orders.specs:
        assert list(spec.owners) == ["team:data", "ana@example.com"]
        assert spec.tags["tier"] == "gold"
        assert spec.code_version is not None and len(spec.code_version) == 12
    [products_version] = {s.code_version for s in products.specs}
    [orders_version] = {s.code_version for s in orders.specs}
    assert products_version != orders_version
    # owners and tags change no data: the same code version as without them
    (tmp_path / "plain").mkdir()
    plain = make_project(tmp_path / "plain", monkeypatch, server)
    plain_products = plain.defs.resolve_assets_def(dg.AssetKey(["shop", "products"]))
    assert {s.code_version for s in plain_products.specs} == {products_version}


def test_a_changed_endpoint_config_changes_the_code_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: DemoServer
) -> None:
    project = make_project(tmp_path, monkeypatch, server)
    sources = project.defs.resolve_assets_def(ORDERS)
    before = {s.code_version for s in sources.specs}
    changed = SOURCES.replace("lookback_seconds: 3600", "lookback_seconds: 7200", 1)
    assert changed != SOURCES
    (tmp_path / "changed").mkdir()
    other = make_project(tmp_path / "changed", monkeypatch, server, changed)
    after = {s.code_version for s in other.defs.resolve_assets_def(ORDERS).specs}
    assert len(before) == len(after) == 1 and before != after
    from api_assets.config.loader import load_sources

    [shop, *_] = load_sources(str(other.sources_file))
    assert after == {code_version(shop.endpoint("orders"))}


def test_a_rotated_header_credential_keeps_the_code_version() -> None:
    from api_assets.config.models import EndpointConfig

    def version(**fields: Any) -> str:
        return code_version(EndpointConfig(name="orders", path="/orders", **fields))

    assert version(headers={"Authorization": "Bearer a"}) == version(
        headers={"Authorization": "Bearer b"}
    )
    assert version(headers={"Accept": "a"}) != version(headers={"Accept": "b"})
    # owners, tags and keys left at their defaults change no version
    assert version() == version(method="GET") == version(owners=["team:x"], tags={"a": "b"})
