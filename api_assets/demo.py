"""`api-assets demo`: the whole mission end to end against the bundled demo API.

Starts the demo API on a free loopback port, materializes every asset of `sources/demo.yaml`
for today's UTC partition (all checks included) on the persistent instance under
`DAGSTER_HOME`, prints a summary table and exits 0 — or 1 when anything failed.
"""

import os
import subprocess
import sys
import time
from datetime import UTC, datetime

from api_assets.storage.layout import PROJECT_ROOT, DataLayout, ensure_dagster_home

DEMO_SOURCES = PROJECT_ROOT / "sources" / "demo.yaml"


def run_demo(*, ui: bool = False, ui_port: int = 3000) -> int:
    import dagster as dg

    from api_assets.config.loader import load_sources
    from api_assets.definitions import build_definitions
    from api_assets.demo_api import DemoConfig, DemoServer
    from api_assets.pipeline.report import RunReport

    home = ensure_dagster_home()
    os.environ.setdefault("API_ASSETS_SOURCES", str(DEMO_SOURCES))
    sources_file = os.environ["API_ASSETS_SOURCES"]
    layout = DataLayout.from_env()
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    started = time.monotonic()
    config = DemoConfig(products=5000, customers=2000, orders=2000, events=24000)
    with DemoServer(config) as server:
        os.environ["DEMO_API_URL"] = server.url
        # The refresh-token source needs a first refresh token: simulate the user's consent.
        os.environ.setdefault("SHOP_REFRESH_TOKEN", server.consent())
        print(f"demo API on {server.url}; data in {layout.root}; instance in {home}")
        sources = load_sources(sources_file)
        defs = build_definitions(sources, sources_file)
        instance = dg.DagsterInstance.get()
        failed = []
        # Two runs: every daily source for today's partition, then the unpartitioned ones.
        for kind, partition in (("daily", today), ("none", None)):
            groups = [src.name for src in sources if src.partitions.type == kind and src.endpoints]
            if not groups:
                continue
            job = dg.define_asset_job(
                f"demo_{kind}", selection=dg.AssetSelection.groups(*groups)
            ).resolve(asset_graph=defs.resolve_asset_graph())
            result = job.execute_in_process(
                instance=instance,
                partition_key=partition,
                raise_on_error=False,
                resources=defs.resources,
            )
            if not result.success:
                failed.append(kind)
        rows = []
        for source in sources:
            key = today if source.partitions.type == "daily" else "current"
            for endpoint in source.endpoints:
                report = RunReport.load(layout, source.name, endpoint.name, key)
                if report is None:
                    rows.append(
                        [
                            f"{source.name}/{endpoint.name}",
                            "-",
                            "-",
                            "-",
                            "-",
                            "-",
                            "no report",
                            "-",
                        ]
                    )
                    continue
                checks = report.checks
                passed = len(checks) - len(report.failed_checks)
                rows.append(
                    [
                        f"{source.name}/{endpoint.name}",
                        str(report.records if report.status == "success" else report.status),
                        str(report.pages),
                        str(report.requests),
                        str(report.retries),
                        str(report.throttled),
                        f"{passed}/{len(checks)} passed",
                        str(
                            layout.table_path(source.name, endpoint.name, key).relative_to(
                                layout.root
                            )
                        ),
                    ]
                )
        _print_table(
            ["endpoint", "records", "pages", "requests", "retries", "429s", "checks", "table"], rows
        )
        print(
            f"\n{len(rows)} endpoints in {time.monotonic() - started:.1f}s; "
            f"{'all succeeded' if not failed else 'FAILED: ' + ', '.join(failed)}"
        )
        if ui:
            print(f"Dagster UI on http://127.0.0.1:{ui_port} (Ctrl-C to stop)")
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "dagster",
                    "dev",
                    "-w",
                    str(PROJECT_ROOT / "workspace.yaml"),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(ui_port),
                ],
                cwd=PROJECT_ROOT,
            )
            try:
                proc.wait()
            except KeyboardInterrupt:
                proc.wait(timeout=30)
    return 1 if failed else 0


def _print_table(header: list[str], rows: list[list[str]]) -> None:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)
    ]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))
    print(line)
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))
