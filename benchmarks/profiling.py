"""Where the time goes: cProfile of the engine alone and of the end-to-end Dagster path, plus the
phases of a `dagster asset materialize` run read from its event log.

    uv run --group bench python -m benchmarks --profile [--records 100000]

Writes `benchmarks/PROFILE.md` (and the raw `.prof` files under `benchmarks/out/`, open them
with `python -m pstats` or snakeviz). The end-to-end profile runs the same job in one process
(`benchmarks.inprocess`: `execute_in_process`, whatever executor the definitions configure), so
that imports, definitions, instance, run and step are all in the profiled process; the phase
timeline compares it with the real CLI run.
"""

import cProfile
import io
import os
import pstats
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks import contenders
from benchmarks.measure import ROOT, run_measured, worker_env
from benchmarks.servers import PageServer
from benchmarks.suite import log

OUT = Path(__file__).resolve().parent / "out"


def _in_process_command() -> list[str]:
    """`dagster asset materialize`'s arguments, run by `benchmarks.inprocess` in one process."""
    cmd = contenders.e2e_command(sys.executable)
    return ["-m", "benchmarks.inprocess", cmd[cmd.index("--select") + 1], contenders.today()]


def _top(stats_path: Path, sort: str, limit: int, only: str | None = None) -> str:
    buffer = io.StringIO()
    stats = pstats.Stats(str(stats_path), stream=buffer)
    stats.sort_stats(sort)
    if only:
        stats.print_stats(only, limit)
    else:
        stats.print_stats(limit)
    text = buffer.getvalue()
    # keep the table only, with paths shortened to the package
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.lstrip().startswith("ncalls")), 0)
    site = str(ROOT / ".venv" / "lib")
    out = []
    for line in lines[start:]:
        line = line.replace(str(ROOT) + "/", "").replace(site, "…")
        if line.strip():
            out.append(line)
    return "\n".join(out)


def profile_engine(url: str, records: int, work: Path) -> tuple[Path, float]:
    """`ingest` under cProfile with max_concurrency 1, so that every request runs in the profiled
    thread (cProfile sees one thread); imports and first-use costs paid before."""
    out = work / "engine"
    shutil.rmtree(out, ignore_errors=True)
    (out / "warm-up").mkdir(parents=True)
    contenders.run_engine(url, 2_000, out / "warm-up")
    yaml_text = contenders.sources_yaml(url, records, max_concurrency=1)
    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.enable()
    result = contenders.run_engine(url, records, out, yaml_text=yaml_text)
    profiler.disable()
    wall = time.perf_counter() - started
    path = OUT / "engine.prof"
    profiler.dump_stats(str(path))
    assert result["records"] == records, result
    return path, wall


def _e2e_env(url: str, records: int, out: Path) -> dict[str, str]:
    """A fresh data dir; one DAGSTER_HOME shared by every e2e run (as in the suite)."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    home = out.parent / "dagster_home"
    home.mkdir(exist_ok=True)
    (out / "sources.yaml").write_text(contenders.sources_yaml(url, records))
    env = worker_env()
    env.update(
        API_ASSETS_SOURCES=str(out / "sources.yaml"),
        API_ASSETS_DATA_DIR=str(out / "data"),
        DAGSTER_HOME=str(home),
    )
    return env


def profile_e2e(url: str, records: int, work: Path) -> tuple[Path, float]:
    """The job in one process under cProfile: start-up, definitions, instance, run and step."""
    out = work / "e2e-profile"
    env = _e2e_env(url, records, out)
    path = OUT / "e2e_in_process.prof"
    cmd = [sys.executable, "-m", "cProfile", "-o", str(path), *_in_process_command()]
    measured = run_measured(cmd, env=env)
    if measured.returncode != 0:
        raise RuntimeError(measured.stderr[-3000:])
    assert contenders.e2e_records(out / "data") == records
    return path, measured.wall


def e2e_phases(url: str, records: int, work: Path, in_process: bool) -> dict[str, Any]:
    """One e2e run (not profiled); its phases from the run's event log (time.time() based)."""
    out = work / ("e2e-inproc" if in_process else "e2e-default")
    env = _e2e_env(url, records, out)
    cmd = (
        [sys.executable, *_in_process_command()]
        if in_process
        else contenders.e2e_command(sys.executable)
    )
    spawned = time.time()
    measured = run_measured(cmd, env=env)
    ended = spawned + measured.wall
    if measured.returncode != 0:
        raise RuntimeError(measured.stderr[-3000:])
    marks = _event_times(out.parent / "dagster_home")
    phases: dict[str, Any] = {
        "steps ran in": "a subprocess" if "STEP_WORKER_STARTING" in marks else "the CLI process",
        "total (process spawn → exit)": measured.wall,
    }
    order = [
        ("process start, imports, definitions load", spawned, marks.get("RUN_START")),
        (
            "run start → step worker starting",
            marks.get("RUN_START"),
            marks.get("STEP_WORKER_STARTING"),
        ),
        (
            "step process start (the executor's subprocess: spawn or forkserver + preload)",
            marks.get("STEP_WORKER_STARTING"),
            marks.get("STEP_WORKER_STARTED"),
        ),
        (
            "resources + step set-up",
            marks.get("STEP_WORKER_STARTED") or marks.get("RUN_START"),
            marks.get("STEP_START"),
        ),
        ("step: engine + metadata + checks", marks.get("STEP_START"), marks.get("STEP_SUCCESS")),
        ("step end → run success", marks.get("STEP_SUCCESS"), marks.get("RUN_SUCCESS")),
        ("run success → process exit", marks.get("RUN_SUCCESS"), ended),
    ]
    for label, a, b in order:
        if a is not None and b is not None:
            phases[label] = b - a
    return {"phases": phases, "peak_rss": measured.tree_peak_rss}


