"""The asset graph the sources become (issue 4): keys, groups, deps, checks, partitions,
automation, jobs, schedules and sensors.

`sources/demo.yaml`'s graph is compared with the committed `snapshots/demo_graph.json`, so that an
accidental graph change shows up in review. After an intended change, regenerate it with
`API_ASSETS_UPDATE_SNAPSHOTS=1 pytest api_assets_tests/dagster/test_graph.py` and commit the diff.
"""

import importlib
import json
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import time_machine

from api_assets.config.loader import load_sources
from api_assets.demo_api import DemoServer

from .conftest import PROJECT_ROOT, SOURCES, build_defs, make_project, utc_day

SNAPSHOT = Path(__file__).parent / "snapshots" / "demo_graph.json"
DEMO_SOURCES = PROJECT_ROOT / "sources" / "demo.yaml"


def describe_condition(condition: dg.AutomationCondition | None) -> str | None:
    """An automation condition as a short expression of its labelled parts."""
    if condition is None:
        return None
    label = condition.get_label()
    if label:
        return label
    name = type(condition).__name__
    operands = getattr(condition, "operands", None)
    if name == "AndAutomationCondition" and operands:
        return "(" + " & ".join(str(describe_condition(o)) for o in operands) + ")"
    if name == "OrAutomationCondition" and operands:
        return "(" + " | ".join(str(describe_condition(o)) for o in operands) + ")"
    if name == "NotAutomationCondition":
        return "~" + str(describe_condition(condition.operand))  # type: ignore[attr-defined]
    return name


def describe_partitions(partitions_def: dg.PartitionsDefinition | None) -> dict[str, Any] | None:
    if partitions_def is None:
        return None
    assert isinstance(partitions_def, dg.TimeWindowPartitionsDefinition)
    return {
        "start": partitions_def.start.isoformat(),
        "cron": partitions_def.cron_schedule,
        "timezone": partitions_def.timezone,
        "fmt": partitions_def.fmt,
        "end_offset": partitions_def.end_offset,
    }


def describe_freshness(policy: Any) -> str | None:
    if policy is None:
        return None
    cron = getattr(policy, "deadline_cron", None)
    if cron is None:
        return repr(policy)
    return f"cron {cron} {policy.timezone}, lower bound {policy.lower_bound_delta}"


def graph_snapshot(defs: dg.Definitions) -> dict[str, Any]:
    """Everything about the graph a reviewer should notice changing, JSON-ready and sorted."""
    graph = defs.resolve_asset_graph()
    assets: dict[str, Any] = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        assets_def = defs.resolve_assets_def(key)
        spec = next(s for s in assets_def.specs if s.key == key)
        policy = assets_def.backfill_policy
        checks = {
            check_key.name: {"blocking": graph.get_check_spec(check_key).blocking}
            for check_key in sorted(node.check_keys, key=lambda c: c.name)
        }
        freshness = spec.freshness_policy
        assets[key.to_user_string()] = {
            "group": node.group_name,
            "deps": sorted(k.to_user_string() for k in node.parent_keys),
            "kinds": sorted(node.kinds),
            "step": assets_def.node_def.name,
            "pool": getattr(assets_def.node_def, "pool", None),
            "partitions": describe_partitions(assets_def.partitions_def),
            "backfill_policy": None if policy is None else str(policy),
            "checks": checks,
            "automation_condition": describe_condition(spec.automation_condition),
            "freshness_policy": describe_freshness(freshness),
            "owners": list(spec.owners),
            "tags": {k: v for k, v in spec.tags.items() if not k.startswith("dagster/kind/")},
            "code_version": spec.code_version,
            "io_manager_key": spec.metadata.get("dagster/io_manager_key"),
        }
    repo = defs.get_repository_def()
    schedules = {
        s.name: {
            "cron": s.cron_schedule,
            "timezone": s.execution_timezone,
            "job": s.job_name,
            "default_status": s.default_status.value,
        }
        for s in sorted(repo.schedule_defs, key=lambda s: s.name)
    }
    sensors = {
        s.name: {
            "type": type(s).__name__,
            "default_status": s.default_status.value,
            "minimum_interval_seconds": s.minimum_interval_seconds,
            "target": None if s.asset_selection is None else str(s.asset_selection),
        }
        for s in sorted(repo.sensor_defs, key=lambda s: s.name)
    }
    jobs = sorted(j.name for j in repo.get_all_jobs() if not j.name.startswith("__"))
    return {
        "assets": assets,
        "jobs": jobs,
        "schedules": schedules,
        "sensors": sensors,
        "resources": sorted(defs.resources or {}),
    }


