"""The executor of every job: a run with one step runs it in the run's own process; a run with
several steps gives each its own process (endpoints in parallel).

Why: each endpoint is one step (its multi-asset makes the raw archive, the table, the schema and
the checks together), so `dagster asset materialize` of one endpoint, a schedule tick of a
one-endpoint source or a sensor's run has exactly one step. Starting a step process for it (a
forkserver that imports Dagster, Polars and this package, then a fork) cost ~2 s and a second
process's memory, for no parallelism at all. Runs of several endpoints keep the multiprocess
executor, forked from a forkserver that preloaded the engine.

Built from Dagster's public API only: the config schemas and creation functions of
`dg.multiprocess_executor` and `dg.in_process_executor`, and `dg.Executor` to choose between
the two executors they make, per plan.

Run config, as Dagster's default executor takes it:

    execution:
      config:
        multiprocess:            # the default
          max_concurrent: 4
          isolate_single_step: true   # a one-step run in a step process too
        in_process: {}           # every step in the run's process
"""

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, cast

import dagster as dg

# Steps fork from a server that has already imported Dagster, Polars and this package.
PRELOAD = ["api_assets.defs.assets"]


def _config_field(executor_def: dg.ExecutorDefinition) -> dg.Field:
    return executor_def.config_schema.as_field()


def _create(
    executor_def: dg.ExecutorDefinition, context: dg.InitExecutorContext, config: Mapping[str, Any]
) -> dg.Executor:
    """The executor `executor_def` makes from `config` (already validated against its schema)."""
    create = executor_def.executor_creation_fn
    assert create is not None, f"{executor_def.name} has no creation function"
    return create(
        dg.InitExecutorContext(
            job=context.job,
            executor_def=executor_def,
            executor_config=config,
            instance=context.instance,
        )
    )


_MULTI = dg.Shape(
    {
        **cast(dg.Shape, _config_field(dg.multiprocess_executor).config_type).fields,
        "isolate_single_step": dg.Field(
            bool,
            default_value=False,
            description="Run a one-step run in a step process too (default: in the run's process).",
        ),
    }
)


class SingleStepInProcess(dg.Executor):
    """The multiprocess executor, except that a plan of one step runs in process."""

    def __init__(self, multi: dg.Executor, single: dg.Executor):
        self._multi = multi
        self._single = single

    @property
    def retries(self) -> Any:
        return self._multi.retries

    @property
    def step_dependency_config(self) -> Any:
        return self._multi.step_dependency_config

    def execute(self, plan_context: Any, execution_plan: Any) -> Iterator[dg.DagsterEvent]:
        one_step = len(execution_plan.step_keys_to_execute) <= 1
        return (self._single if one_step else self._multi).execute(plan_context, execution_plan)


def _requirements(config: Mapping[str, object]) -> Sequence[Any]:
    return dg.multiple_process_executor_requirements() if "multiprocess" in config else []


@dg.executor(
    name="api_assets_executor",
    config_schema=dg.Field(
        dg.Selector({"multiprocess": _MULTI, "in_process": _config_field(dg.in_process_executor)}),
        default_value={"multiprocess": {}},
    ),
    requirements=_requirements,
)
def api_assets_executor(init_context: dg.InitExecutorContext) -> dg.Executor:
    config = cast(dict[str, dict[str, Any]], init_context.executor_config)
    if "in_process" in config:
        return _create(dg.in_process_executor, init_context, config["in_process"])
    multi = dict(config["multiprocess"])
    isolate = multi.pop("isolate_single_step", False)
    if not multi.get("start_method"):
        multi["start_method"] = {"forkserver": {"preload_modules": PRELOAD}}
    executor = _create(dg.multiprocess_executor, init_context, multi)
    if isolate:
        return executor
    # the same retries and step dependencies as the multiprocess executor's
    single_config: dict[str, Any] = {
        key: multi[key] for key in ("retries", "step_dependency_config") if key in multi
    }
    single = _create(dg.in_process_executor, init_context, single_config)
    return SingleStepInProcess(executor, single)
