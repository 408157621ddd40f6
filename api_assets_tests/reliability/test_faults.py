"""Complete or loud, through Dagster: every fault profile of the demo API against a source's job.

Each case commits a clean baseline of P0 first (the engine alone: same commit path, no Dagster
start-up), changes the data a little, puts one fault in force and runs the source's job in
process on a persistent instance, either re-materializing P0 (`rerun`) or a new partition P1
(`first`). Then exactly one of two outcomes is accepted:

- complete: the run succeeded and the partition's table holds exactly the ground truth
  (`/admin/truth`), once each; the report says success; the watermark is the newest cursor
  value of the committed rows;
- loud: the run failed naming the source, the endpoint and the cause; the report of that
  partition says failed with the error; nothing visible changed (no table for a first run, the
  previous files byte-identical on a re-run); no materialization was recorded; the watermark
  did not move; no temp file is left behind.

The demo API fires each fault as configured (`fired(api) >= 1` proves it did). The normal run
uses one mode per loud case; `API_ASSETS_EXTENDED=1` runs both. FAULTS.md has the table.
"""

from dataclasses import dataclass, field
from typing import Any

import pytest

from .conftest import (
    EXTENDED,
    KIND,
    P0,
    P1,
    SOURCE,
    Project,
    assert_readable,
    endpoint,
    expected_ids,
    fired,
    leftovers,
)

pytestmark = pytest.mark.e2e


@dataclass(frozen=True)
class Case:
    id: str
    endpoint: str
    profile: str
    options: dict[str, Any]
    outcome: str  # "complete" | "loud"
    words: tuple[str, ...] = ()  # the failure (and the report's error) names these
    source: dict[str, Any] = field(default_factory=dict)  # source overrides
    paginator: dict[str, Any] = field(default_factory=dict)
    evidence: dict[str, int] = field(default_factory=dict)  # report counters at least this
    mode: str = "rerun"  # the normal run's mode; EXTENDED runs both for loud cases
    names_where: bool = True  # the failure names the source and the endpoint (see gap G3)


TIMEOUTS = {"timeout_seconds": 0.5}
PATIENT = {"retry": {"max_attempts": 5, "max_backoff_seconds": 0.2}}

CASES = [
    # transient faults: retried, the run lands everything
    Case("429-storm", "products", "429_storm", {"count": 3, "retry_after": 0}, "complete",
         source=PATIENT, evidence={"throttled": 3, "retries": 3}),
    Case("5xx-burst", "events", "5xx_burst", {"count": 2, "status": [503, 500]}, "complete",
         evidence={"retries": 2}),
    Case("timeout", "orders", "slow", {"count": 1, "delay": 1.5}, "complete",
         source=TIMEOUTS, evidence={"retries": 1}),
    Case("dropped-connection", "products", "drop", {"count": 1}, "complete",
         evidence={"retries": 1}),
    Case("truncated-json", "events", "truncated_json", {"count": 1}, "complete",
         evidence={"retries": 1}),
    Case("200-error-body", "orders", "error_body", {"count": 1}, "complete",
         evidence={"retries": 1}),
    # the same faults when they do not stop: the run fails and says why
    Case("429-storm-persistent", "orders", "429_storm", {"persistent": True, "retry_after": 0},
         "loud", ("HTTP 429", "gave up after 4 attempts"), mode="first"),
    Case("5xx-persistent", "products", "5xx_burst", {"persistent": True}, "loud",
         ("HTTP 503", "gave up after 4 attempts")),
    Case("timeout-persistent", "events", "slow", {"persistent": True, "delay": 1.5}, "loud",
         ("timed out", "gave up after 4 attempts"), source=TIMEOUTS, mode="first"),
    Case("dropped-persistent", "orders", "drop", {"persistent": True}, "loud",
         ("RemoteProtocolError", "gave up after 4 attempts")),
    Case("truncated-persistent", "products", "truncated_json", {"persistent": True}, "loud",
         ("not JSON", "the same after a retry"), mode="first"),
    Case("200-error-body-persistent", "events", "error_body", {"persistent": True}, "loud",
         ("error body", "internal error: please try again")),
    # the API's pages cannot be trusted: refused, never silently loaded
    # Deletes before the offset: the stated total shrinks under the client, which is caught.
    # Deletes balanced by inserts keep the total and are caught only when concurrent pages happen
    # to be served out of order (a key on two pages): a timing accident, not a test (the strict
    # xfails in engine/test_faults_http.py and dagster/test_checks.py document that gap).
    Case("offset-drift", "products", "offset_drift", {"inserts": 0, "deletes": 1}, "loud",
         ("incomplete",), mode="first"),
    Case("repeated-cursor", "orders", "repeated_cursor", {}, "loud", ("pagination loop",),
         names_where=False),
    Case("repeated-link", "events", "repeated_cursor", {}, "loud", ("pagination loop",),
         mode="first", names_where=False),
    Case("repeated-page", "products", "repeat_page", {}, "loud", ("repeats page",)),
    Case("empty-page-mid-stream", "orders", "empty_page", {}, "loud",
         ("incomplete", "empty page before the last"), mode="first"),
    Case("empty-page-mid-window", "events", "empty_page", {}, "loud",
         ("incomplete", "empty page before the last")),
]  # fmt: skip

