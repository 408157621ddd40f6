"""The same faults through the shell path users run: `dagster asset materialize`.

Normal run: an incremental partition re-materialized while the API answers 503 without end (in-
process executor: one process). `API_ASSETS_EXTENDED=1` adds a 429 storm the run recovers from,
with Dagster's default multiprocess executor.
"""

import json

import pytest

from .conftest import EXTENDED, P0, P1, SOURCE, Project, expected_ids, fired, leftovers

pytestmark = pytest.mark.e2e

IN_PROCESS = json.dumps({"execution": {"config": {"in_process": {}}}})


def _materialize(project: Project, partition: str, *extra: str):  # type: ignore[no-untyped-def]
    return project.cli(
        "asset",
        "materialize",
        "-m",
        "api_assets.definitions",
        "--select",
        f"group:{SOURCE}",
        "--partition",
        partition,
        *extra,
    )


def test_cli_run_that_keeps_failing_is_loud_and_publishes_nothing(project: Project) -> None:
    api = project.api
    assert api is not None
    project.write(project.source("orders"))
    baseline = project.ingest("orders", P0)
    api.mutate("orders", updates=60)
    state = project.state("orders", P0)
    latest = project.latest_watermark("orders")
    api.set_faults("5xx_burst", path="/v1/orders", persistent=True)

    out = _materialize(project, P0, "--config-json", IN_PROCESS)

    assert fired(api) >= 4
    assert out.returncode != 0
    assert "RUN_FAILURE" in out.stderr
    assert "HTTP 503" in out.stderr and "`orders`" in out.stderr, out.stderr[-3000:]
    report = project.report("orders", P0)
    assert report is not None and report["status"] == "failed" and "HTTP 503" in report["error"]
    assert report["watermark_after"] == report["watermark_before"] == baseline.watermark_before
    assert project.state("orders", P0) == state
    assert project.latest_watermark("orders") == latest
    assert not leftovers(project.layout)


@pytest.mark.skipif(not EXTENDED, reason="slow: API_ASSETS_EXTENDED=1")
def test_cli_run_recovers_from_a_429_storm_with_the_multiprocess_executor(
    project: Project,
) -> None:
    api = project.api
    assert api is not None
    project.write(project.source("products", retry={"max_attempts": 6, "max_backoff_seconds": 1}))
    expected = expected_ids(api, "products", P1)
    api.set_faults("429_storm", path="/v1/products", count=4, retry_after=0)

    out = _materialize(project, P1)

    assert fired(api) == 4
    assert out.returncode == 0, out.stderr[-3000:]
    assert "RUN_SUCCESS" in out.stderr
    df = project.table("products", P1)
    assert df is not None and set(df["id"].to_list()) == expected and df.height == len(expected)
    report = project.report("products", P1)
    assert report is not None and report["status"] == "success" and report["throttled"] >= 4
