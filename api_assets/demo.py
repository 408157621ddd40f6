"""`api-assets demo`: the whole mission end to end against the bundled demo API.

Starts the demo API on a free loopback port, materializes every asset of `sources/demo.yaml`
for today's UTC partition (all checks included) on the persistent instance under
`DAGSTER_HOME`, and prints one line per endpoint as it finishes (a live progress line while it
runs, when stdout is a terminal) — then exits 0, or 1 when anything failed. Dagster's event log
goes to `DAGSTER_HOME/logs/demo.log` (the last demo's), or to the terminal with `verbose`.
"""

import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from api_assets.storage.layout import PROJECT_ROOT, DataLayout, ensure_dagster_home

DEMO_SOURCES = PROJECT_ROOT / "sources" / "demo.yaml"
EVENT_LOG_NAME = "demo.log"  # under DAGSTER_HOME/logs/: the last demo's Dagster events
HEADER = ["endpoint", "records", "pages", "requests", "retries", "429s", "checks", "time", "table"]
_WIDTHS = [0, 8, 6, 8, 7, 4, 11, 7]  # the endpoint column is sized from the sources


def run_demo(*, ui: bool = False, ui_port: int = 3000, verbose: bool = False) -> int:
    import dagster as dg

    from api_assets.config.loader import load_sources
    from api_assets.definitions import build_definitions
    from api_assets.demo_api import DemoConfig, DemoServer

    home = ensure_dagster_home()
    os.environ.setdefault("API_ASSETS_SOURCES", str(DEMO_SOURCES))
    sources_file = os.environ["API_ASSETS_SOURCES"]
    layout = DataLayout.from_env()
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    started = time.monotonic()
    log_path = home / "logs" / EVENT_LOG_NAME
    log_path.parent.mkdir(parents=True, exist_ok=True)
    config = DemoConfig(products=5000, customers=2000, orders=2000, events=24000)
    with DemoServer(config) as server, _EventLog(log_path, verbose) as events:
        os.environ["DEMO_API_URL"] = server.url
        # The refresh-token source needs a first refresh token: simulate the user's consent.
        os.environ.setdefault("SHOP_REFRESH_TOKEN", server.consent())
        print(f"demo API on {server.url}; data in {layout.root}; instance in {home}")
        sources = load_sources(sources_file)
        defs = build_definitions(sources, sources_file)
        instance = dg.DagsterInstance.get()
        progress = _ProgressLines(sources, layout, today, sys.stdout)
        events.watcher = progress.on_record
        progress.header()
        failed = []
        # Two runs: every daily source for today's partition, then the unpartitioned ones.
        for kind, partition in (("daily", today), ("none", None)):
            groups = [src.name for src in sources if src.partitions.type == kind and src.endpoints]
            if not groups:
                continue
            job = (
                dg.define_asset_job(f"demo_{kind}", selection=dg.AssetSelection.groups(*groups))
                .resolve(asset_graph=defs.resolve_asset_graph())
                .with_logger_defs({"demo_events": events.logger_def(dg)})
            )
            result = job.execute_in_process(
                run_config={"loggers": {"demo_events": {}}},
                instance=instance,
                partition_key=partition,
                raise_on_error=False,
                resources=defs.resources,
            )
            progress.finish_run(groups, result.run_id)
            if not result.success:
                failed.append(kind)
        for line in progress.errors:
            print(line)
        print(
            f"{progress.count} endpoint{'' if progress.count == 1 else 's'} in {time.monotonic() - started:.1f}s; "
            f"{'all succeeded' if not failed else 'FAILED: ' + ', '.join(failed)}"
        )
        if not verbose:
            print(f"Dagster event log: {log_path} (or run with --verbose)")
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


class _EventLog:
    """Dagster's event log of the demo's runs: into a file (and the terminal when `verbose`),
    each record also shown to `watcher`. Python warnings raised meanwhile go to the file too."""

    def __init__(self, path: Path, verbose: bool):
        self.path, self.verbose = path, verbose
        self.watcher: Any = None
        self.logger = logging.getLogger("api_assets.demo.events")
        self.logger.propagate = False
        self.logger.setLevel(logging.DEBUG)

    def __enter__(self) -> "_EventLog":
        fmt = logging.Formatter("%(asctime)s - %(levelname)s - %(message)s")
        # A stream this class owns, not a FileHandler: `logging.config.dictConfig`, which
        # Dagster and uvicorn may run meanwhile, closes every handler it did not configure.
        self.file = self.path.open("w", encoding="utf-8")
        self.handlers: list[logging.Handler] = [logging.StreamHandler(self.file)]
        if self.verbose:
            self.handlers.append(logging.StreamHandler(sys.stdout))
        for handler in self.handlers:
            handler.setFormatter(fmt)
            self.logger.addHandler(handler)
        self.logger.addHandler(_Watch(self))
        logging.captureWarnings(True)
        warnings_logger = logging.getLogger("py.warnings")
        warnings_logger.propagate = False
        warnings_logger.addHandler(self.handlers[0])
        return self

    def __exit__(self, *exc: object) -> None:
        logging.captureWarnings(False)
        logging.getLogger("py.warnings").removeHandler(self.handlers[0])
        for handler in list(self.logger.handlers):
            self.logger.removeHandler(handler)
            handler.close()
        self.file.close()

    def logger_def(self, dg: Any) -> Any:
        """A Dagster logger definition that writes to this log."""

        @dg.logger
        def demo_events(_init_context: Any) -> logging.Logger:
            # Dagster's start-up may run `logging.config.dictConfig`, which disables the
            # loggers that existed before it.
            self.logger.disabled = False
            return self.logger

        return demo_events


