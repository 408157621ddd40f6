"""Tables as inputs: a downstream asset that takes `S/E` as a `pl.LazyFrame` (or
`pl.DataFrame`) parameter gets the committed Parquet table through `TableIOManager`.

- a partitioned downstream (the same partitions, or a mapping onto them) gets the files of the
  upstream partitions it maps to, concatenated;
- an unpartitioned downstream gets the current rows per primary key of every partition
  (`read_table(..., current=True)`): it is told apart as a run without a partition whose input
  maps onto every upstream partition (so a range run over every partition reads the same);
- an upstream with `partitions: none` is its single file, `current`.

The engine's own assets never hand it a value (they yield `dg.MaterializeResult`s and write
their tables themselves): `handle_output` accepts only that nothing.
"""

from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl

from api_assets.defs.partitions import CURRENT
from api_assets.storage.layout import DataLayout, data_root
from api_assets.storage.tables import read_table

TABLES_IO_MANAGER = "api_tables"  # the resource key `S/E` assets name as their io manager


class TableIOManager(dg.ConfigurableIOManager):
    """Loads `S/E` for downstream assets; the data root is `API_ASSETS_DATA_DIR` when
    `data_dir` is unset."""

    data_dir: str | None = None

    def _root(self) -> Path:
        return Path(self.data_dir).resolve() if self.data_dir else data_root()

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        if obj is not None:
            raise dg.Failure(
                f"{context.asset_key.to_user_string()}: api_assets tables are written by their "
                "own step; an asset that returns a value needs another io manager"
            )

    def load_input(self, context: dg.InputContext) -> pl.LazyFrame | pl.DataFrame:
        key = context.asset_key
        if len(key.path) != 2:
            raise dg.Failure(
                f"{self.__class__.__name__} loads `source/endpoint` tables; "
                f"got {key.to_user_string()}"
            )
        source, endpoint = key.path
        root = self._root()
        partitions: list[str] | None
        if not context.has_asset_partitions:
            partitions = [CURRENT]  # the upstream has `partitions: none`
        else:
            partitions = list(context.asset_partition_keys)
            every = context.asset_partitions_def.get_partition_keys()
            if not context.has_partition_key and set(partitions) >= set(every):
                # an unpartitioned downstream (Dagster maps it onto every partition): the
                # current rows of the partitions that have a table
                partitions = None
        if partitions is None:
            lf = read_table(source, endpoint, current=True, data_dir=root)
        else:
            lf = _partition_files(DataLayout(root), source, endpoint, partitions)
        wanted = context.dagster_type.typing_type
        return lf.collect() if wanted is pl.DataFrame else lf


def _partition_files(
    layout: DataLayout, source: str, endpoint: str, partitions: list[str]
) -> pl.LazyFrame:
    paths = [layout.table_path(source, endpoint, p) for p in partitions]
    missing = [p for p, path in zip(partitions, paths, strict=True) if not path.exists()]
    if missing:
        raise dg.Failure(
            f"`{source}/{endpoint}` has no committed table for partition(s) "
            f"{', '.join(missing)} under {layout.table_dir(source, endpoint)}: materialize "
            "it first"
        )
    frames = [pl.scan_parquet(path) for path in paths]
    return frames[0] if len(frames) == 1 else pl.concat(frames, how="diagonal_relaxed")