def _event_times(home: Path) -> dict[str, float]:
    """First timestamp of each event type of the latest run in a DAGSTER_HOME."""
    os.environ["DAGSTER_HOME"] = str(home)
    import dagster as dg

    with dg.DagsterInstance.get() as instance:
        runs = instance.get_runs(limit=1)
        marks: dict[str, float] = {}
        for entry in instance.all_logs(runs[0].run_id):
            if entry.dagster_event is None:
                continue
            marks.setdefault(entry.dagster_event.event_type.name, entry.timestamp)
    return marks


def import_seconds() -> dict[str, float]:
    out = {}
    for module in ("dagster", "api_assets.pipeline.ingest", "api_assets.definitions"):
        code = (
            f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
        )
        env = worker_env()
        env["API_ASSETS_SOURCES"] = str(ROOT / "sources")
        measured = run_measured([sys.executable, "-c", code], env=env)
        out[module] = float(measured.stdout.strip().splitlines()[-1])
    return out


def run(records: int, work: Path) -> str:
    OUT.mkdir(parents=True, exist_ok=True)
    with PageServer() as server:
        log(f"profiling the engine on {records:,} records")
        engine_prof, engine_wall = profile_engine(server.url, records, work)
        log("e2e warm-up run (bytecode caches)")
        e2e_phases(server.url, 2_000, work, in_process=False)
        log("profiling the e2e path in one process (benchmarks.inprocess under cProfile)")
        e2e_prof, e2e_wall = profile_e2e(server.url, records, work)
        log("e2e phases, `dagster asset materialize`")
        default = e2e_phases(server.url, records, work, in_process=False)
        log("e2e phases, the same job in process")
        inproc = e2e_phases(server.url, records, work, in_process=True)
    log("import times")
    imports = import_seconds()
    shutil.rmtree(work, ignore_errors=True)

    parts = [
        "# Profiles",
        "",
        f"Generated by `uv run --group bench python -m benchmarks --profile --records {records}` "
        f"on {time.strftime('%Y-%m-%d %H:%M:%S %Z')}, load average "
        f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}, {os.cpu_count()} CPUs. "
        "cProfile slows Python-heavy code more than native code: read shares, not seconds.",
        "",
        "## End-to-end phases (one run each, no profiler)",
        "",
        "| phase | `dagster asset materialize` (s) | same job, `execute_in_process` (s) |",
        "|---|---|---|",
    ]
    labels = list(default["phases"]) + [k for k in inproc["phases"] if k not in default["phases"]]

    def cell(value: Any) -> str:
        return "" if value is None else value if isinstance(value, str) else f"{value:.2f}"

    for label in labels:
        parts.append(
            f"| {label} | {cell(default['phases'].get(label))} | "
            f"{cell(inproc['phases'].get(label))} |"
        )
    parts.append(
        f"| peak RSS of the process tree (MB) | {default['peak_rss'] / 1e6:.0f} | "
        f"{inproc['peak_rss'] / 1e6:.0f} |"
    )
    parts += [
        "",
        "Import times in a fresh process (s): "
        + ", ".join(f"`{k}` {v:.2f}" for k, v in imports.items())
        + ".",
        "",
        f"## Engine alone ({records:,} records, {engine_wall:.1f} s under cProfile, "
        "max_concurrency 1 so that every request runs in the profiled thread)",
        "",
        "Top by own time:",
        "",
        "```",
        _top(engine_prof, "tottime", 25),
        "```",
        "",
        "Top by cumulative time, api_assets only:",
        "",
        "```",
        _top(engine_prof, "cumulative", 30, only="api_assets"),
        "```",
        "",
        f"## End to end in one process ({e2e_wall:.1f} s under cProfile: imports, definitions, "
        "instance, run and step; `benchmarks.inprocess`)",
        "",
        "Top by cumulative time:",
        "",
        "```",
        _top(e2e_prof, "cumulative", 40),
        "```",
        "",
        "Top by own time:",
        "",
        "```",
        _top(e2e_prof, "tottime", 25),
        "```",
    ]
    return "\n".join(parts) + "\n"
