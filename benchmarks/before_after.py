"""The engine and end to end, this tree against an earlier commit, in one run.

`uv run --group bench python -m benchmarks.before_after REV [--records N] [--reps K]` checks out
REV into `benchmarks/out/before-REV` (a git worktree), starts one page server and runs, in a
rotating order, the floor, the engine and `dagster asset materialize` of both trees, K times
each, every run in a fresh process that imports its own tree. It prints medians and the ratios
that matter for a change that must not slow anything: engine/floor and e2e/floor, before and
after. A restructuring is judged on those ratios, measured side by side on the same machine
minute (absolute times mean little on a shared machine).
"""

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from benchmarks import contenders
from benchmarks.measure import ROOT, median, run_measured, worker_env
from benchmarks.servers import PageServer
from benchmarks.suite import log


def worktree(rev: str) -> Path:
    path = ROOT / "benchmarks" / "out" / f"before-{rev}"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(path), rev],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
    return path


def env_for(tree: Path) -> dict[str, str]:
    env = worker_env()
    env["PYTHONPATH"] = str(tree)
    return env


def run(name: str, tree: Path, url: str, records: int, out: Path) -> dict[str, Any]:
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    env = env_for(tree)
    if name == "e2e":
        sources = out / "sources.yaml"
        sources.write_text(contenders.sources_yaml(url, records))
        env.update(
            API_ASSETS_SOURCES=str(sources),
            API_ASSETS_DATA_DIR=str(out / "data"),
            DAGSTER_HOME=str(out.parent / f"home-{tree.name}"),
        )
        Path(env["DAGSTER_HOME"]).mkdir(exist_ok=True)
        measured = run_measured(contenders.e2e_command(sys.executable), env=env, cwd=tree)
        if measured.returncode != 0:
            raise RuntimeError(f"e2e failed in {tree}:\n{measured.stderr[-2000:]}")
        return {"elapsed": measured.wall}
    job = {"contender": name, "url": url, "records": records, "out": str(out)}
    measured = run_measured(
        [sys.executable, "-m", "benchmarks.worker", json.dumps(job)], env=env, cwd=tree
    )
    if measured.returncode != 0 or not measured.result:
        raise RuntimeError(f"{name} failed in {tree}:\n{measured.stderr[-2000:]}")
    return dict(measured.result)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("rev")
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    before = worktree(args.rev)
    trees = {"after": ROOT, "before": before}
    runs = [("floor", "after"), ("engine", "after"), ("engine", "before")]
    runs += [("e2e", "after"), ("e2e", "before")]
    times: dict[tuple[str, str], list[float]] = {r: [] for r in runs}
    work = ROOT / "benchmarks" / "out" / "before_after"
    with PageServer() as server:
        for name, side in runs:  # warm-up: bytecode caches, the Dagster instance
            run(name, trees[side], server.url, 2_000, work / f"warm-{name}-{side}")
        for rep in range(args.reps):
            k = rep % len(runs)
            for name, side in runs[k:] + runs[:k]:
                result = run(name, trees[side], server.url, args.records, work / f"{name}-{side}")
                times[(name, side)].append(result["elapsed"])
                log(f"{name:<6} {side:<6} rep {rep + 1}: {result['elapsed']:.2f} s")
    floor = median(times[("floor", "after")])
    print(f"\n{args.records:,} records, {args.reps} reps, medians (floor {floor:.2f} s):")
    for name in ("engine", "e2e"):
        for side in ("before", "after"):
            t = median(times[(name, side)])
            print(f"  {name:<6} {side:<6} {t:6.2f} s   {name}/floor time {t / floor:.2f}x")
        ratio = median(times[(name, "before")]) / median(times[(name, "after")])
        print(f"  {name}: after is {ratio:.2f}x the speed of before")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
