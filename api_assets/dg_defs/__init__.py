"""The defs folder of `dg` (`defs_module` in pyproject.toml): one component per folder.

- `sources/defs.yaml`: the project's sources (`API_ASSETS_SOURCES` when set, else `sources/`)
  as an `ApiSourcesComponent` (api_assets/defs/component.py).
"""
