"""The process the kill -9 trials kill: `python -m api_assets_tests.reliability.crash_worker`.

It imports the engine once and then serves trials from stdin, one JSON line each:

    {"sources": PATH, "data": DIR, "endpoint": NAME, "partition": KEY,
     "kill": [LABEL, N, "before" | "after"] | null, "trace": PATH | null}

For each trial it forks a child that runs `engine.ingest` (the same commit path as the Dagster
asset) and answers `PID <pid>` at once, then `EXIT <pid> <status>` when the child is gone
(`status` is the signal number, negated, for a killed child). The test kills the child with
SIGKILL at a moment of its choosing, or the child kills itself with SIGKILL when it reaches
the N-th step labelled LABEL of the commit path (before or after the step runs): `page` (a
page archived), `fsync`, `swap` (the archive directory renamed or exchanged into place),
`rmtree`, `write_parquet`, `replace` (an atomic file replacement: schema, table, report).
`trace` names a file that receives every step as it happens.

Forking after the imports keeps a trial at tens of milliseconds instead of a Python start-up.
"""

import json
import os
import shutil
import signal
import sys
import threading
import traceback
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl

from api_assets.config.loader import load_sources
from api_assets.http.client import SourceClient
from api_assets.pipeline import ingest as engine
from api_assets.storage import archive
from api_assets.storage.layout import DataLayout


def _install_hooks(kill: list[Any] | None, trace: str | None) -> None:
    counts: dict[str, int] = {}
    lock = threading.Lock()
    log = open(trace, "a", buffering=1) if trace else None  # noqa: SIM115 (lives until exit)

    def step(label: str, when: str) -> None:
        with lock:
            if when == "before":
                counts[label] = counts.get(label, 0) + 1
            n = counts.get(label, 0)
            if log is not None:
                log.write(f"{label} {n} {when}\n")
            if kill is not None and kill[0] == label and kill[1] == n and kill[2] == when:
                os.kill(os.getpid(), signal.SIGKILL)

    def hook(owner: Any, attr: str, label: str) -> None:
        real = getattr(owner, attr)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            step(label, "before")
            out = real(*args, **kwargs)
            step(label, "after")
            return out

        setattr(owner, attr, wrapper)

    hook(archive.ArchiveWriter, "write", "page")
    hook(os, "fsync", "fsync")
    hook(os, "rename", "swap")
    hook(archive, "exchange", "swap")
    hook(shutil, "rmtree", "rmtree")
    hook(pl.DataFrame, "write_parquet", "write_parquet")
    hook(os, "replace", "replace")


def _child(spec: dict[str, Any]) -> int:
    _install_hooks(spec.get("kill"), spec.get("trace"))
    config = next(iter(load_sources(spec["sources"])))
    ep = config.endpoint(spec["endpoint"])
    window = None
    if ep.window is not None:
        start = datetime.fromisoformat(spec["partition"]).replace(tzinfo=UTC)
        window = (start, start + timedelta(days=1))
    client = SourceClient(config)
    try:
        engine.ingest(
            config,
            ep,
            spec["partition"],
            layout=DataLayout(Path(spec["data"])),
            window=window,
            client=client,
        )
    except Exception:
        traceback.print_exc()
        return 3
    finally:
        client.close()
    return 0


def main() -> None:
    print("READY", flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        spec = json.loads(line)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = _child(spec)
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        print(f"PID {pid}", flush=True)
        _, status = os.waitpid(pid, 0)
        code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        print(f"EXIT {pid} {code}", flush=True)


if __name__ == "__main__":
    main()
