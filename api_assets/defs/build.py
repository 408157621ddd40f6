"""A sources file as one `dg.Definitions`: assets, checks, jobs, schedules, sensors, resources and
the executor of every source in it.

Both roots return what `definitions_for` builds: `api_assets.definitions` (what
`dagster dev -w workspace.yaml` and `-m api_assets.definitions` load) and the
`ApiSourcesComponent` of `dg` (defs/component.py). Importing this module reads nothing: the
sources file is read when a root asks.
"""

import dagster as dg

from api_assets.config.loader import load_sources
from api_assets.config.models import SourceConfig
from api_assets.defs.assets import build_endpoint_asset, resource_key
from api_assets.defs.automation import (
    automation_sensor,
    incremental_sensor,
    source_job,
    source_schedule,
)
from api_assets.defs.daily_revenue import demo_downstream
from api_assets.defs.executor import api_assets_executor
from api_assets.defs.inputs import TABLES_IO_MANAGER, TableIOManager
from api_assets.defs.partitions import partitions_def_for
from api_assets.defs.resources import ApiSource, DataStore
from api_assets.errors import SourcesError

# One-step runs (one endpoint) run in the run's process; several steps run in parallel processes
# forked from a server that preloaded the engine (see defs/executor.py).
EXECUTOR = api_assets_executor


class SourcesFileError(Exception):
    """Raised at load so that `dagster dev` and `dg` show the problems, one per line."""


def build_definitions(
    sources: list[SourceConfig], sources_file: str | None = None
) -> dg.Definitions:
    assets: list[dg.AssetsDefinition] = []
    jobs = []
    schedules = []
    sensors: list[dg.SensorDefinition] = []
    resources: dict[str, object] = {
        "data_store": DataStore(),
        TABLES_IO_MANAGER: TableIOManager(),
    }
    merged: list[dg.Definitions] = []
    for source in sources:
        resources[resource_key(source.name)] = ApiSource(
            source_name=source.name, sources_path=sources_file
        )
        for endpoint in source.endpoints:
            assets.append(build_endpoint_asset(source, endpoint))
        if source.webhooks is not None:
            from api_assets.defs.webhooks import build_webhook_defs

            merged.append(build_webhook_defs(source, partitions_def_for(source)))
        jobs.append(source_job(source))
        schedule = source_schedule(source)
        if schedule is not None:
            schedules.append(schedule)
        sensor = incremental_sensor(source)
        if sensor is not None:
            sensors.append(sensor)
    if sources:
        sensors.append(automation_sensor(sources))
    assets.extend(demo_downstream(sources, sources_file))  # the demo's "Build on it" example
    root = dg.Definitions(
        assets=assets,
        jobs=jobs,
        schedules=schedules,
        sensors=sensors,
        resources=resources,
        executor=EXECUTOR,
    )
    return dg.Definitions.merge(root, *merged) if merged else root


def definitions_for(path: str) -> dg.Definitions:
    """The definitions of the sources file (or folder) `path`; `SourcesFileError` listing every
    mistake as `file:line: key.path: message` when it has any."""
    try:
        sources = load_sources(path)
    except SourcesError as err:
        raise SourcesFileError(
            f"the sources file has {len(err.problems)} problem(s):\n{err}"
        ) from None
    return build_definitions(sources, path)
