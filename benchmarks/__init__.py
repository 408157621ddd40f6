"""The benchmark suite of api_assets: speed, memory and fidelity, measured against baselines run
in the same invocation, printed as ratios.

    uv run --group bench python -m benchmarks            # 100k and 1M records
    uv run --group bench python -m benchmarks --quick    # 10k and 100k records
    uv run --group bench python -m benchmarks --profile  # cProfile of the engine and the e2e path
    uv run --group bench python -m benchmarks --only gzip --no-write  # one scenario, print only

Modules: `servers` (the local page servers: zero latency, fixed latency, rate limited, gzip),
`contenders` (floor, dlt, engine, end to end), `worker` (one contender in a fresh process, for
its own peak RSS), `measure` (subprocess wall time and process-tree RSS), `suite` (the
scenarios and the targets), `report` (RESULTS.md and results.png), `profiling` (PROFILE.md),
`inprocess` (the end-to-end job executed in one process, for the profile).
`webhooks.py` (the webhook receiver's throughput) is its own script, called by the suite.

Nothing here is imported by the package or asserted by the test suite: benchmarks are scripts.
"""