# More of the same when time allows: other endpoints for the same faults.
EXTENDED_CASES = [
    Case("429-storm-window", "events", "429_storm", {"count": 2, "retry_after": 0}, "complete",
         source=PATIENT, evidence={"throttled": 2}),
    Case("5xx-burst-incremental", "orders", "5xx_burst", {"count": 3, "status": 502}, "complete",
         evidence={"retries": 3}),
    Case("drop-headers", "events", "drop", {"count": 1, "mode": "headers"}, "complete"),
    Case("repeat-page-incremental", "orders", "repeat_page", {}, "loud", ("repeats page",)),
    Case("repeat-page-window", "events", "repeat_page", {}, "loud", ("repeats page",)),
    Case("empty-page-snapshot", "products", "empty_page", {}, "loud", ("incomplete",)),
    Case("offset-drift-deletes", "products", "offset_drift", {"inserts": 0, "deletes": 2},
         "loud", ("incomplete",)),
    Case("5xx-persistent-incremental", "orders", "5xx_burst", {"persistent": True}, "loud",
         ("HTTP 503",)),
]  # fmt: skip


def _params() -> list[Any]:
    out = []
    for case in CASES + (EXTENDED_CASES if EXTENDED else []):
        modes = ["rerun", "first"] if EXTENDED and case.outcome == "loud" else [case.mode]
        out.extend(pytest.param(case, mode, id=f"{case.id}-{mode}") for mode in modes)
    return out


def _prepare(project: Project, case: Case, mode: str) -> dict[str, Any]:
    """Baseline P0, change the data, note what is committed; returns the facts to compare."""
    api = project.api
    assert api is not None
    name = case.endpoint
    project.write(
        project.source(
            endpoint(name, paginator=case.paginator) if case.paginator else name, **case.source
        )
    )
    baseline = project.ingest(name, P0)
    assert baseline.report.status == "success"
    # the world moves on between runs
    if name == "orders":
        api.mutate("orders", inserts=15, updates=120, deletes=5)
    elif name == "products":
        api.mutate("products", inserts=5, updates=10, deletes=3)
    target = P0 if mode == "rerun" else P1
    incremental = KIND[name] == "incremental"
    starts_from = (
        (baseline.watermark_before if target == P0 else baseline.watermark_after)
        if incremental
        else None
    )
    return {
        "target": target,
        "incremental": incremental,
        "starts_from": starts_from,
        "expected": expected_ids(api, name, target, starts_from),
        "state": project.state(name, target),
        "p0_state": project.state(name, P0),
        "latest": project.latest_watermark(name) if incremental else None,
    }


