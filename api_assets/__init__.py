"""api_assets: REST APIs as reliable, incremental, checked Dagster assets.

The public Python surface; the Dagster definitions live in `api_assets.definitions`.
"""

from api_assets.config.loader import load_sources
from api_assets.config.models import SourceConfig
from api_assets.errors import (
    ApiAssetsError,
    AuthError,
    ConnectionSetupError,
    FetchError,
    IncompleteError,
    PaginationError,
    SourcesError,
    WebhookError,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from api_assets.storage.tables import read_table


def __getattr__(name: str) -> object:
    # `read_table` imports Polars: load it on first use so `api-assets validate` stays quick.
    if name == "read_table":
        from api_assets.storage.tables import read_table

        return read_table
    raise AttributeError(name)


__all__ = [
    "ApiAssetsError",
    "AuthError",
    "ConnectionSetupError",
    "FetchError",
    "IncompleteError",
    "PaginationError",
    "SourceConfig",
    "SourcesError",
    "WebhookError",
    "load_sources",
    "read_table",
]