@pytest.fixture(scope="module")
def demo_defs(tmp_path_factory: pytest.TempPathFactory) -> dg.Definitions:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("API_ASSETS_SOURCES", str(DEMO_SOURCES))
        mp.setenv("DAGSTER_HOME", str(tmp_path_factory.mktemp("dagster_home")))
        return build_defs(DEMO_SOURCES)


def test_demo_graph_matches_the_committed_snapshot(demo_defs: dg.Definitions) -> None:
    actual = graph_snapshot(demo_defs)
    text = json.dumps(actual, indent=2, sort_keys=True) + "\n"
    if os.environ.get("API_ASSETS_UPDATE_SNAPSHOTS") == "1":
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_text(text)
    expected = json.loads(SNAPSHOT.read_text())
    assert actual == expected, (
        "the asset graph of sources/demo.yaml changed; if intended, regenerate "
        "snapshots/demo_graph.json with API_ASSETS_UPDATE_SNAPSHOTS=1 and commit it"
    )


def test_demo_graph_has_the_contract_shape(demo_defs: dg.Definitions) -> None:
    """What the snapshot holds, asserted directly for the parts CONTRACT §5 fixes."""
    snap = graph_snapshot(demo_defs)
    assets = snap["assets"]
    sources = load_sources(str(DEMO_SOURCES))
    expected_keys = set()
    for source in sources:
        for ep in source.endpoints:
            expected_keys |= {
                f"{source.name}/raw/{ep.name}",
                f"{source.name}/{ep.name}",
                f"{source.name}/schema/{ep.name}",
            }
    # and the demo's "Build on it" example, on the tables of orders and order lines
    assert set(assets) == expected_keys | {"shop/daily_revenue"}
    revenue = assets.pop("shop/daily_revenue")
    assert revenue["deps"] == ["shop/order_lines", "shop/orders"]
    assert revenue["checks"] == {"lines_match_order_totals": {"blocking": False}}
    assert revenue["partitions"] == assets["shop/orders"]["partitions"]
    for key, asset in assets.items():
        source, *_rest, endpoint = key.split("/")
        assert asset["group"] == source
        # one subsettable step per endpoint, shared by its three assets
        assert asset["step"] == f"{source}__{endpoint}"
        if "/raw/" in key:
            assert set(asset["checks"]) == {"completeness", "page_count_anomaly"}
        elif "/schema/" in key:
            assert set(asset["checks"]) == {"schema_drift"}
            assert asset["deps"] == [f"{source}/raw/{endpoint}"]
        else:
            assert asset["checks"] == {}
            assert asset["deps"] == [f"{source}/raw/{endpoint}"]
            # downstream assets load the table through the tables io manager
            assert asset["io_manager_key"] == "api_tables"
        # the three assets of an endpoint share the hash of its config
        assert asset["code_version"] == assets[f"{source}/{endpoint}"]["code_version"]
    # a child endpoint's raw responses depend on its parent's table
    assert assets["shop/raw/order_lines"]["deps"] == ["shop/orders"]
    assert assets["shop/raw/orders"]["deps"] == []
    # daily in UTC with today included; `partitions: none` is unpartitioned
    daily = assets["shop/orders"]["partitions"]
    assert daily == {
        "start": "2026-01-01T00:00:00+00:00",
        "cron": "0 0 * * *",
        "timezone": "UTC",
        "fmt": "%Y-%m-%d",
        "end_offset": 1,
    }
    assert assets["shop/events"]["backfill_policy"] == str(dg.BackfillPolicy.single_run())
    assert assets["shop_query/categories"]["partitions"] is None
    assert snap["schedules"] == {
        "shop_schedule": {
            "cron": "0 3 * * *",
            "timezone": "UTC",
            "job": "shop_job",
            "default_status": "RUNNING",
        }
    }
    assert set(snap["sensors"]) == {"shop_new_data_sensor", "api_assets_automation_sensor"}
    assert snap["sensors"]["api_assets_automation_sensor"]["default_status"] == "RUNNING"
    assert {f"{s.name}_job" for s in sources} <= set(snap["jobs"])


