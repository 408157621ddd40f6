"""The whole test command: lint, format check, types, the import layers, then the suite.

`uv run --locked python -m api_assets_tests` (what README and `.ci/run` call). Extra arguments
go to pytest, e.g. `python -m api_assets_tests -k pagination`.
"""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CODE = ["api_assets", "api_assets_tests", "benchmarks"]


def run(cmd: list[str]) -> int:
    print("$ " + " ".join(cmd), flush=True)
    return subprocess.call(cmd, cwd=ROOT)


def main(argv: list[str]) -> int:
    py = sys.executable
    steps = [
        [py, "-m", "ruff", "check", *CODE],
        [py, "-m", "ruff", "format", "--check", *CODE],
        [py, "-m", "mypy"],
        # the layers (pyproject.toml [tool.importlinter]): engine below Dagster, servers apart
        [str(Path(py).with_name("lint-imports"))],
    ]
    failed = [" ".join(s[2:4]) or Path(s[0]).name for s in steps if run(s) != 0]
    rc = run([py, "-m", "pytest", "-n", "2", "--dist", "loadfile", "-p", "no:cacheprovider", *argv])
    if rc == 5:
        print("pytest collected no tests: that is a failure here", file=sys.stderr)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return rc or (1 if failed else 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
