"""The run report: contract fields, JSON round trip, failure reports."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

from api_assets.pages import FetchStats
from api_assets.pipeline.checks import CheckOutcome
from api_assets.pipeline.report import REQUIRED_FIELDS, RunReport
from api_assets.storage.layout import DataLayout

STARTED = datetime(2026, 11, 28, 3, 0, tzinfo=UTC)


def full_report() -> RunReport:
    report = RunReport(
        source="shop",
        endpoint="orders",
        partition="2026-11-28",
        run_id="run-1",
        started_at=STARTED,
        watermark_before="2026-11-27T00:00:00Z",
        watermark_after="2026-11-28T02:59:00Z",
        records=95,
        duplicates=5,
        checks=[
            CheckOutcome("completeness", True, "ERROR", "100 records, 1 page", {"pages": 1}),
            CheckOutcome("schema_drift", False, "WARN", "added `b`"),
        ],
    )
    stats = FetchStats(
        requests=4, retries=2, throttled=1, pages=2, fetched=100, bytes=2048, total_reported=100
    )
    stats.stop_reason = "signal"
    stats.not_found.append({"order_id": 3})
    report.apply_stats(stats)
    report.succeed(STARTED + timedelta(seconds=2.5))
    return report


def test_all_contract_fields_are_written(tmp_path: Path) -> None:
    layout = DataLayout(tmp_path)
    path = full_report().write(layout)
    assert path == layout.report_path("shop", "orders", "2026-11-28")
    raw = orjson.loads(path.read_bytes())
    assert set(REQUIRED_FIELDS) <= set(raw)
    assert list(raw)[: len(REQUIRED_FIELDS)] == list(REQUIRED_FIELDS)
    assert raw["status"] == "success"
    assert raw["error"] is None
    assert [c.name for c in full_report().failed_checks] == ["schema_drift"]
    assert raw["started_at"] == "2026-11-28T03:00:00+00:00"
    assert datetime.fromisoformat(raw["finished_at"]) == STARTED + timedelta(seconds=2.5)
    assert (raw["fetched"], raw["records"], raw["duplicates"]) == (100, 95, 5)
    assert (raw["pages"], raw["requests"], raw["retries"], raw["throttled"]) == (2, 4, 2, 1)
    assert raw["total_reported"] == 100
    assert raw["watermark_after"] == "2026-11-28T02:59:00Z"
    assert raw["checks"][1] == {
        "name": "schema_drift",
        "passed": False,
        "severity": "WARN",
        "message": "added `b`",
    }
    for check in raw["checks"]:
        assert {"name", "passed", "severity", "message"} <= set(check)
    assert (raw["stop_reason"], raw["bytes"], raw["not_found"]) == ("signal", 2048, 1)
    assert raw["elapsed_s"] == 2.5


def test_round_trip(tmp_path: Path) -> None:
    layout = DataLayout(tmp_path)
    report = full_report()
    report.write(layout)
    loaded = RunReport.load(layout, "shop", "orders", "2026-11-28")
    assert loaded == report
    assert RunReport.load(layout, "shop", "orders", "2026-11-29") is None


def test_checks_given_as_dicts_are_written_the_same(tmp_path: Path) -> None:
    layout = DataLayout(tmp_path)
    report = full_report()
    as_dicts = full_report()
    as_dicts.checks = [c.as_dict() for c in report.outcomes]
    assert as_dicts.to_dict() == report.to_dict()
    as_dicts.write(layout)
    assert RunReport.load(layout, "shop", "orders", "2026-11-28") == report


def test_failure_report(tmp_path: Path) -> None:
    layout = DataLayout(tmp_path)
    report = RunReport("shop", "orders", "current", "run-2", started_at=STARTED)
    assert report.status == "failed"  # until succeed()
    report.fail(RuntimeError("429 after 6 attempts at https://api.example.test/v1/orders"))
    path = report.write(layout)
    raw = orjson.loads(path.read_bytes())
    assert raw["status"] == "failed"
    assert raw["error"].startswith("RuntimeError: 429 after 6 attempts")
    assert raw["finished_at"] is not None
    assert set(REQUIRED_FIELDS) <= set(raw)
    assert [p.name for p in path.parent.iterdir()] == ["current.json"]
