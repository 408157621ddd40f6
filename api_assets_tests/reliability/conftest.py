"""The reliability and security suite: the whole product attacked, through Dagster where it counts.

- `api`: a small demo API anchored at `NOW` (events fill 2026-02-27 .. 2026-03-05 UTC), reset to
  its seeded state for each test; `api_factory(**config)` starts a dedicated one (token
  lifetime, latency, ...).
- `project`: a throwaway project — a sources file and a data root of its own, and the test
  module's `DAGSTER_HOME` holding a persistent SQLite instance (`instance`:
  `dg.instance_for_test(temp_dir=...)`, one per module because creating one costs seconds; a
  module that inspects `DAGSTER_HOME` has it to itself) — with helpers to write
  sources (`source`, `write`), run a source's job through Dagster (`materialize`), run the
  engine alone (`ingest`, the same commit path without Dagster's start-up cost: used for
  baselines) and run `dagster` in a subprocess (`cli`).
- Read-back helpers: `report`, `table`, `table_meta`, `partition_state` (a fingerprint of every
  visible file of a partition), `leftovers`, `assert_readable`, `expected_ids` (ground truth
  from `/admin/truth`), `assert_watermark_not_ahead`, `assert_equals_truth`, `secret_hits`
  (search a tree for secrets: gzip opened, Parquet decoded, SQLite dumped), `serve` (an ASGI
  app on a free port).

`API_ASSETS_EXTENDED=1` turns on the slow variants (every fault in both run modes, more crash
trials, more CLI runs); the normal run keeps a short form of each. See FAULTS.md.
"""

import base64
import contextlib
import gzip
import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import dagster as dg
import orjson
import polars as pl
import pytest
import uvicorn
import yaml

from api_assets.config.loader import load_sources
from api_assets.config.models import SourceConfig
from api_assets.definitions import build_definitions
from api_assets.demo_api import DemoConfig, DemoServer
from api_assets.http.auth import clear_token_caches
from api_assets.http.client import SourceClient
from api_assets.http.ratelimit import clear_limiters
from api_assets.pipeline import ingest as engine
from api_assets.pipeline.watermark import latest_watermark
from api_assets.storage.layout import PROJECT_ROOT, DataLayout
from api_assets.storage.tables import read_table, read_table_metadata

EXTENDED = os.environ.get("API_ASSETS_EXTENDED") == "1"

NOW = "2026-03-05T12:00:00Z"  # the demo's clock: seeded data lies at or before it
P0, P1 = "2026-03-03", "2026-03-04"  # two days that hold events
SOURCE = "shop"

# One endpoint per partition kind, small pages so that every run has several.
ENDPOINTS: dict[str, dict[str, Any]] = {
    "products": {  # snapshot: offset with the total in the body
        "name": "products",
        "path": "/v1/products",
        "records_path": "data",
        "primary_key": "id",
        "paginator": {"type": "offset", "limit": 50, "total_path": "total"},
    },
    "orders": {  # incremental: opaque cursor in the body, by (updated_at, id)
        "name": "orders",
        "path": "/v1/orders",
        "records_path": "data",
        "primary_key": "id",
        "paginator": {
            "type": "cursor",
            "cursor_path": "next_cursor",
            "cursor_param": "cursor",
            "limit_param": "limit",
            "limit": 50,
        },
        "incremental": {
            "cursor_field": "updated_at",
            "param": "updated_since",
            "initial_value": "2026-01-01T00:00:00Z",
            "lookback_seconds": 3600,
            "format": "iso8601",
        },
    },
    "events": {  # window: RFC 8288 Link header, one UTC day per partition
        "name": "events",
        "path": "/v1/events",
        "primary_key": "id",
        "paginator": {"type": "link_header", "params": {"per_page": 50}},
        "window": {"start_param": "since", "end_param": "until", "format": "iso8601"},
    },
    "customers_keyset": {  # keyset on id: the emptiness of a page is its only end signal
        "name": "customers_keyset",
        "path": "/v1/customers/keyset",
        "primary_key": "id",
        "paginator": {
            "type": "keyset",
            "param": "since_id",
            "field": "id",
            "limit_param": "limit",
            "limit": 40,
        },
    },
    "products_feed": {  # next URL in the body
        "name": "products_feed",
        "path": "/v1/products/feed",
        "records_path": "data",
        "primary_key": "id",
        "paginator": {"type": "next_url", "next_path": "next", "params": {"limit": 120}},
    },
}
COLLECTION = {
    "products": "products",
    "orders": "orders",
    "events": "events",
    "customers_keyset": "customers",
    "products_feed": "products",
}
KIND = {"products": "snapshot", "orders": "incremental", "events": "window"}

