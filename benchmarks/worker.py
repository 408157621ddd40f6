"""One contender run in a fresh process: `python -m benchmarks.worker '<job json>'`.

A job is `{"contender": "floor" | "dlt" | "engine" | "children", "url": ..., "records": N,
"out": folder, ...}`, or `{"contender": "batch", "jobs": [...], "out": folder}`
to run several in turn in one process; the worker prints one line `RESULT {json}` with the contender's result
plus `peak_rss` (bytes, this process's own high-water mark from `getrusage`).
"""

import json
import resource
import sys
from pathlib import Path
from typing import Any

from benchmarks import contenders


def run(job: dict[str, Any]) -> dict[str, Any]:
    out = Path(job["out"])
    out.mkdir(parents=True, exist_ok=True)
    name = job["contender"]
    if name == "floor":
        return contenders.run_floor(job["url"], job["records"], out)
    if name == "dlt":
        return contenders.run_dlt(job["url"], job["records"], out)
    if name == "engine":
        return contenders.run_engine(job["url"], job["records"], out, yaml_text=job.get("yaml"))
    if name == "children":
        return contenders.run_children(job["url"], job["orders"], out, job["max_concurrency"])
    if name == "batch":  # several timed runs in one process (no per-run RSS)
        return {"results": [run(sub) for sub in job["jobs"]]}
    raise SystemExit(f"unknown contender {name!r}")


def main() -> None:
    job = json.loads(sys.argv[1])
    result = run(job)
    # ru_maxrss is in KiB on Linux
    result["peak_rss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
