"""The executor of every job: a run with one step runs it in the run's own process; a run with
several steps gives each its own process (endpoints in parallel).

Why: each endpoint is one step (its multi-asset makes the raw archive, the table, the schema and
the checks together), so `dagster asset materialize` of one endpoint, a schedule tick of a
one-endpoint source or a sensor's run has exactly one step. Starting a step process for it (a
forkserver that imports Dagster, Polars and this package, then a fork) cost ~2 s and a second
process's memory, for no parallelism at all. Runs of several endpoints keep the multiprocess
executor, forked from a forkserver that preloaded the engine.

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
from dagster._config import Field, Selector, Shape
from dagster._core.definitions.executor_definition import (
    IN_PROC_CONFIG,
    MULTI_PROC_CONFIG,
    _core_in_process_executor_creation,
    _core_multiprocess_executor_creation,
    multiple_process_executor_requirements,
)
from dagster._core.events import DagsterEvent
from dagster._core.execution.context.system import PlanOrchestrationContext
from dagster._core.execution.plan.plan import ExecutionPlan
from dagster._core.execution.retries import RetryMode
from dagster._core.execution.step_dependency_config import StepDependencyConfig
from dagster._core.executor.base import Executor
from dagster._core.executor.in_process import InProcessExecutor

# Steps fork from a server that has already imported Dagster, Polars and this package.
PRELOAD = ["api_assets.defs.assets"]

_MULTI = Shape(
    {
        **MULTI_PROC_CONFIG.config_type.fields,  # type: ignore[attr-defined]
        "isolate_single_step": Field(
            bool,
            default_value=False,
            description="Run a one-step run in a step process too (default: in the run's process).",
        ),
    }
)


class SingleStepInProcess(Executor):
    """The multiprocess executor, except that a plan of one step runs in process."""

    def __init__(self, multi: Executor, single: InProcessExecutor):
        self._multi = multi
        self._single = single

    @property
    def retries(self) -> RetryMode:
        return self._multi.retries

    @property
    def step_dependency_config(self) -> StepDependencyConfig:
        return self._multi.step_dependency_config

    def execute(
        self, plan_context: PlanOrchestrationContext, execution_plan: ExecutionPlan
    ) -> Iterator[DagsterEvent]:
        one_step = len(execution_plan.step_keys_to_execute) <= 1
        return (self._single if one_step else self._multi).execute(plan_context, execution_plan)


def _requirements(config: Mapping[str, object]) -> Sequence[Any]:
    return multiple_process_executor_requirements() if "multiprocess" in config else []


@dg.executor(
    name="api_assets_executor",
    config_schema=Field(
        Selector({"multiprocess": _MULTI, "in_process": IN_PROC_CONFIG}),
        default_value={"multiprocess": {}},
    ),
    requirements=_requirements,
)
def api_assets_executor(init_context: dg.InitExecutorContext) -> Executor:
    config = cast(dict[str, dict[str, Any]], init_context.executor_config)
    if "in_process" in config:
        return _core_in_process_executor_creation(config["in_process"])
    multi = dict(config["multiprocess"])
    isolate = multi.pop("isolate_single_step", False)
    if not multi.get("start_method"):
        multi["start_method"] = {"forkserver": {"preload_modules": PRELOAD}}
    executor = _core_multiprocess_executor_creation(multi)
    if isolate:
        return executor
    single = InProcessExecutor(
        retries=executor.retries, step_dependency_config=executor.step_dependency_config
    )
    return SingleStepInProcess(executor, single)
