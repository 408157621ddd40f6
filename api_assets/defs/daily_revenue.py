"""Building on the tables: `shop/daily_revenue`, the README's "Build on it" example, loaded with
the bundled demo sources (`sources/demo.yaml`) only.

It takes `shop/orders` and `shop/order_lines` as `pl.LazyFrame`s for its own daily partition
(`TableIOManager` reads their committed Parquet files), writes one row per order status to
`tables/shop/daily_revenue/P.parquet`, and checks that the lines add up to the orders' totals.
"""

from pathlib import Path

import dagster as dg
import polars as pl

from api_assets.config.models import SourceConfig
from api_assets.defs.partitions import partitions_def_for
from api_assets.storage.layout import DataLayout
from api_assets.storage.tables import write_table

DEMO_SOURCES = Path(__file__).resolve().parents[2] / "sources" / "demo.yaml"
SOURCE = "shop"
KEY = dg.AssetKey([SOURCE, "daily_revenue"])
GROUP = "shop_analytics"
LINES_MATCH_TOTALS = "lines_match_order_totals"
CENT = 0.005  # a line sum within half a cent of the order's total matches it


def build_daily_revenue(partitions_def: dg.PartitionsDefinition | None) -> dg.AssetsDefinition:
    """`shop/daily_revenue` with `shop`'s partitions: the same partition of each input."""

    @dg.asset(
        key=KEY,
        ins={
            "orders": dg.AssetIn(key=[SOURCE, "orders"]),
            "order_lines": dg.AssetIn(key=[SOURCE, "order_lines"]),
        },
        partitions_def=partitions_def,
        group_name=GROUP,
        kinds={"polars", "parquet"},
        description="Revenue per order status of the partition's orders, from their lines.",
        check_specs=[
            dg.AssetCheckSpec(
                LINES_MATCH_TOTALS,
                asset=KEY,
                description="each order's lines add up to its total",
            )
        ],
    )
    def daily_revenue(
        context: dg.AssetExecutionContext, orders: pl.LazyFrame, order_lines: pl.LazyFrame
    ) -> dg.MaterializeResult:
        per_order = (
            order_lines.group_by("order_id")
            .agg(
                units=pl.col("qty").sum(),
                revenue=(pl.col("qty") * pl.col("unit_price")).sum(),
            )
            .join(
                orders.select("id", "status", "total__amount"),
                left_on="order_id",
                right_on="id",
                how="inner",
            )
            .collect()
        )
        revenue = (
            per_order.group_by("status")
            .agg(
                orders=pl.len(),
                units=pl.col("units").sum(),
                revenue=pl.col("revenue").sum().round(2),
            )
            .sort("status")
        )
        partition = context.partition_key if context.has_partition_key else "current"
        path = DataLayout.from_env().table_path(SOURCE, "daily_revenue", partition)
        write_table(revenue, path, {})
        mismatched = per_order.filter(
            (pl.col("revenue") - pl.col("total__amount")).abs() > CENT
        ).height
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": revenue.height,
                "dagster/uri": path.resolve().as_uri(),
                "orders": per_order.height,
                "revenue": dg.MetadataValue.float(float(revenue["revenue"].sum())),
            },
            check_results=[
                dg.AssetCheckResult(
                    check_name=LINES_MATCH_TOTALS,
                    passed=mismatched == 0,
                    metadata={"orders": per_order.height, "mismatched": mismatched},
                    description=f"{mismatched} of {per_order.height} orders' lines miss the total",
                )
            ],
        )

    return daily_revenue


def demo_downstream(
    sources: list[SourceConfig], sources_file: str | None
) -> list[dg.AssetsDefinition]:
    """The example when the sources are the bundled demo's (the file, or the folder holding
    it) and still have `shop`'s orders and lines; nothing otherwise."""
    if sources_file is None:
        return []
    path = Path(sources_file).resolve()
    if path != DEMO_SOURCES and path != DEMO_SOURCES.parent:
        return []
    shop = next((s for s in sources if s.name == SOURCE), None)
    if shop is None or not {"orders", "order_lines"} <= {e.name for e in shop.endpoints}:
        return []
    return [build_daily_revenue(partitions_def_for(shop))]
