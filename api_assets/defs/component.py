"""`ApiSourcesComponent`: a sources file (or folder) as a Dagster Component, for `dg`.

In a `defs.yaml` of the defs folder (api_assets/dg_defs/ in this project):

    type: api_assets.defs.component.ApiSourcesComponent
    attributes:
      path: ${API_ASSETS_SOURCES:-../../../sources}

`build_defs` returns exactly what `api_assets.definitions` builds from the same path
(defs/build.py): the assets, checks, jobs, schedules, sensors, resources and executor of every
source; a sources file with mistakes fails the load with every mistake as
`file:line: key.path: message`.
"""

import os
import re
from pathlib import Path

import dagster as dg
from pydantic import Field

from api_assets.config.env import expand_env
from api_assets.defs.build import SourcesFileError, definitions_for

# `${VAR}` or `${VAR:-default}` at the start of `path`
_LEADING_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-[^}]*)?\}")


class ApiSourcesComponent(dg.Component, dg.Model, dg.Resolvable):
    """Every source of a sources file (or a folder of them) as partitioned Dagster assets."""

    path: str = Field(
        description=(
            "A sources YAML file or a folder of them: absolute, or relative to this defs.yaml's "
            "folder. `${VAR}` and `${VAR:-default}` read the environment; a path that starts "
            "with a variable's value is taken as the environment means it (relative to the "
            "current folder), e.g. `${API_ASSETS_SOURCES:-../../../sources}`."
        )
    )

    def sources_path(self, folder: Path) -> Path:
        """`path` expanded, relative to `folder` (the defs.yaml's) unless it starts with the
        value of an environment variable (then relative to the current folder)."""
        expanded, problems = expand_env(self.path, os.environ)
        if problems:
            raise SourcesFileError(f"{folder / 'defs.yaml'}: attributes.path: {problems[0]}")
        leading = _LEADING_REFERENCE.match(self.path)
        from_environment = leading is not None and bool(os.environ.get(leading.group(1)))
        base = Path.cwd() if from_environment else folder
        return base / expanded

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        return definitions_for(str(self.sources_path(context.path)))