API_KEY = "demo-key-1"  # the demo API's public key; secrets tests register their own
FAST = {"requests_per_second": 2000, "burst": 200, "max_concurrency": 4}
QUICK_RETRY = {"max_attempts": 4, "max_backoff_seconds": 0.2}


def endpoint(name: str, **changes: Any) -> dict[str, Any]:
    """A copy of `ENDPOINTS[name]`; `paginator=` merges, other keys replace."""
    out = orjson.loads(orjson.dumps(ENDPOINTS[name]))
    if "paginator" in changes:
        out["paginator"] = {**out["paginator"], **changes.pop("paginator")}
    out.update(changes)
    return out


# --- the demo API ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def api_module() -> Iterator[DemoServer]:
    with DemoServer(DemoConfig.small(now=NOW)) as server:
        yield server


@pytest.fixture
def api(api_module: DemoServer) -> DemoServer:
    api_module.reset()
    return api_module


@pytest.fixture
def api_factory() -> Iterator[Callable[..., DemoServer]]:
    servers: list[DemoServer] = []

    def make(**config: Any) -> DemoServer:
        server = DemoServer(DemoConfig.small(**{"now": NOW, **config})).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


@contextlib.contextmanager
def serve(app: Any, *, lifespan: str = "off") -> Iterator[str]:
    """An ASGI app on 127.0.0.1 (a free port) in a uvicorn thread; yields its base URL."""
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_level="error", access_log=False, lifespan=lifespan
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


# --- a project: sources file, data root, Dagster instance -------------------------------------


@dataclass
class Run:
    """One in-process run of a source's job."""

    result: dg.ExecuteInProcessResult

    @property
    def success(self) -> bool:
        return self.result.success

    def failure(self, *, stack: bool = False) -> str:
        """Every step failure: its message and the messages of its causes (and stacks)."""
        out: list[str] = []
        for event in self.result.all_events:
            if not event.is_step_failure:
                continue
            error = event.step_failure_data.error
            while error is not None:
                out.append(error.message)
                if stack:
                    out.extend(error.stack)
                error = error.cause
        return "\n".join(out)

    def materialized(self, *key: str) -> list[dg.AssetMaterialization]:
        wanted = dg.AssetKey(list(key))
        return [
            e.event_specific_data.materialization  # type: ignore[union-attr]
            for e in self.result.get_asset_materialization_events()
            if e.asset_key == wanted
        ]


