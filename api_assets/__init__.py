"""api_assets: REST APIs as reliable, incremental, checked Dagster assets.

The public Python surface; the Dagster definitions live in `api_assets.definitions`.
"""

from api_assets.errors import (
    ApiAssetsError,
    AuthError,
    FetchError,
    IncompleteError,
    PaginationError,
    SourcesError,
    WebhookError,
)
from api_assets.sources import SourceConfig, load_sources
from api_assets.tables import read_table

__all__ = [
    "ApiAssetsError",
    "AuthError",
    "FetchError",
    "IncompleteError",
    "PaginationError",
    "SourceConfig",
    "SourcesError",
    "WebhookError",
    "load_sources",
    "read_table",
]
