"""A partition re-derived from its raw archive alone (no request is sent): the table or the
schema snapshot, with the records found by the live run's own rule (`records.records_in`)."""

from datetime import UTC, datetime

import orjson

from api_assets.config.models import EndpointConfig, SourceConfig
from api_assets.errors import ApiAssetsError
from api_assets.pipeline.normalize import NormalizedTable, archived_records, normalize_archive
from api_assets.pipeline.schema import SchemaBuilder, SchemaSnapshot
from api_assets.storage.archive import ArchiveReader
from api_assets.storage.layout import DataLayout
from api_assets.storage.tables import read_table_metadata, write_table


def rebuild_table(
    source: SourceConfig, endpoint: EndpointConfig, partition: str, *, layout: DataLayout
) -> NormalizedTable:
    """Re-normalize a partition from its archive alone (no request is sent) and rewrite its table,
    keeping the watermark metadata it was committed with."""
    reader = ArchiveReader(layout, source.name, endpoint.name, partition)
    if not reader.exists():
        raise ApiAssetsError(
            f"source `{source.name}`, endpoint `{endpoint.name}`: no archive for partition "
            f"{partition}; materialize `{source.name}/raw/{endpoint.name}` first"
        )
    table = normalize_archive(
        reader, endpoint.records_path, endpoint.primary_key_fields, partition, datetime.now(UTC)
    )
    path = layout.table_path(source.name, endpoint.name, partition)
    meta = read_table_metadata(path) if path.exists() else {}
    meta = meta or {
        "source": source.name,
        "endpoint": endpoint.name,
        "partition": partition,
        "primary_key": endpoint.primary_key_fields,
    }
    write_table(table.df, path, {"api_assets": orjson.dumps(meta).decode()})
    return table


def rebuild_schema(
    source: SourceConfig, endpoint: EndpointConfig, partition: str, *, layout: DataLayout
) -> SchemaSnapshot:
    """Re-derive a partition's schema snapshot from its archive alone and save it."""
    reader = ArchiveReader(layout, source.name, endpoint.name, partition)
    if not reader.exists():
        raise ApiAssetsError(
            f"source `{source.name}`, endpoint `{endpoint.name}`: no archive for partition "
            f"{partition}; materialize `{source.name}/raw/{endpoint.name}` first"
        )
    builder = SchemaBuilder()
    for _entry, records in archived_records(reader, endpoint.records_path):
        builder.add(records)
    snapshot = builder.finish(source.name, endpoint.name, partition)
    snapshot.save(layout)
    return snapshot
