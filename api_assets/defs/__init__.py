"""The Dagster layer: sources become resources, assets, checks, partitions, schedules and sensors.

Nothing here fetches, parses or decides completeness: it calls the engine and reports what it
returns. `api_assets.definitions` composes it.
"""
