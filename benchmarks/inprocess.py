"""`python -m benchmarks.inprocess SELECTION PARTITION`: what `dagster asset materialize -m
api_assets.definitions --select SELECTION --partition PARTITION` does, but executed in this
process (`execute_in_process`) whatever executor the definitions configure. The profile uses it
to see the step and the Dagster layer in one profiled process, and to price the executor.
"""

import sys

import dagster as dg


def main(argv: list[str]) -> int:
    from api_assets.definitions import defs

    keys = [dg.AssetKey.from_user_string(k) for k in argv[0].split(",")]
    with dg.DagsterInstance.get() as instance:
        job = defs.resolve_implicit_global_asset_job_def()
        result = job.execute_in_process(
            instance=instance, partition_key=argv[1], asset_selection=keys
        )
    return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