@pytest.mark.parametrize(("case", "mode"), _params())
def test_fault_is_complete_or_loud(project: Project, case: Case, mode: str) -> None:
    api = project.api
    assert api is not None
    name = case.endpoint
    facts = _prepare(project, case, mode)
    target = facts["target"]
    api.set_faults(case.profile, path=endpoint(name)["path"], **case.options)

    run = project.materialize(target)

    assert fired(api) >= 1, f"the fault never fired: {api.faults()}"
    report = project.report(name, target)
    assert report is not None, "no run report"
    assert not leftovers(project.layout), leftovers(project.layout)
    if case.outcome == "complete":
        _assert_complete(project, case, run, report, facts)
    else:
        _assert_loud(project, case, run, report, facts)
    assert_readable(project.layout, SOURCE, name)


def _assert_complete(
    project: Project, case: Case, run: Any, report: dict[str, Any], facts: dict[str, Any]
) -> None:
    name, target = case.endpoint, facts["target"]
    assert run.success, run.failure()
    assert report["status"] == "success" and not report.get("error"), report
    for counter, at_least in case.evidence.items():
        assert report[counter] >= at_least, (counter, report)
    df = project.table(name, target)
    assert df is not None
    ids = df["id"].to_list()
    assert len(ids) == len(set(ids)), "a record was stored twice"
    expected = facts["expected"]
    assert set(ids) == expected, (
        f"missing {sorted(expected - set(ids))[:10]}, extra {sorted(set(ids) - expected)[:10]}"
    )
    assert report["records"] == len(expected)
    (table_mat,) = run.materialized(SOURCE, name)
    assert table_mat.metadata["dagster/row_count"].value == len(expected)
    if facts["incremental"]:
        meta = project.table_meta(name, target)
        newest = max(df["updated_at"].to_list())
        assert meta["watermark_before"] == facts["starts_from"]
        assert meta["watermark_after"] == newest == report["watermark_after"]
        assert project.latest_watermark(name) == max(newest, facts["latest"])


def _assert_loud(
    project: Project, case: Case, run: Any, report: dict[str, Any], facts: dict[str, Any]
) -> None:
    name, target = case.endpoint, facts["target"]
    assert not run.success, "the run succeeded although the fault never stopped"
    failure = run.failure()
    if case.names_where:
        assert f"`{SOURCE}`" in failure and f"`{name}`" in failure, failure
    for word in case.words:
        assert word.lower() in failure.lower(), f"{word!r} not in the failure:\n{failure}"
    assert report["status"] == "failed", report
    assert report["error"] and case.words[0].lower() in report["error"].lower(), report
    assert report["run_id"] == run.result.run_id
    # nothing new is visible: no table for a first run, the previous files untouched on a rerun
    assert project.state(name, target) == facts["state"]
    assert project.state(name, P0) == facts["p0_state"]
    if target == P1:
        assert project.table(name, P1) is None
    assert not run.materialized(SOURCE, name)
    assert not run.materialized(SOURCE, "raw", name)
    if facts["incremental"]:
        assert project.latest_watermark(name) == facts["latest"]
        assert report["watermark_after"] == report["watermark_before"] == facts["starts_from"]


# --- a schema change mid-run -------------------------------------------------------------------


def test_schema_change_mid_run_lands_every_record_and_flags_the_drift(project: Project) -> None:
    """From the 4th request on, `price.amount` turns from a number into a string: the run lands
    every record (the column widens to string, the report says so) and `schema_drift` against
    P0 fails with ERROR; with `block: false` the table is published."""
    api = project.api
    assert api is not None
    project.write(project.source("products"))
    project.ingest("products", P0)
    expected = expected_ids(api, "products", P1)
    api.set_faults("schema_change", path="/v1/products", change="retype", after=3)

    run = project.materialize(P1)

    assert fired(api) >= 1
    assert run.success, run.failure()
    df = project.table("products", P1)
    assert df is not None and set(df["id"].to_list()) == expected and df.height == len(expected)
    report = project.report("products", P1)
    assert report is not None and report["status"] == "success"
    assert any(
        w.get("column") == "price__amount" or "price__amount" in str(w) for w in report["widened"]
    ), report["widened"]
    drift = [c for c in run.result.get_asset_check_evaluations() if c.check_name == "schema_drift"]
    assert len(drift) == 1 and not drift[0].passed
    assert drift[0].severity.value == "ERROR"


