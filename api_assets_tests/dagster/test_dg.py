"""The project as a `dg` project (issue 19): `[tool.dg]` in pyproject.toml, the defs folder
api_assets/dg_defs/ whose `sources/defs.yaml` makes `API_ASSETS_SOURCES` an
`ApiSourcesComponent` (api_assets/defs/component.py).

In process: the component builds the same definitions as `build_definitions`, and its `path`
resolves as documented. As subprocesses from the project root, against the demo API:
`dg list defs`, `dg check defs` (good and broken sources), `dg check yaml` (a defs.yaml that
does not fit the component's schema), `dg launch` of one partition, `dg dev` answering.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import httpx
import pytest

from api_assets.defs.build import SourcesFileError
from api_assets.defs.component import ApiSourcesComponent

from .conftest import PROJECT_ROOT, Project, asset_keys, free_port, stop_process_tree, utc_day

DG_BIN = str(Path(sys.executable).with_name("dg"))
DEFS_YAML = PROJECT_ROOT / "api_assets" / "dg_defs" / "sources" / "defs.yaml"


def dg_env(project: Project) -> dict[str, str]:
    # `dg` runs the project's code in the environment it was started from
    return {**project.env, "VIRTUAL_ENV": sys.prefix}


def run_dg(
    project: Project, *args: str, cwd: Path = PROJECT_ROOT, timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    """`dg ARGS` in a subprocess of its own session (killed whole on a timeout)."""
    proc = subprocess.Popen(
        [DG_BIN, *args],
        cwd=cwd,
        env=dg_env(project),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(f"dg {' '.join(args)} timed out:\n{err[-3000:]}") from None
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


# --- in process --------------------------------------------------------------------------------


def test_the_component_builds_what_build_definitions_builds(project: Project) -> None:
    """The defs folder (`API_ASSETS_SOURCES` through defs.yaml) against `build_definitions` of
    the same file: the same assets, checks, jobs, schedules, sensors, resources and executor."""
    via_dg = dg.load_from_defs_folder(path_within_project=PROJECT_ROOT)
    direct = project.defs

    def shape(defs: dg.Definitions) -> dict[str, object]:
        graph = defs.resolve_asset_graph()
        repo = defs.get_repository_def()
        return {
            "assets": sorted(k.to_user_string() for k in graph.get_all_asset_keys()),
            "checks": sorted(str(k) for k in graph.asset_check_keys),
            "jobs": sorted(j.name for j in repo.get_all_jobs()),
            "schedules": sorted(s.name for s in repo.schedule_defs),
            "sensors": sorted(s.name for s in repo.sensor_defs),
            "resources": sorted(defs.resources or {}),
            "executor": defs.executor.name
            if isinstance(defs.executor, dg.ExecutorDefinition)
            else None,
        }

    expected = shape(direct)
    assert shape(via_dg) == expected
    assert "shop/raw/orders" in expected["assets"]  # type: ignore[operator]
    assert expected["executor"] == "api_assets_executor"


def test_the_path_is_taken_from_the_defs_yaml_folder_or_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "defs" / "sources"
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("API_ASSETS_SOURCES", raising=False)
    written = ApiSourcesComponent(path="${API_ASSETS_SOURCES:-../../sources}")
    assert written.sources_path(folder).resolve() == tmp_path / "sources"
    # a path that starts with a variable's value means what the variable means: from the cwd
    monkeypatch.setenv("API_ASSETS_SOURCES", "mine/s.yaml")
    assert written.sources_path(folder).resolve() == tmp_path / "mine" / "s.yaml"
    monkeypatch.setenv("API_ASSETS_SOURCES", "/abs/s.yaml")
    assert written.sources_path(folder) == Path("/abs/s.yaml")
    with pytest.raises(SourcesFileError, match=r"defs\.yaml: attributes\.path: .*NOPE is not set"):
        ApiSourcesComponent(path="${NOPE}/s.yaml").sources_path(folder)


def test_the_projects_defs_yaml_names_the_component() -> None:
    text = DEFS_YAML.read_text()
    assert "type: api_assets.defs.component.ApiSourcesComponent" in text
    assert "path: ${API_ASSETS_SOURCES:-../../../sources}" in text
    assert (DEFS_YAML.parent / "../../../sources").resolve() == PROJECT_ROOT / "sources"


# --- dg, as a user runs it ----------------------------------------------------------------------


@pytest.mark.e2e
def test_dg_list_defs_lists_the_sources_assets(project: Project) -> None:
    proc = run_dg(project, "list", "defs", "--json")
    assert proc.returncode == 0, proc.stderr[-4000:]
    listed = json.loads(proc.stdout)
    keys = {a["asset_key"] for a in listed["assets"]}
    for source, endpoint in [("shop", "orders"), ("shop", "events"), ("strict", "products")]:
        assert {k.to_user_string() for k in asset_keys(source, endpoint)} <= keys
    assert all(
        a["source"].startswith("api_assets/dg_defs/sources/defs.yaml") for a in listed["assets"]
    )
    assert {"shop_job", "strict_job"} <= {j["name"] for j in listed["jobs"]}


@pytest.mark.e2e
def test_dg_check_defs_passes(project: Project) -> None:
    proc = run_dg(project, "check", "defs")
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "All component YAML validated successfully." in proc.stdout
    assert "All definitions loaded successfully." in proc.stdout


@pytest.mark.e2e
def test_dg_check_defs_lists_every_problem_of_a_broken_sources_file(project: Project) -> None:
    broken = project.root / "broken.yaml"
    broken.write_text(
        "sources:\n  - name: Bad-Name\n    base_url: http://127.0.0.1:1\n"
        "    endpoints:\n      - name: e\n        path: /x\n        paginator: {type: nope}\n"
    )
    project.env["API_ASSETS_SOURCES"] = str(broken)
    proc = run_dg(project, "check", "defs")
    text = proc.stdout + proc.stderr
    assert proc.returncode == 1, text[-4000:]
    assert "the sources file has 2 problem(s):" in text
    assert f"{broken}:2: sources[0].name: expected a name of lowercase letters" in text
    assert f"{broken}:7: sources[0].endpoints.e.paginator.type: " in text
    assert "Traceback (most recent call last)" not in text


@pytest.mark.e2e
def test_dg_check_yaml_refuses_attributes_the_component_does_not_have(
    project: Project, tmp_path: Path
) -> None:
    """`dg check yaml` checks defs.yaml files against the component's schema (the sources file
    itself is checked when the definitions load: `dg check defs`, above)."""
    dg_project = tmp_path / "other"
    (dg_project / "other_project" / "defs" / "shop").mkdir(parents=True)
    (dg_project / "pyproject.toml").write_text(
        '[project]\nname = "other"\nversion = "0"\n\n[tool.dg]\ndirectory_type = "project"\n\n'
        '[tool.dg.project]\nroot_module = "other_project"\n'
    )
    (dg_project / "other_project" / "__init__.py").write_text("")
    (dg_project / "other_project" / "defs" / "__init__.py").write_text("")
    yaml = dg_project / "other_project" / "defs" / "shop" / "defs.yaml"
    yaml.write_text(
        "type: api_assets.defs.component.ApiSourcesComponent\nattributes:\n  paht: s.yaml\n"
    )
    proc = run_dg(project, "check", "yaml", cwd=dg_project)
    assert proc.returncode == 1, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert f"{yaml}:3 - " in proc.stdout and "('paht' was unexpected)" in proc.stdout
    assert "'path' is a required property" in proc.stdout


@pytest.mark.e2e
def test_dg_launch_materializes_one_partition_of_one_endpoint(project: Project) -> None:
    today = utc_day(0)
    selection = ",".join(k.to_user_string() for k in asset_keys("shop", "products"))
    proc = run_dg(project, "launch", "--assets", selection, "--partition", today)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "RUN_SUCCESS" in proc.stderr
    assert "Executing steps in process" in proc.stderr  # one endpoint: one step, in process
    table = project.table("shop", "products", today)
    assert sorted(table["id"].to_list()) == sorted(project.server.truth("products")["ids"])
    assert project.report("shop", "products", today)["status"] == "success"
    assert (project.home / "history" / "runs.db").exists()
    assert not project.layout.table_dir("shop", "orders").exists()


@pytest.mark.e2e
def test_dg_dev_serves_the_ui_on_localhost(project: Project) -> None:
    """`dg dev` on 127.0.0.1 and a free port: the webserver answers and the code location
    loads; stopped with SIGINT to the parent, then SIGKILL of its process group if it lingers.
    `--no-check-yaml` saves ~5 s: `dg check defs` above checks the YAML."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = project.root / "dg-dev.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [DG_BIN, "dev", "--no-check-yaml", "--host", "127.0.0.1", "--port", str(port)],
            cwd=PROJECT_ROOT,
            env=dg_env(project),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            query = (
                "{ workspaceOrError { ... on Workspace { locationEntries { name"
                " locationOrLoadError { __typename } } } } }"
            )
            deadline = time.monotonic() + 120
            loaded = None
            while loaded is None:
                assert proc.poll() is None, log_path.read_text()[-4000:]
                assert time.monotonic() < deadline, "dg dev did not load the code location"
                try:
                    body = httpx.post(f"{url}/graphql", json={"query": query}, timeout=5).json()
                    entries = body["data"]["workspaceOrError"]["locationEntries"]
                    loaded = entries[0]["locationOrLoadError"] if entries else None
                except (httpx.HTTPError, ValueError, KeyError, TypeError):
                    pass
                if loaded is None:
                    time.sleep(0.5)
            assert entries[0]["name"] == "api_assets"
            assert loaded["__typename"] == "RepositoryLocation", log_path.read_text()[-4000:]
        finally:
            stop_process_tree(proc)