class Project:
    """A sources file, a data root and a Dagster instance under one temp folder."""

    def __init__(self, root: Path, api: DemoServer | None, instance: dg.DagsterInstance):
        self.root = root
        self.api = api
        self.instance = instance
        self.home = Path(instance.root_directory)
        self.data = root / "data"
        self.sources_file = root / "sources.yaml"
        self.layout = DataLayout(self.data)

    # sources

    def source(
        self,
        *endpoints: dict[str, Any] | str,
        name: str = SOURCE,
        base_url: str | None = None,
        auth: dict[str, Any] | None = None,
        partitions: dict[str, Any] | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """A source dict on the demo API (endpoints by name or as dicts)."""
        url = base_url or (self.api.url if self.api is not None else "http://127.0.0.1:9")
        return {
            "name": name,
            "base_url": url,
            "auth": auth or {"type": "api_key", "name": "X-API-Key", "value": "${SHOP_KEY}"},
            "rate_limit": extra.pop("rate_limit", FAST),
            "retry": extra.pop("retry", QUICK_RETRY),
            "timeout_seconds": extra.pop("timeout_seconds", 10),
            "partitions": partitions or {"type": "daily", "start": "2026-01-01"},
            "endpoints": [endpoint(e) if isinstance(e, str) else e for e in endpoints],
            **extra,
        }

    def write(self, *sources: dict[str, Any]) -> None:
        self.sources_file.write_text(yaml.safe_dump({"sources": list(sources)}, sort_keys=False))

    def config(self, name: str = SOURCE) -> SourceConfig:
        return next(s for s in load_sources(self.sources_file) if s.name == name)

    # running

    def materialize(self, partition: str | None, source: str = SOURCE) -> Run:
        """The source's job, in process, on the persistent instance (what a schedule runs)."""
        clear_limiters()
        clear_token_caches()
        defs = build_definitions(load_sources(self.sources_file), str(self.sources_file))
        job = defs.resolve_job_def(f"{source}_job")
        result = job.execute_in_process(
            instance=self.instance, partition_key=partition, raise_on_error=False
        )
        return Run(result)

    def materialize_all(self, partition: str | None = None) -> Run:
        """Every asset of every source in one in-process run (same partitioning assumed)."""
        clear_limiters()
        clear_token_caches()
        defs = build_definitions(load_sources(self.sources_file), str(self.sources_file))
        job = dg.define_asset_job("everything", selection=dg.AssetSelection.all()).resolve(
            asset_graph=defs.resolve_asset_graph()
        )
        result = job.execute_in_process(
            instance=self.instance,
            partition_key=partition,
            raise_on_error=False,
            resources=defs.resources,
        )
        return Run(result)

    def ingest(self, name: str, partition: str, source: str = SOURCE) -> engine.IngestResult:
        """The engine alone (same commit path, no Dagster): baselines and recovery runs."""
        config = self.config(source)
        ep = config.endpoint(name)
        client = SourceClient(config, credential_dir=self.home / "credentials")
        try:
            return engine.ingest(
                config,
                ep,
                partition,
                layout=self.layout,
                window=window(ep.window, partition),
                client=client,
            )
        finally:
            client.close()

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of a subprocess running against this project."""
        return {
            **os.environ,
            "API_ASSETS_SOURCES": str(self.sources_file),
            "API_ASSETS_DATA_DIR": str(self.data),
            "DAGSTER_HOME": str(self.home),
            "PYTHONUNBUFFERED": "1",
            **extra,
        }

    def cli(self, *args: str, timeout: float = 240, **env: str) -> subprocess.CompletedProcess[str]:
        """`dagster ARGS` in a subprocess (its own session, killed whole on a timeout)."""
        proc = subprocess.Popen(
            [dagster_bin(), *args],
            cwd=PROJECT_ROOT,
            env=self.env(**env),
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
            raise AssertionError(f"dagster {' '.join(args)} timed out:\n{err[-3000:]}") from None
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)

    # reading back

    def report(self, name: str, partition: str, source: str = SOURCE) -> dict[str, Any] | None:
        return report(self.layout, source, name, partition)

    def table(self, name: str, partition: str, source: str = SOURCE) -> pl.DataFrame | None:
        return table(self.layout, source, name, partition)

    def table_meta(self, name: str, partition: str, source: str = SOURCE) -> dict[str, Any]:
        return table_meta(self.layout, source, name, partition)

    def state(self, name: str, partition: str, source: str = SOURCE) -> dict[str, str]:
        return partition_state(self.layout, source, name, partition)

    def latest_watermark(self, name: str, source: str = SOURCE) -> Any:
        config = self.config(source)
        return latest_watermark(self.layout, config, config.endpoint(name))


def dagster_bin() -> str:
    return str(Path(sys.executable).with_name("dagster"))


@pytest.fixture(scope="module")
def instance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dg.DagsterInstance]:
    """One persistent SQLite instance per test module (creating one costs a second or two);
    every test still has its own data root, so runs only share Dagster's history."""
    home = tmp_path_factory.mktemp("dagster_home")
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    with dg.instance_for_test(temp_dir=str(home)) as inst:
        yield inst


@pytest.fixture
def project(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, api: DemoServer, instance: dg.DagsterInstance
) -> Iterator[Project]:
    """A fresh project (sources file, data root) on the `api` demo server."""
    monkeypatch.setenv("API_ASSETS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("API_ASSETS_SOURCES", str(tmp_path / "sources.yaml"))
    monkeypatch.setenv("DAGSTER_HOME", instance.root_directory)
    monkeypatch.setenv("SHOP_KEY", API_KEY)
    clear_limiters()
    clear_token_caches()
    yield Project(tmp_path, api, instance)
    clear_limiters()
    clear_token_caches()


# --- reading what was committed ----------------------------------------------------------------


def window(spec: Any, partition: str) -> tuple[datetime, datetime] | None:
    """The UTC day of a daily partition key, when the endpoint has a `window:`."""
    if spec is None:
        return None
    start = datetime.fromisoformat(f"{partition}T00:00:00+00:00")
    return start, start + timedelta(days=1)


def report(layout: DataLayout, source: str, name: str, partition: str) -> dict[str, Any] | None:
    path = layout.report_path(source, name, partition)
    return orjson.loads(path.read_bytes()) if path.exists() else None


def table(layout: DataLayout, source: str, name: str, partition: str) -> pl.DataFrame | None:
    path = layout.table_path(source, name, partition)
    return pl.read_parquet(path) if path.exists() else None


def table_meta(layout: DataLayout, source: str, name: str, partition: str) -> dict[str, Any]:
    path = layout.table_path(source, name, partition)
    return read_table_metadata(path) if path.exists() else {}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def partition_state(layout: DataLayout, source: str, name: str, partition: str) -> dict[str, str]:
    """sha256 of every visible file of one partition (archive, table, schema): what a reader
    could see. Empty when nothing was ever committed."""
    files: list[Path] = []
    raw = layout.raw_dir(source, name, partition)
    if raw.is_dir():
        files.extend(p for p in raw.iterdir() if not p.name.startswith("."))
    for path in (
        layout.table_path(source, name, partition),
        layout.schema_path(source, name, partition),
    ):
        if path.exists():
            files.append(path)
    return {str(p.relative_to(layout.root)): _sha(p) for p in sorted(files)}


def leftovers(layout: DataLayout) -> list[Path]:
    """Temp files and directories (of a run that was killed, or a bug) under the data root."""
    if not layout.root.exists():
        return []
    return sorted(
        p
        for p in layout.root.rglob("*")
        if ".tmp" in p.name or ".old-" in p.name or p.name.endswith(".partial")
    )


def visible_leftovers(layout: DataLayout) -> list[Path]:
    """Leftovers a reader could mistake for data: any not hidden behind a leading dot."""
    return [p for p in leftovers(layout) if not p.name.startswith(".")]


def assert_readable(layout: DataLayout, source: str, name: str) -> pl.DataFrame | None:
    """Every visible file of `S/E` opens, each table says which partition it is, and
    `read_table` reads the union; returns the union (None when nothing is committed)."""
    directory = layout.table_dir(source, name)
    files = sorted(directory.glob("*.parquet")) if directory.is_dir() else []
    for path in files:
        meta = read_table_metadata(path)
        assert meta.get("partition") == path.stem, f"{path}: metadata {meta}"
        pl.read_parquet(path)
    for kind in ("schemas", "reports"):
        folder = layout.root / kind / source / name
        for path in folder.glob("*.json") if folder.is_dir() else []:
            orjson.loads(path.read_bytes())
    raw = layout.root / "raw" / source / name
    for part in raw.iterdir() if raw.is_dir() else []:
        if part.name.startswith("."):
            continue
        manifest = [orjson.loads(x) for x in (part / "manifest.jsonl").read_bytes().splitlines()]
        for entry in manifest:
            data = (part / entry["file"]).read_bytes()
            member = data[entry["offset"] : entry["offset"] + entry["length"]]
            body = gzip.decompress(member)
            assert hashlib.sha256(body).hexdigest() == entry["sha256"], part / entry["file"]
    if not files:
        return None
    return read_table(source, name, data_dir=layout.root).collect()


# --- ground truth ------------------------------------------------------------------------------


def expected_ids(
    api: DemoServer, name: str, partition: str, watermark_before: Any = None
) -> set[Any]:
    """The ids a complete run of `name` for `partition` must hold, from `/admin/truth`:
    snapshot the whole collection, window the day's events, incremental every record (and
    tombstone) updated since the lower bound the run sent."""
    collection = COLLECTION[name]
    if name == "events":
        since = f"{partition}T00:00:00Z"
        until = (datetime.fromisoformat(partition) + timedelta(days=1)).strftime(
            "%Y-%m-%dT00:00:00Z"
        )
        return set(api.truth(collection, since=since, until=until)["ids"])
    if name == "orders":
        inc = ENDPOINTS["orders"]["incremental"]
        wm = watermark_before if watermark_before is not None else inc["initial_value"]
        bound = datetime.fromisoformat(wm.replace("Z", "+00:00")) - timedelta(
            seconds=inc["lookback_seconds"]
        )
        truth = api.truth(collection, updated_since=bound.strftime("%Y-%m-%dT%H:%M:%SZ"))
        return set(truth["ids"]) | set(truth["tombstones"])
    return set(api.truth(collection)["ids"])


def fired(api: DemoServer) -> int:
    """How many times the faults in force fired."""
    return sum(int(f["fired"]) for f in api.faults())


# --- after a crash -------------------------------------------------------------------------


def assert_watermark_not_ahead(project: Project, name: str) -> None:
    """Each committed table's watermark is the newest cursor value it holds (or, holding
    none, the watermark it started from); the latest watermark is the newest of those."""
    files = sorted(project.layout.table_dir(SOURCE, name).glob("*.parquet"))
    newest: list[str] = []
    for path in files:
        meta = read_table_metadata(path)
        df = pl.read_parquet(path)
        cursors = [v for v in df["updated_at"].to_list() if v is not None] if df.height else []
        if cursors:
            assert meta["watermark_after"] == max(cursors), (path, meta)
            newest.append(max(cursors))
        else:
            assert meta["watermark_after"] == meta["watermark_before"], (path, meta)
    latest = project.latest_watermark(name)
    if newest:
        assert latest == max(newest)


def assert_equals_truth(
    project: Project, api: DemoServer, name: str, partition: str, started_from: Any
) -> None:
    df = project.table(name, partition)
    assert df is not None
    ids = df["id"].to_list()
    assert len(ids) == len(set(ids))
    if name != "orders":
        assert set(ids) == expected_ids(api, name, partition)
        return
    assert set(ids) == expected_ids(api, name, partition, started_from)
    # across partitions, the newest row per id is the record as it is now
    truth = api.truth("orders", updated_since="2025-12-31T23:00:00Z")
    current = read_table(SOURCE, "orders", current=True, data_dir=project.data).collect()
    if "deleted" not in current.columns:  # no tombstone fetched yet
        current = current.with_columns(pl.lit(None, dtype=pl.Boolean).alias("deleted"))
    rows = {r["id"]: r for r in current.select("id", "updated_at", "deleted").to_dicts()}
    assert set(rows) == set(truth["ids"]) | set(truth["tombstones"])
    for oid, updated in truth["updated_at"].items():
        assert rows[int(oid)]["updated_at"] == updated and not rows[int(oid)]["deleted"]
    for oid in truth["tombstones"]:
        assert rows[oid]["deleted"]


# --- secrets ---------------------------------------------------------------------------------


def secret_forms(secret: str) -> set[bytes]:
    """A secret as it could appear in a file: raw, URL-encoded, base64, JSON-escaped."""
    forms = {
        secret,
        quote(secret, safe=""),
        quote_plus(secret, safe=""),
        base64.b64encode(secret.encode()).decode(),
        base64.urlsafe_b64encode(secret.encode()).decode().rstrip("="),
        orjson.dumps(secret).decode()[1:-1],
    }
    return {f.encode() for f in forms if len(f) >= 6}


def readable_text(path: Path) -> bytes:
    """A file's bytes as a reader would get them: gzip opened, Parquet decoded (data and
    key-value metadata), SQLite dumped; other files as they are."""
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        try:
            data += gzip.decompress(data)
        except (OSError, EOFError):
            pass
    if path.suffix == ".parquet" or data[:4] == b"PAR1":
        try:
            frame = pl.read_parquet(path)
            data += frame.write_csv().encode()
            data += orjson.dumps(pl.read_parquet_metadata(path), default=str)
        except Exception:
            pass
    if data[:16] == b"SQLite format 3\x00":
        try:
            with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
                data += "\n".join(db.iterdump()).encode()
        except sqlite3.Error:
            pass
    return data


def secret_hits(
    roots: Iterable[Path], secrets: dict[str, str], *, skip: Callable[[Path], bool] | None = None
) -> list[str]:
    """`file: label` for every secret (any of its forms) found in any file under `roots`."""
    forms = {label: secret_forms(value) for label, value in secrets.items()}
    hits: list[str] = []
    for root in roots:
        files = [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file()]
        for path in files:
            if skip is not None and skip(path):
                continue
            text = readable_text(path)
            for label, variants in forms.items():
                if any(v in text for v in variants):
                    hits.append(f"{path}: {label}")
    return hits


def text_hits(texts: dict[str, str], secrets: dict[str, str]) -> list[str]:
    """`where: label` for every secret found in captured texts (stdout, errors, ...)."""
    hits = []
    for where, text in texts.items():
        blob = text.encode()
        for label, value in secrets.items():
            if any(v in blob for v in secret_forms(value)):
                hits.append(f"{where}: {label}")
    return hits