@pytest.mark.parametrize("clock", ["00:00:00", "00:30:00", "12:00:00", "23:59:59"])
def test_today_is_the_last_partition(demo_defs: dg.Definitions, clock: str) -> None:
    """From its first second to its last, today is the last partition. The clock is stopped
    (time-machine, `tick=False`): read twice around midnight, "today" could be two days."""
    assets_def = demo_defs.resolve_assets_def(dg.AssetKey(["shop", "raw", "orders"]))
    assert assets_def.partitions_def is not None
    with time_machine.travel(datetime.fromisoformat(f"2026-03-15T{clock}+00:00"), tick=False):
        assert assets_def.partitions_def.get_last_partition_key() == utc_day(0) == "2026-03-15"


def test_blocking_drift_and_hourly_partitions_follow_the_sources_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: DemoServer
) -> None:
    sources = SOURCES.replace(
        'partitions: {type: daily, start: "2026-01-01"}\n    schedule',
        'partitions: {type: hourly, start: "2026-01-01"}\n    schedule',
    )
    assert sources != SOURCES
    snap = graph_snapshot(make_project(tmp_path, monkeypatch, server, sources).defs)
    assert snap["assets"]["strict/schema/products"]["checks"] == {
        "schema_drift": {"blocking": True}
    }
    assert snap["assets"]["shop/schema/products"]["checks"] == {"schema_drift": {"blocking": False}}
    hourly = snap["assets"]["shop/products"]["partitions"]
    assert hourly["cron"] == "0 * * * *" and hourly["end_offset"] == 1
    assert hourly["timezone"] == "UTC"


def test_module_defs_load_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: DemoServer
) -> None:
    """`api_assets.definitions.defs` (what `-m api_assets.definitions` loads) reads
    API_ASSETS_SOURCES; a broken sources file fails the load listing every problem."""
    project = make_project(tmp_path, monkeypatch, server)
    module = _import_definitions()
    keys = module.defs.resolve_asset_graph().get_all_asset_keys()
    assert dg.AssetKey(["shop", "raw", "order_lines"]) in keys
    assert dg.AssetKey(["strict", "products"]) in keys

    broken = project.root / "broken.yaml"
    broken.write_text(
        "sources:\n  - name: Bad-Name\n    base_url: http://127.0.0.1:1\n"
        "    endpoints:\n      - name: e\n        path: /x\n        paginator: {type: nope}\n"
    )
    monkeypatch.setenv("API_ASSETS_SOURCES", str(broken))
    with pytest.raises(Exception, match=r"(?s)2 problem\(s\).*broken\.yaml:2: .*broken\.yaml:7: "):
        _import_definitions()


def _import_definitions() -> Any:
    sys.modules.pop("api_assets.definitions", None)
    try:
        return importlib.import_module("api_assets.definitions")
    finally:
        # leave no half-imported module behind for other tests of this process
        sys.modules.pop("api_assets.definitions", None)
