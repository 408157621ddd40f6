"""The Dagster layer: sources become resources, assets, checks, partitions, schedules and sensors.

Nothing here fetches, parses or decides completeness: it calls the engine and reports what it
returns. `build.py` composes it into one `Definitions` per sources file, for the two roots:
`api_assets.definitions` and, for `dg`, the `ApiSourcesComponent` (`component.py`).
"""
