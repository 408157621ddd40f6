"""The scenarios. Each returns plain JSON-able data; `report` turns it into targets and ratios.

Every repetition of every contender runs in a fresh process (imports excluded from the timing of
floor, dlt and engine; the end-to-end timing is the whole `dagster` process). Repetitions are
interleaved (rep 1 of every contender, then rep 2, ..., in a rotating order) so that a slow
minute on a shared machine hurts all contenders alike.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import contenders
from benchmarks.measure import ROOT, run_measured, run_worker, worker_env
from benchmarks.servers import GZIP_LEVEL, PageServer, capacity, prime

THROUGHPUT_CONTENDERS = ("floor", "engine", "e2e", "dlt")
# e2e would run the same engine (and its decoding) inside Dagster's ~3 s of fixed cost, at ~5 s
# a run: 20 s more for a suite already close to its 10-minute budget. `run_one` runs it if added.
GZIP_CONTENDERS = ("floor", "engine")
WARM_UP_RECORDS = 2_000


@dataclass
class Plan:
    quick: bool
    sizes: tuple[int, int]
    reps: int
    latency_ms: float = 20.0
    # Sized so that the whole suite fits in 10 minutes on 2 cores: the 1M-record rows take most
    # of it (dlt alone is over a minute a run). The fan-out target of issue 9 was measured with
    # 2,000 requests (7.6x); 400 give the same ratio in a fifth of the time. The latency sweep
    # keeps 20,000 records: at 10,000 the fixed costs of a run lowered the c=8 / c=1 ratio
    # (5.9x -> 4.7x in two full runs).
    latency_records: int = 20_000
    concurrencies: tuple[int, ...] = (1, 2, 4, 8, 16)
    rate: float = 50.0
    rate_burst: int = 50
    rate_records: int = 20_000
    rate_concurrencies: tuple[int, ...] = (4, 8)  # the default, then a higher one
    child_orders: int = 400
    webhook_seconds: float = 3.0

    @classmethod
    def make(cls, quick: bool, reps: int) -> "Plan":
        if quick:
            return cls(
                quick=True,
                sizes=(10_000, 100_000),
                reps=reps,
                latency_records=10_000,
                rate_records=15_000,
                child_orders=300,
                webhook_seconds=3.0,
            )
        return cls(quick=False, sizes=(100_000, 1_000_000), reps=reps)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def _fresh(work: Path, name: str) -> Path:
    path = work / name
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


# --- throughput and memory at zero latency -----------------------------------------------------


def _run_e2e(url: str, records: int, out: Path, home: Path) -> dict[str, Any]:
    """One `dagster asset materialize`; `home` is the DAGSTER_HOME every e2e run shares (an
    instance exists in practice: the contract forbids an ephemeral one), data dir fresh."""
    sources = out / "sources.yaml"
    sources.write_text(contenders.sources_yaml(url, records))
    home.mkdir(parents=True, exist_ok=True)
    env = worker_env()
    env.update(
        API_ASSETS_SOURCES=str(sources),
        API_ASSETS_DATA_DIR=str(out / "data"),
        DAGSTER_HOME=str(home),
    )
    measured = run_measured(contenders.e2e_command(sys.executable), env=env)
    if measured.returncode != 0:
        raise RuntimeError(f"dagster asset materialize failed:\n{measured.stderr[-3000:]}")
    return {
        "elapsed": measured.wall,
        "wall": measured.wall,
        "peak_rss": measured.tree_peak_rss,
        "records": contenders.e2e_records(out / "data"),
    }


def run_one(name: str, url: str, records: int, out: Path, home: Path) -> dict[str, Any]:
    if name == "e2e":
        return _run_e2e(url, records, out, home)
    measured = run_worker({"contender": name, "url": url, "records": records, "out": str(out)})
    result = dict(measured.result)
    result["wall"] = measured.wall
    # the worker's own high-water mark, or the polled tree if a pool made that larger
    result["peak_rss"] = max(result["peak_rss"], measured.tree_peak_rss)
    return result


def throughput(plan: Plan, work: Path) -> dict[str, Any]:
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {c: {} for c in THROUGHPUT_CONTENDERS}
    home = _fresh(work, "dagster_home")
    with PageServer() as server:
        log(f"zero-latency server at {server.url}; measuring its capacity")
        cap = capacity(server.url, total=max(plan.sizes), seconds=2.0, connections=4)
        log(
            f"server capacity ≥ {cap['pages_per_s']:.0f} pages/s = "
            f"{cap['records_per_s']:.0f} records/s ({cap['mb_per_s']:.0f} MB/s)"
        )
        # One untimed run of each contender first: bytecode caches, page cache, first-use costs.
        warm_up = {}
        for name in THROUGHPUT_CONTENDERS:
            out = _fresh(work, f"warm-up-{name}")
            warm_up[name] = run_one(name, server.url, WARM_UP_RECORDS, out, home)
            shutil.rmtree(out, ignore_errors=True)
            log(
                f"warm-up {name}: {warm_up[name]['elapsed']:.2f} s, peak RSS "
                f"{warm_up[name]['peak_rss'] / 1e6:.0f} MB (time not counted)"
            )
        for size in plan.sizes:
            for rep in range(plan.reps):
                # rotate the order, so that no contender always runs after the same one
                k = rep % len(THROUGHPUT_CONTENDERS)
                for name in THROUGHPUT_CONTENDERS[k:] + THROUGHPUT_CONTENDERS[:k]:
                    out = _fresh(work, f"{name}-{size}-{rep}")
                    result = run_one(name, server.url, size, out, home)
                    shutil.rmtree(out, ignore_errors=True)
                    runs[name].setdefault(str(size), []).append(result)
                    log(
                        f"{name:<6} {size:>9,} rep {rep + 1}: {result['elapsed']:7.2f} s "
                        f"({size / result['elapsed']:>9,.0f} rec/s), peak RSS "
                        f"{result['peak_rss'] / 1e6:7.0f} MB, moved {result['records']:,}"
                    )
    return {"capacity": cap, "runs": runs, "warm_up": warm_up, "warm_up_records": WARM_UP_RECORDS}


# --- throughput against a gzip server ----------------------------------------------------------


def gzip_throughput(plan: Plan, work: Path) -> dict[str, Any]:
    """The zero-latency throughput rows again, at the smaller size, against a server that gzips
    its pages: both contenders decode (httpx inside the floor, `api_assets.decoding` inside the
    engine). The server's page counters are read between runs (never during one) for the
    bytes each run received over the wire and decoded, and to check that every page was gzip."""
    started = time.monotonic()
    size = plan.sizes[0]
    runs: dict[str, list[dict[str, Any]]] = {c: [] for c in GZIP_CONTENDERS}
    home = _fresh(work, "dagster_home_gzip")
    with PageServer(gzip=True) as server:
        log(f"gzip server (level {GZIP_LEVEL}) at {server.url}; priming {size:,} records")
        primed = prime(server.url, size)
        cap = capacity(server.url, total=size, seconds=2.0, connections=4, gzip=True)
        log(
            f"gzip server: {primed['pages']:,} pages compressed and cached in "
            f"{primed['seconds']:.2f} s ({primed['records_per_s']:,.0f} records/s uncached); "
            f"capacity from the cache ≥ {cap['pages_per_s']:.0f} pages/s = "
            f"{cap['records_per_s']:.0f} records/s ({cap['mb_per_s']:.0f} MB/s gzip)"
        )
        warm_up = {}
        for name in GZIP_CONTENDERS:
            out = _fresh(work, f"gzip-warm-up-{name}")
            warm_up[name] = run_one(name, server.url, WARM_UP_RECORDS, out, home)
            shutil.rmtree(out, ignore_errors=True)
            log(f"gzip warm-up {name}: {warm_up[name]['elapsed']:.2f} s (time not counted)")
        for rep in range(plan.reps):
            k = rep % len(GZIP_CONTENDERS)
            for name in GZIP_CONTENDERS[k:] + GZIP_CONTENDERS[:k]:
                out = _fresh(work, f"gzip-{name}-{rep}")
                before = server.stats()
                result = run_one(name, server.url, size, out, home)
                after = server.stats()
                shutil.rmtree(out, ignore_errors=True)
                for key in ("pages", "gzip_pages", "body_bytes_sent", "body_bytes_decoded"):
                    result[key] = after[key] - before[key]
                runs[name].append(result)
                log(
                    f"gzip {name:<6} {size:>9,} rep {rep + 1}: {result['elapsed']:7.2f} s "
                    f"({size / result['elapsed']:>9,.0f} rec/s), {result['gzip_pages']:,} of "
                    f"{result['pages']:,} pages gzip, {result['body_bytes_sent'] / 1e6:.1f} MB "
                    f"sent for {result['body_bytes_decoded'] / 1e6:.1f} MB, "
                    f"moved {result['records']:,}"
                )
        cached = server.stats()["gzip_cached_pages"]
    return {
        "records": size,
        "level": GZIP_LEVEL,
        "primed": primed,
        "capacity": cap,
        "cached_pages": cached,
        "runs": runs,
        "warm_up": warm_up,
        "warm_up_records": WARM_UP_RECORDS,
        "seconds": time.monotonic() - started,  # the scenario's wall time, server start included
    }


# --- latency: concurrency sweep ----------------------------------------------------------------


def latency(plan: Plan, work: Path) -> dict[str, Any]:
    n = plan.latency_records
    out = _fresh(work, "latency")
    with PageServer(latency_ms=plan.latency_ms) as server:
        jobs = []
        for rep in range(plan.reps):
            for c in plan.concurrencies:
                yaml_text = contenders.sources_yaml(server.url, n, max_concurrency=c)
                jobs.append(
                    {
                        "contender": "engine",
                        "url": server.url,
                        "records": n,
                        "out": str(out / f"engine-c{c}-{rep}"),
                        "yaml": yaml_text,
                        "concurrency": c,
                    }
                )
        log(f"latency {plan.latency_ms:.0f} ms, {n:,} records: engine at {plan.concurrencies}")
        engine = run_worker({"contender": "batch", "jobs": jobs, "out": str(out)}).result
        engine_runs: dict[str, list[dict[str, Any]]] = {}
        for job, result in zip(jobs, engine["results"], strict=True):
            engine_runs.setdefault(str(job["concurrency"]), []).append(result)
            log(f"engine c={job['concurrency']:<2}: {result['elapsed']:6.2f} s")
        log("latency: dlt (sequential pages)")
        dlt_jobs = [
            {"contender": "dlt", "url": server.url, "records": n, "out": str(out / f"dlt-{rep}")}
            for rep in range(plan.reps)
        ]
        dlt = run_worker({"contender": "batch", "jobs": dlt_jobs, "out": str(out)}).result
        for result in dlt["results"]:
            log(f"dlt        : {result['elapsed']:6.2f} s")
    shutil.rmtree(out, ignore_errors=True)
    return {
        "records": n,
        "latency_ms": plan.latency_ms,
        "engine": engine_runs,
        "dlt": dlt["results"],
    }


# --- rate-limit fidelity -----------------------------------------------------------------------


def rate_limit(plan: Plan, work: Path) -> dict[str, Any]:
    """The engine against a server limited to `plan.rate`/s, configured with that same rate (and
    the server's burst); at the default max_concurrency (the target) and at a higher one."""
    by_concurrency: dict[str, list[dict[str, Any]]] = {}
    for rep in range(plan.reps):
        for c in plan.rate_concurrencies:
            out = _fresh(work, f"rate-c{c}-{rep}")
            with PageServer(rate=plan.rate, burst=plan.rate_burst) as server:
                yaml_text = contenders.sources_yaml(
                    server.url,
                    plan.rate_records,
                    max_concurrency=c,
                    requests_per_second=plan.rate,
                    burst=plan.rate_burst,
                )
                job = {
                    "contender": "engine",
                    "url": server.url,
                    "records": plan.rate_records,
                    "out": str(out),
                    "yaml": yaml_text,
                }
                result = dict(run_worker(job).result)
                stats = server.stats()
            shutil.rmtree(out, ignore_errors=True)
            times = stats["accepted"]
            span = times[-1] - times[0] if len(times) > 1 else 0.0
            # A bucket that starts full lets a client send `burst` requests at once; the
            # sustained rate is measured after them, from the burst-th accepted request on.
            b = min(plan.rate_burst, len(times) - 2)
            steady = times[-1] - times[b] if b >= 0 else 0.0
            result.update(
                max_concurrency=c,
                server_ok=stats["ok"],
                server_429=stats["refused"],
                span=span,
                achieved=(len(times) - 1) / span if span > 0 else float("nan"),
                sustained=(len(times) - 1 - b) / steady if steady > 0 else float("nan"),
            )
            by_concurrency.setdefault(str(c), []).append(result)
            log(
                f"rate limit {plan.rate:.0f}/s, max_concurrency {c}: {stats['ok']} answered, "
                f"{stats['refused']} × 429, sustained {result['sustained']:.1f}/s "
                f"({result['sustained'] / plan.rate:.0%} of the limit)"
            )
    return {
        "rate": plan.rate,
        "burst": plan.rate_burst,
        "records": plan.rate_records,
        "target_concurrency": plan.rate_concurrencies[0],
        "runs": by_concurrency,
    }


# --- child fan-out (issue 9) -------------------------------------------------------------------


def fan_out(plan: Plan, work: Path) -> dict[str, Any]:
    from api_assets.demo_api import DemoConfig, DemoServer

    out = _fresh(work, "children")
    config = DemoConfig(
        seed=42,
        products=200,
        customers=200,
        orders=plan.child_orders,
        events=0,
        latency_ms=plan.latency_ms,
    )
    with DemoServer(config, process=True) as server:
        ids = sorted(int(i) for i in server.truth("orders")["ids"])
        jobs = [
            {
                "contender": "children",
                "url": server.url,
                "orders": ids,
                "max_concurrency": c,
                "out": str(out / f"c{c}-{rep}"),
            }
            for rep in range(plan.reps)
            for c in (1, 8)
        ]
        log(f"child fan-out: {len(ids):,} detail requests at {plan.latency_ms:.0f} ms, c=1 and 8")
        batch = run_worker({"contender": "batch", "jobs": jobs, "out": str(out)}).result
    shutil.rmtree(out, ignore_errors=True)
    runs: dict[str, list[dict[str, Any]]] = {}
    for job, result in zip(jobs, batch["results"], strict=True):
        runs.setdefault(str(job["max_concurrency"]), []).append(result)
        log(
            f"children c={job['max_concurrency']}: {result['elapsed']:6.2f} s, "
            f"{result['requests']:,} requests, {result['records']:,} lines"
        )
    return {"requests": len(ids), "latency_ms": plan.latency_ms, "runs": runs}


# --- webhooks ----------------------------------------------------------------------------------

WEBHOOKS = Path(__file__).resolve().parent / "webhooks.py"


def webhooks(plan: Plan, work: Path) -> dict[str, Any] | None:
    if not WEBHOOKS.exists():
        log("benchmarks/webhooks.py is absent: webhook throughput skipped")
        return None
    cmd = [sys.executable, str(WEBHOOKS), "--seconds", str(plan.webhook_seconds), "--clients", "20"]
    log("webhooks: " + " ".join(cmd[1:]))
    proc = subprocess.run(
        cmd, cwd=work, env=worker_env(), capture_output=True, text=True, timeout=300
    )
    print(proc.stdout, end="", flush=True)
    result: dict[str, Any] = {"returncode": proc.returncode, "output": proc.stdout}
    for label, key in (("group commit", "per_second"), ("baseline", "baseline_per_second")):
        match = re.search(rf"^{label}[^\n]*?\s([\d.]+) events/s", proc.stdout, re.M)
        if match:
            result[key] = float(match.group(1))
    if proc.returncode != 0:
        result["error"] = proc.stderr[-2000:]
        log(f"webhooks.py exited {proc.returncode}")
    return result


# --- environment -------------------------------------------------------------------------------


def environment() -> dict[str, Any]:
    from importlib.metadata import version

    versions = {}
    for dist in ("dagster", "polars", "httpx", "orjson", "dlt", "pyarrow"):
        try:
            versions[dist] = version(dist)
        except Exception:
            versions[dist] = "absent"

    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=30
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return "?"

    return {
        "commit": git("rev-parse", "--short", "HEAD"),
        "dirty_files": len(git("status", "--porcelain").splitlines()),
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "platform": sys.platform,
        "versions": versions,
        "loadavg_start": os.getloadavg(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "root": str(ROOT),
    }


def save(results: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1, default=str))
