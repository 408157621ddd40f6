"""The root: every source of `API_ASSETS_SOURCES` as Dagster definitions.

`defs` is what `dagster dev -w workspace.yaml` and `dagster asset materialize -m
api_assets.definitions` load. A sources file with mistakes fails the load with every mistake
listed as `file:line: key.path: message`. `dg` loads the same definitions through
`api_assets.dg_definitions` (defs/component.py); both are built by defs/build.py.
"""

import dagster as dg

from api_assets.defs.build import EXECUTOR, SourcesFileError, build_definitions, definitions_for
from api_assets.storage.layout import ensure_dagster_home, sources_path

__all__ = ["EXECUTOR", "SourcesFileError", "build_definitions", "defs"]


def _load() -> dg.Definitions:
    ensure_dagster_home()
    return definitions_for(str(sources_path()))


defs = _load()
