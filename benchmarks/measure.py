"""Running a measured subprocess: wall time, and peak RSS of its whole process tree (psutil
polling every 20 ms: the sum of the RSS of the process and all its descendants)."""

import json
import os
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
POLL_SECONDS = 0.02


@dataclass
class Measured:
    wall: float  # seconds from spawn to exit
    tree_peak_rss: int  # bytes, polled
    returncode: int
    stdout: str
    stderr: str
    result: dict[str, Any] = field(default_factory=dict)  # the worker's RESULT line, if any


def _tree_rss(proc: psutil.Process) -> int:
    total = 0
    try:
        procs = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def run_measured(
    cmd: list[str],
    *,
    env: dict[str, str] | None = None,
    timeout: float = 900,
    cwd: Path | None = None,
) -> Measured:
    started = time.perf_counter()
    proc = subprocess.Popen(
        cmd,
        cwd=cwd or ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    peak = 0
    stop = threading.Event()

    def poll() -> None:
        nonlocal peak
        try:
            handle = psutil.Process(proc.pid)
        except psutil.Error:
            return
        while not stop.is_set():
            peak = max(peak, _tree_rss(handle))
            stop.wait(POLL_SECONDS)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        stdout, stderr = proc.communicate()
    wall = time.perf_counter() - started
    stop.set()
    poller.join()
    measured = Measured(wall, peak, proc.returncode, stdout, stderr)
    for line in stdout.splitlines():
        if line.startswith("RESULT "):
            measured.result = json.loads(line[len("RESULT ") :])
    return measured


PYCACHE = ROOT / "benchmarks" / "out" / "pycache"


def worker_env() -> dict[str, str]:
    """The environment of every measured process. Bytecode caches are on (in a folder of their
    own, `benchmarks/out/pycache`) even where the machine sets PYTHONDONTWRITEBYTECODE: without
    them every process recompiles Dagster from source, which no installed environment does."""
    env = dict(os.environ)
    extra = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + extra if extra else "")
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
    env.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
    return env


def run_worker(job: dict[str, Any]) -> Measured:
    measured = run_measured(
        [sys.executable, "-m", "benchmarks.worker", json.dumps(job)], env=worker_env()
    )
    if measured.returncode != 0 or not measured.result:
        raise RuntimeError(
            f"benchmark worker {job['contender']} failed (exit {measured.returncode}):\n"
            f"{measured.stderr[-3000:]}"
        )
    return measured


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")
