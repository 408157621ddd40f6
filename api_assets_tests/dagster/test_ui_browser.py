"""The Dagster UI in a real browser (issue 19): `dg dev` on the demo sources (`sources/demo.yaml`)
against a `DemoServer`, driven by headless Chromium through Playwright, as a user clicks it.

- the global asset graph shows every demo group (one per source);
- a partition of `shop/raw/products` is materialized by clicking: the asset's "Materialize…",
  today's partition typed into the dialog, "Launch 1 run"; the run page is polled to Success;
- the asset's Checks tab lists `completeness` and `page_count_anomaly`, evaluated and passed;
- the asset's metadata Plots show the numeric metadata (`pages`, `requests`, ...).

Chromium is the machine's (Debian's `chromium`, which `.ci/run` installs), never one that
`playwright install` downloads. Without it the test skips locally, and fails when `CI` is set.
Screenshots go to the test's tmp dir and, when `API_ASSETS_SCREENSHOTS=dir` is set, there too
(the README's come from `API_ASSETS_SCREENSHOTS=api_assets_tests/dagster/screenshots`).
"""

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from api_assets.demo_api import DemoServer

from .conftest import PROJECT_ROOT, free_port, stop_process_tree, utc_day

pytestmark = pytest.mark.e2e

DG_BIN = str(Path(sys.executable).with_name("dg"))
DEMO_SOURCES = PROJECT_ROOT / "sources" / "demo.yaml"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",  # root in CI containers
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
RUN_TIMEOUT_MS = 90_000


def require_chromium() -> None:
    if Path(CHROMIUM).exists():
        return
    reason = "no chromium on this machine (`apt-get install chromium`; `.ci/run` does it)"
    if os.environ.get("CI"):
        pytest.fail(f"CI: {reason}")
    pytest.skip(reason)


@pytest.fixture
def dg_dev(tmp_path: Path, server: DemoServer) -> Iterator[str]:
    """`dg dev` on the demo sources, a fresh data dir and `DAGSTER_HOME`, 127.0.0.1 and a free
    port, the code location loaded; stopped with SIGINT, then SIGKILL of its process group."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {
        **os.environ,
        "DEMO_API_URL": server.url,
        "API_ASSETS_SOURCES": str(DEMO_SOURCES),
        "API_ASSETS_DATA_DIR": str(tmp_path / "data"),
        "DAGSTER_HOME": str(home),
        "VIRTUAL_ENV": sys.prefix,  # `dg` runs the project in the environment it came from
    }
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "dg-dev.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [DG_BIN, "dev", "--no-check-yaml", "--host", "127.0.0.1", "--port", str(port)],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_until_loaded(url, proc, log_path)
            yield url
        finally:
            stop_process_tree(proc)


def wait_until_loaded(url: str, proc: subprocess.Popen[bytes], log_path: Path) -> None:
    """The webserver answers and the code location has loaded (it answers before that)."""
    query = (
        "{ workspaceOrError { ... on Workspace { locationEntries {"
        " locationOrLoadError { __typename } } } } }"
    )
    deadline = time.monotonic() + 120
    while True:
        assert proc.poll() is None, log_path.read_text()[-4000:]
        assert time.monotonic() < deadline, "dg dev did not load the code location"
        try:
            body = httpx.post(f"{url}/graphql", json={"query": query}, timeout=5).json()
            entries = body["data"]["workspaceOrError"]["locationEntries"]
            state = entries[0]["locationOrLoadError"]["__typename"] if entries else None
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            state = None
        assert state != "PythonError", log_path.read_text()[-4000:]
        if state == "RepositoryLocation":
            return
        time.sleep(0.5)


def demo_groups() -> list[str]:
    """The demo's asset groups: one per source, named after it."""
    return [s["name"] for s in yaml.safe_load(DEMO_SOURCES.read_text())["sources"]]


def test_the_ui_shows_materializes_and_checks_in_a_browser(dg_dev: str, tmp_path: Path) -> None:
    require_chromium()
    from playwright.sync_api import Page, expect, sync_playwright

    shots = [tmp_path / "screenshots"]
    if os.environ.get("API_ASSETS_SCREENSHOTS"):
        shots.append(Path(os.environ["API_ASSETS_SCREENSHOTS"]))

    def screenshot(page: Page, name: str) -> None:
        for folder in shots:
            folder.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(folder / name))

    today = utc_day(0)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.set_default_timeout(30_000)
            # Dagster's "Join the community" dialog, on a fresh instance: skipped when it shows
            page.add_locator_handler(
                page.get_by_role("button", name="Skip"), lambda skip: skip.click()
            )

            # the asset graph: one group per demo source
            page.goto(f"{dg_dev}/asset-groups")
            expect(page.get_by_text("Global asset lineage")).to_be_visible()
            for group in demo_groups():
                expect(page.get_by_text(group, exact=True).first).to_be_visible()
            expect(page.get_by_text("fetching statuses")).to_have_count(0)
            page.wait_for_timeout(1000)  # the graph's layout settles
            screenshot(page, "asset-graph.png")

            # materialize today's partition of shop/raw/products by clicking
            page.goto(f"{dg_dev}/assets/shop/raw/products")
            page.locator("button", has_text="Materialize").first.click()
            dialog = page.get_by_role("dialog")
            partitions = dialog.locator("input[type=text]").first
            partitions.fill(today)
            partitions.press("Enter")
            expect(dialog.get_by_text("1 partition", exact=True)).to_be_visible()
            dialog.locator("button", has_text="Launch 1 run").click()
            run_link = page.locator("a[href^='/runs/']").first  # the "Launched run" toast
            run_path = run_link.get_attribute("href")
            assert run_path, "no run link after launching"
            page.goto(f"{dg_dev}{run_path}")
            expect(page.get_by_text(f"partition: {today}")).to_be_visible()
            status = page.get_by_text("Success", exact=True).or_(
                page.get_by_text("Failure", exact=True)
            )
            status.first.wait_for(timeout=RUN_TIMEOUT_MS)
            screenshot(page, "run.png")
            expect(page.get_by_text("Success", exact=True).first).to_be_visible()

            # the checks, evaluated on that materialization
            page.goto(f"{dg_dev}/assets/shop/raw/products?view=checks")
            checks = page.get_by_text("Checks (2)")
            expect(checks).to_be_visible()
            for name in ["completeness", "page_count_anomaly"]:
                expect(page.get_by_text(name, exact=True).first).to_be_visible()
            expect(page.get_by_text("Succeeded", exact=True)).to_have_count(2)
            expect(page.get_by_text("Passed", exact=True)).to_be_visible()  # completeness
            expect(page.get_by_text("This is a non-blocking asset check.")).to_be_visible()
            screenshot(page, "check-result.png")

            # the numeric metadata as plots
            page.goto(f"{dg_dev}/assets/shop/raw/products")
            expect(page.get_by_text(today, exact=True).first).to_be_visible()  # latest
            page.locator("button", has_text="Plots").click()
            for key in ["pages", "requests", "fetched", "bytes", "elapsed_seconds"]:
                expect(page.get_by_text(key, exact=True).first).to_be_visible()
            screenshot(page, "plots.png")
        finally:
            browser.close()
