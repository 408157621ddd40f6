"""`uv run --group bench python -m benchmarks [--quick] [--reps N] [--only SCENARIO ...]`

Runs the scenarios, prints every table and the targets with their ratios, and writes
`benchmarks/RESULTS.md`, `benchmarks/results.png` and the raw numbers in
`benchmarks/out/results.json`. `--profile` runs the profiles instead (see `profiling.py`);
`--render` rewrites RESULTS.md and the plot from the last raw numbers.

`--only` runs some scenarios; RESULTS.md and the plot are written only when throughput is
among them (the report is built around it). `--only gzip` alone is the compressed-server rows.
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SCENARIOS = ("throughput", "gzip", "latency", "rate_limit", "fan_out", "webhooks")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="10k and 100k records")
    parser.add_argument("--reps", type=int, default=3, help="repetitions per contender (≥ 3)")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=SCENARIOS,
        help="run only these scenarios (without throughput: print only, RESULTS.md untouched)",
    )
    parser.add_argument("--profile", action="store_true", help="profile instead of benchmarking")
    parser.add_argument("--records", type=int, default=100_000, help="records for --profile")
    parser.add_argument(
        "--no-write", action="store_true", help="print only; leave RESULTS.md and the plot alone"
    )
    parser.add_argument(
        "--render",
        action="store_true",
        help="rewrite RESULTS.md and the plot from the last run's benchmarks/out/results.json",
    )
    args = parser.parse_args(argv)

    try:
        import dlt  # noqa: F401
        import matplotlib  # noqa: F401
    except ImportError:
        print(
            "the bench dependency group is missing: run "
            "`uv run --group bench python -m benchmarks`",
            file=sys.stderr,
        )
        return 2

    from benchmarks import profiling, report, suite

    if args.render:
        results = json.loads((HERE / "out" / "results.json").read_text())
        if not results.get("throughput"):
            print("the last run has no throughput scenario: nothing to render", file=sys.stderr)
            return 2
        plan = suite.Plan(**{**results["plan"], "sizes": tuple(results["plan"]["sizes"])})
        report.print_summary(results, plan)
        _write(results, plan)
        return 0

    work = Path(tempfile.mkdtemp(prefix="api-assets-bench-"))
    try:
        if args.profile:
            text = profiling.run(args.records, work)
            print(text)
            if not args.no_write:
                (HERE / "PROFILE.md").write_text(text)
            return 0

        plan = suite.Plan.make(args.quick, args.reps)
        chosen = set(args.only or SCENARIOS)
        started = time.monotonic()
        results = {"environment": suite.environment(), "plan": vars(plan)}
        results["partial"] = not set(SCENARIOS) <= chosen  # no suite wall-time target then
        suite.log(f"plan: {vars(plan)}")
        if "throughput" in chosen:
            results["throughput"] = suite.throughput(plan, work)
        if "gzip" in chosen:
            results["gzip"] = suite.gzip_throughput(plan, work)
        if "latency" in chosen:
            results["latency"] = suite.latency(plan, work)
        if "rate_limit" in chosen:
            results["rate_limit"] = suite.rate_limit(plan, work)
        if "fan_out" in chosen:
            results["fan_out"] = suite.fan_out(plan, work)
        if "webhooks" in chosen:
            results["webhooks"] = suite.webhooks(plan, work)
        results["suite_seconds"] = time.monotonic() - started
        results["environment"]["loadavg_end"] = os.getloadavg()
        suite.save(results, HERE / "out" / "results.json")
        report.print_summary(results, plan)
        print(f"\nsuite wall time {results['suite_seconds']:.0f} s")
        if not args.no_write:
            if "throughput" in results:
                _write(results, plan)
            else:
                print("no throughput scenario in this run: RESULTS.md and the plot left alone")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _write(results: dict, plan: Any) -> None:
    from benchmarks import report

    link = (
        "## Profiles\n\nSee [PROFILE.md](PROFILE.md) (`uv run --group bench python -m "
        "benchmarks --profile`) for where the time goes.\n"
    )
    report.write_markdown(results, plan, HERE / "RESULTS.md", link)
    report.write_plot(results, plan, HERE / "results.png")
    print(f"wrote {HERE / 'RESULTS.md'} and {HERE / 'results.png'}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
