"""`api-assets demo` as a newcomer sees it: a short terminal (one line per endpoint), Dagster's
event log in a file (or on the terminal with `--verbose`), and a CLI whose every option states
its default."""

import argparse
import io
import logging
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from api_assets.cli import _parser
from api_assets.config.loader import load_sources
from api_assets.config.models import RateLimitConfig
from api_assets.demo import _ProgressLines
from api_assets.pipeline.ingest import pacing_note
from api_assets.storage.layout import DataLayout

# A small sources file for the `--verbose` run (the full demo runs once, without it): one
# paginated endpoint paced by its own rate limit, so that the line says so.
PACED_SOURCES = """sources:
  - name: paced
    base_url: ${DEMO_API_URL:-http://127.0.0.1:8765}
    auth: {type: api_key, name: X-API-Key, value: demo-key-1, location: header}
    rate_limit: {requests_per_second: 4, burst: 1, max_concurrency: 1}
    partitions: {type: none}
    endpoints:
      - name: products
        path: /v1/products
        records_path: data
        primary_key: id
        paginator: {type: offset, limit: 500, total_path: total}
"""


def run_demo(
    tmp: Path, *args: str, sources: Path | None = None
) -> subprocess.CompletedProcess[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("API_ASSETS_SOURCES", "SHOP_REFRESH_TOKEN", "DEMO_API_URL")
    }
    env.update(DAGSTER_HOME=str(tmp / "home"), API_ASSETS_DATA_DIR=str(tmp / "data"))
    if sources is not None:
        env["API_ASSETS_SOURCES"] = str(sources)
    return subprocess.run(
        [sys.executable, "-m", "api_assets.cli", "demo", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path]:
    tmp = tmp_path_factory.mktemp("demo")
    return run_demo(tmp), tmp


@pytest.mark.e2e
def test_the_demo_prints_one_line_per_endpoint_and_logs_events_to_a_file(
    demo: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    proc, tmp = demo
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) <= 30, proc.stdout
    assert proc.stderr.strip() == "", proc.stderr
    assert "\r" not in proc.stdout  # not a terminal: plain lines
    assert "STEP_START" not in proc.stdout and "DEBUG" not in proc.stdout
    rows = [line for line in lines if line.startswith("shop")]
    names = [row.split()[0] for row in rows]
    assert len(names) == len(set(names)) >= 10, proc.stdout  # one line each
    for row in rows:
        passed, of = row.split()[6].split("/")  # "3/3 passed": every check of the endpoint
        assert passed == of and row.split()[7] == "passed", row
    assert "all succeeded" in lines[-2]
    log = tmp / "home" / "logs" / "demo.log"
    assert lines[-1] == f"Dagster event log: {log} (or run with --verbose)"
    events = log.read_text()
    assert events.count("STEP_START") == len(names)
    assert "RUN_SUCCESS" in events and "ASSET_CHECK_EVALUATION" in events


@pytest.mark.e2e
def test_verbose_shows_the_event_log_and_pacing_by_the_rate_limit(tmp_path: Path) -> None:
    sources = tmp_path / "paced.yaml"
    sources.write_text(PACED_SOURCES)
    proc = run_demo(tmp_path, "--verbose", sources=sources)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "STEP_START" in proc.stdout and "RUN_SUCCESS" in proc.stdout
    assert "Dagster event log:" not in proc.stdout
    (row,) = [line for line in proc.stdout.splitlines() if line.startswith("paced/products")]
    assert "5000" in row and "paced by rate_limit 4 req/s" in row, row
    assert "STEP_START" in (tmp_path / "home" / "logs" / "demo.log").read_text()


def test_version() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "api_assets.cli", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0
    assert proc.stdout.strip() == "api-assets 0.1.0" or proc.stdout.startswith("api-assets ")
    assert proc.stdout.split()[1][0].isdigit()


def _options(parser: argparse.ArgumentParser, path: str) -> list[tuple[str, argparse.Action]]:
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += _options(sub, f"{path} {name}")
        elif not isinstance(action, argparse._HelpAction | argparse._VersionAction):
            found.append((f"{path} {action.dest}", action))
    return found


def test_every_option_states_its_default() -> None:
    options = _options(_parser(), "api-assets")
    assert len(options) >= 15
    for name, action in options:
        shown = (action.help or "") % {"default": action.default, "prog": "api-assets"}
        assert "default" in shown, f"{name}: {shown!r}"
    help_text = _parser().format_help()
    assert "CONTRACT" not in help_text and "§" not in help_text


def test_pacing_note_names_the_rate_and_the_key() -> None:
    default = RateLimitConfig()
    note = pacing_note(default, waited_s=6.0, elapsed_s=10.0)
    assert note == (
        "paced by rate_limit 10 req/s (the default; raise rate_limit.requests_per_second)"
    )
    assert pacing_note(default, waited_s=1.0, elapsed_s=10.0) is None  # the API paced it
    assert pacing_note(default, waited_s=0.5, elapsed_s=0.6) is None  # too short to matter
    set_here = RateLimitConfig(requests_per_second=2.5)
    assert pacing_note(set_here, 5.0, 10.0) == (
        "paced by rate_limit 2.5 req/s (raise rate_limit.requests_per_second)"
    )


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_the_running_endpoint_has_a_live_line(tmp_path: Path) -> None:
    sources = tmp_path / "paced.yaml"
    sources.write_text(PACED_SOURCES)
    out = _Terminal()
    lines = _ProgressLines(load_sources(sources), DataLayout(tmp_path), "2026-12-01", out)
    lines.header()

    def record(message: str, event: str | None) -> logging.LogRecord:
        meta = {
            "step_key": "paced__products",
            "run_id": "r1",
            "orig_message": message,
            "dagster_event": SimpleNamespace(event_type_value=event) if event else None,
        }
        rec = logging.LogRecord("x", logging.INFO, "", 0, message, None, None)
        rec.dagster_meta = meta
        return rec

    lines.on_record(record("", "STEP_START"))
    lines.on_record(record("4 pages, 2000 records (800/s), 0 retries, 0 throttled, ETA 4s", None))
    lines.on_record(record("", "STEP_FAILURE"))  # no report of this run: "not run"
    shown = out.getvalue()
    assert "\r\x1b[Kpaced/products: fetching ..." in shown
    assert "\r\x1b[Kpaced/products: 4 pages, 2000 records (800/s)" in shown
    # the final line overwrites the live one
    assert shown.endswith("\r\x1b[K" + lines._row(["paced/products", "not run", *["-"] * 7]) + "\n")
    assert lines.count == 1