class _Watch(logging.Handler):
    def __init__(self, log: _EventLog):
        super().__init__(logging.DEBUG)
        self.log = log

    def emit(self, record: logging.LogRecord) -> None:
        if self.log.watcher is not None:
            self.log.watcher(record)


class _ProgressLines:
    """One line per endpoint, printed as its step ends; while a step runs, a live line (`\\r`)
    with its latest progress when `out` is a terminal."""

    def __init__(self, sources: Any, layout: DataLayout, today: str, out: IO[str]):
        self.layout, self.out = layout, out
        self.live = out.isatty()
        self.steps: dict[str, tuple[Any, Any, str]] = {}
        for source in sources:
            key = today if source.partitions.type == "daily" else "current"
            for endpoint in source.endpoints:
                self.steps[f"{source.name}__{endpoint.name}"] = (source, endpoint, key)
        names = [f"{s.name}/{e.name}" for s, e, _ in self.steps.values()]
        self.widths = [max([len(HEADER[0]), *map(len, names)]), *_WIDTHS[1:]]
        self.done: set[str] = set()
        self.errors: list[str] = []
        self.count = 0
        self._lock = threading.Lock()

    def header(self) -> None:
        self._print(self._row(HEADER))
        self._print(self._row(["-" * w for w in self.widths] + ["-----"]))

    def on_record(self, record: logging.LogRecord) -> None:
        meta = getattr(record, "dagster_meta", None) or {}
        step = meta.get("step_key")
        if step not in self.steps or step in self.done:
            return
        source, endpoint, _ = self.steps[step]
        event = meta.get("dagster_event")
        kind = event.event_type_value if event is not None else None
        if kind in ("STEP_SUCCESS", "STEP_FAILURE"):
            self._final(step, meta.get("run_id"))
        elif self.live and kind == "STEP_START":
            self._status(f"{source.name}/{endpoint.name}: fetching ...")
        elif self.live and event is None and record.levelno == logging.INFO:
            message = str(meta.get("orig_message") or "")
            if " pages, " in message and "records (" in message:  # the engine's progress line
                self._status(f"{source.name}/{endpoint.name}: {message}")

    def finish_run(self, groups: list[str], run_id: str) -> None:
        """Lines for the endpoints of `groups` whose step never ran (an upstream failed)."""
        for step, (source, _endpoint, _key) in self.steps.items():
            if source.name in groups and step not in self.done:
                self._final(step, run_id)

    def _final(self, step: str, run_id: str | None) -> None:
        from api_assets.pipeline.ingest import pacing_note
        from api_assets.pipeline.report import RunReport

        source, endpoint, key = self.steps[step]
        self.done.add(step)
        self.count += 1
        name = f"{source.name}/{endpoint.name}"
        report = RunReport.load(self.layout, source.name, endpoint.name, key)
        if report is None or report.run_id != run_id:
            self._print(self._row([name, "not run", *["-"] * 7]))
            return
        if report.status != "success":
            self.errors.append(f"{name}: {report.error or report.status}")
        checks = report.checks
        passed = len(checks) - len(report.failed_checks)
        elapsed = report.elapsed_s or 0.0
        table = self.layout.table_path(source.name, endpoint.name, key)
        note = pacing_note(source.rate_limit, report.rate_limit_wait_s, elapsed)
        cells = [
            name,
            str(report.records if report.status == "success" else report.status),
            str(report.pages),
            str(report.requests),
            str(report.retries),
            str(report.throttled),
            f"{passed}/{len(checks)} passed",
            f"{elapsed:.1f}s",
            str(table.relative_to(self.layout.root)) + (f"  {note}" if note else ""),
        ]
        self._print(self._row(cells))

    def _row(self, cells: list[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, self.widths, strict=False)) + (
            "  " + cells[-1] if len(cells) > len(self.widths) else ""
        )

    def _status(self, text: str) -> None:
        width = shutil.get_terminal_size().columns - 1
        with self._lock:
            self.out.write("\r\x1b[K" + text[:width])
            self.out.flush()

    def _print(self, line: str) -> None:
        with self._lock:
            self.out.write(("\r\x1b[K" if self.live else "") + line.rstrip() + "\n")
            self.out.flush()