def test_blocking_schema_drift_publishes_nothing_and_keeps_the_watermark(
    project: Project,
) -> None:
    """`schema_drift: {block: true}` on an incremental endpoint: a retyped field keeps P1's
    table back, the report says failed with the drift, the watermark stays at P0's."""
    api = project.api
    assert api is not None
    project.write(project.source("orders", schema_drift={"block": True}))
    baseline = project.ingest("orders", P0)
    api.mutate("orders", updates=80)
    latest = project.latest_watermark("orders")
    assert latest == baseline.watermark_after
    api.set_faults("schema_change", path="/v1/orders", change="retype")

    run = project.materialize(P1)

    assert fired(api) >= 1
    assert project.table("orders", P1) is None
    report = project.report("orders", P1)
    assert report is not None and report["status"] == "failed"
    assert "schema drift" in report["error"], report["error"]
    assert project.latest_watermark("orders") == latest
    assert not run.materialized(SOURCE, "orders")
    drift = [c for c in run.result.get_asset_check_evaluations() if c.check_name == "schema_drift"]
    assert len(drift) == 1 and not drift[0].passed and drift[0].severity.value == "ERROR"


# --- an inserts-only drift: nothing that existed throughout is lost ---------------------------


def test_offset_drift_with_inserts_only_keeps_every_record_that_existed_throughout(
    project: Project,
) -> None:
    """Records appended while paginating (ids sort after the offset) move nothing the client
    still has to read: the run may succeed, and then it holds every record that existed from
    start to end."""
    api = project.api
    assert api is not None
    project.write(project.source("products"))
    before = set(api.truth("products")["ids"])
    api.set_faults("offset_drift", path="/v1/products", inserts=1, deletes=0)

    run = project.materialize(P1)

    assert fired(api) >= 1
    after = set(api.truth("products")["ids"])
    report = project.report("products", P1)
    assert report is not None
    if run.success:
        df = project.table("products", P1)
        assert df is not None
        ids = set(df["id"].to_list())
        assert before & after <= ids, sorted((before & after) - ids)[:10]
        assert ids <= before | after
    else:
        assert report["status"] == "failed" and project.table("products", P1) is None


# --- known gaps: an empty page the paginator has to trust -------------------------------------


def test_empty_page_mid_keyset_series_is_loud(project: Project) -> None:
    api = project.api
    assert api is not None
    project.write(project.source("customers_keyset"))
    expected = expected_ids(api, "customers_keyset", P1)
    api.set_faults("empty_page", path="/v1/customers/keyset")

    run = project.materialize(P1)

    assert fired(api) >= 1
    df = project.table("customers_keyset", P1)
    complete = run.success and df is not None and set(df["id"].to_list()) == expected
    assert complete or not run.success, (
        f"silently incomplete: {0 if df is None else df.height} of {len(expected)} records"
    )


def test_empty_last_page_of_a_cursor_series_is_loud(project: Project) -> None:
    api = project.api
    assert api is not None
    project.write(project.source("orders"))
    expected = expected_ids(api, "orders", P1)
    pages = -(-len(expected) // 50)
    assert pages >= 3
    # pages after the first are the eligible ones: the last page is the (pages-1)-th of them
    api.set_faults("empty_page", path="/v1/orders", after=pages - 2)

    run = project.materialize(P1)

    assert fired(api) >= 1
    df = project.table("orders", P1)
    complete = run.success and df is not None and set(df["id"].to_list()) == expected
    assert complete or not run.success, (
        f"silently incomplete: {0 if df is None else df.height} of {len(expected)} records"
    )


def test_a_pagination_loop_names_the_source_and_the_endpoint(project: Project) -> None:
    api = project.api
    assert api is not None
    project.write(project.source("orders"))
    api.set_faults("repeated_cursor", path="/v1/orders")

    run = project.materialize(P1)

    assert fired(api) >= 1 and not run.success
    failure = run.failure()
    assert "pagination loop" in failure
    assert f"`{SOURCE}`" in failure and "`orders`" in failure, failure
