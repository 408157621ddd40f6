"""Resources: typed facades over the engine, so that assets stay short.

`ApiSource` is one per source (resource key `api_<source>`): it loads that source from the sources
file at run time — secrets are read from the environment then, so the UI only ever shows the
sources path and the source name — and hands out the engine's client with its rate limiter and
token cache, shared by every endpoint of the source within a step. `DataStore` is the data root.
"""

import os
from pathlib import Path

import dagster as dg
from pydantic import PrivateAttr

from api_assets.config.loader import load_sources
from api_assets.config.models import SourceConfig
from api_assets.http.client import SourceClient
from api_assets.storage.layout import DataLayout, data_root


class DataStore(dg.ConfigurableResource):
    """The data root (`API_ASSETS_DATA_DIR` when `data_dir` is unset)."""

    data_dir: str | None = None

    def layout(self) -> DataLayout:
        return DataLayout(Path(self.data_dir).resolve() if self.data_dir else data_root())


class ApiSource(dg.ConfigurableResource):
    """One source of the sources file: its config and its rate-limited, authenticated client."""

    source_name: str
    sources_path: str | None = None
    data_dir: str | None = None

    _config: SourceConfig | None = PrivateAttr(default=None)
    _client: SourceClient | None = PrivateAttr(default=None)
    _pid: int | None = PrivateAttr(default=None)

    def config(self) -> SourceConfig:
        """The source as the sources file says now (read once per resource instance, i.e. per
        step: the asset and its client see the same config)."""
        if self._config is None:
            for source in load_sources(self.sources_path):
                if source.name == self.source_name:
                    self._config = source
                    break
            else:
                raise dg.Failure(f"source `{self.source_name}` is no longer in the sources file")
        return self._config

    def client(self) -> SourceClient:
        """The process's client; recreated after a fork."""
        if self._client is None or self._pid != os.getpid():
            layout = DataLayout(Path(self.data_dir).resolve() if self.data_dir else data_root())
            credential_dir = Path(os.environ.get("DAGSTER_HOME") or ".dagster") / "credentials"
            self._client = SourceClient(
                self.config(),
                shared_dir=layout.state_dir() / "ratelimit",
                credential_dir=credential_dir,
            )
            self._pid = os.getpid()
        return self._client

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
