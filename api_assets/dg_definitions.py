"""The root of `dg` (`code_location_target_module` in pyproject.toml): the defs folder
api_assets/dg_defs/, whose `sources/defs.yaml` makes the project's sources an
`ApiSourcesComponent`. The definitions are those of `api_assets.definitions`."""

from pathlib import Path

import dagster as dg

from api_assets.storage.layout import ensure_dagster_home


@dg.definitions
def defs() -> dg.Definitions:
    ensure_dagster_home()
    return dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
