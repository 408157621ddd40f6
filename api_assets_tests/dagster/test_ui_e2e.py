"""End to end through the UI's own path (issue 4): `dagster dev -w workspace.yaml` from the
project root, a partition of a source job launched over GraphQL, run by the daemon's run
launcher, polled to SUCCESS, its tables checked against the demo API's ground truth."""

import subprocess
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from dagster import DagsterRunStatus
from dagster_graphql import DagsterGraphQLClient

from .conftest import (
    DAGSTER_BIN,
    PROJECT_ROOT,
    Project,
    asset_keys,
    free_port,
    stop_process_tree,
    utc_day,
)

pytestmark = [
    pytest.mark.e2e,
    # dagster_graphql's use of gql, not ours
    pytest.mark.filterwarnings("ignore:Using variable_values:DeprecationWarning"),
]

FINISHED = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}


@pytest.fixture
def webserver(project: Project) -> Iterator[str]:
    """`dagster dev` on a free port; stopped with SIGINT to the parent, then SIGKILL of its
    process group if it lingers."""
    port = free_port()
    log = (project.root / "dagster-dev.log").open("w")
    proc = subprocess.Popen(
        [DAGSTER_BIN, "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
        cwd=PROJECT_ROOT,
        env=project.env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, (project.root / "dagster-dev.log").read_text()[-4000:]
            try:
                if httpx.get(f"{url}/server_info", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "dagster dev did not answer /server_info"
            time.sleep(0.5)
        yield url
    finally:
        stop_process_tree(proc)
        log.close()


def graphql(url: str, query: str, variables: dict[str, Any] | None = None) -> Any:
    response = httpx.post(
        f"{url}/graphql", json={"query": query, "variables": variables or {}}, timeout=60
    )
    response.raise_for_status()
    body = response.json()
    assert "errors" not in body, body
    return body["data"]


def wait_until_loaded(url: str) -> None:
    """The code location is loaded (the webserver answers before it is)."""
    query = """{ workspaceOrError { ... on Workspace { locationEntries {
        name locationOrLoadError { __typename ... on PythonError { message } } } } } }"""
    deadline = time.monotonic() + 180
    while True:
        entries = graphql(url, query)["workspaceOrError"]["locationEntries"]
        state = {e["name"]: e["locationOrLoadError"] for e in entries}
        location = state.get("api_assets")
        if location and location["__typename"] == "RepositoryLocation":
            return
        assert not (location and location["__typename"] == "PythonError"), location
        assert time.monotonic() < deadline, f"the code location did not load: {state}"
        time.sleep(1)


def test_a_partition_launched_from_the_ui_materializes(project: Project, webserver: str) -> None:
    today = utc_day(0)
    wait_until_loaded(webserver)
    client = DagsterGraphQLClient("127.0.0.1", port_number=int(webserver.rsplit(":", 1)[1]))
    # the source job, one endpoint of it (each endpoint is a step process of its own)
    run_id = client.submit_job_execution(
        "shop_job",
        repository_location_name="api_assets",
        tags={"dagster/partition": today},
        asset_selection=[k.path for k in asset_keys("shop", "orders")],
    )
    deadline = time.monotonic() + 300
    status = client.get_run_status(run_id)
    while status not in FINISHED:
        assert time.monotonic() < deadline, f"run {run_id} still {status}"
        time.sleep(1)
        status = client.get_run_status(run_id)
    assert status == DagsterRunStatus.SUCCESS, (project.root / "dagster-dev.log").read_text()[
        -4000:
    ]

    server = project.server
    orders = project.table("shop", "orders", today)
    assert sorted(orders["id"].to_list()) == server.truth("orders")["ids"]
    report = project.report("shop", "orders", today)
    assert report["run_id"] == run_id and report["status"] == "success"
    assert not project.layout.table_dir("shop", "products").exists()  # not selected
    # the UI sees the partition materialized, and the checks evaluated
    data = graphql(
        webserver,
        """query($key: AssetKeyInput!) { assetNodes(assetKeys: [$key]) {
            partitionStats { numMaterialized }
            assetChecksOrError { ... on AssetChecks { checks { name
                executionForLatestMaterialization { status } } } } } }""",
        {"key": {"path": ["shop", "raw", "orders"]}},
    )
    [node] = data["assetNodes"]
    assert node["partitionStats"]["numMaterialized"] == 1
    checks = {
        c["name"]: c["executionForLatestMaterialization"]["status"]
        for c in node["assetChecksOrError"]["checks"]
    }
    assert checks == {"completeness": "SUCCEEDED", "page_count_anomaly": "SUCCEEDED"}
