"""Where things live: the environment variables and the data layout under the data root.

Every path under the data root is built here, and every name that goes into a path is checked,
so that no source, endpoint or partition key can write outside the data root.
"""

import os
import re
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]

# Source and endpoint names follow the sources file's pattern; partition keys are dates,
# hours (`2026-11-28-13:00`) or `current`. ASCII classes and `fullmatch`: `\d` also matches
# other scripts' digits and `$` matches before a trailing newline, so `2026-01-01\n` or
# fullwidth digits would otherwise become file names.
_NAME = re.compile(r"[a-z][a-z0-9_]*")
_PARTITION = re.compile(r"current|[0-9]{4}-[0-9]{2}-[0-9]{2}(-[0-9]{2}:[0-9]{2})?")


def sources_path() -> Path:
    """`API_ASSETS_SOURCES`, else `sources/` in the project root."""
    value = os.environ.get("API_ASSETS_SOURCES")
    return Path(value) if value else PROJECT_ROOT / "sources"


def data_root() -> Path:
    """`API_ASSETS_DATA_DIR`, else `data/` in the current directory."""
    return Path(os.environ.get("API_ASSETS_DATA_DIR") or "data").resolve()


def ensure_dagster_home() -> Path:
    """Set `DAGSTER_HOME` to `.dagster/` in the project root when unset, so that cursors and
    history survive between runs of the project's own commands."""
    home = os.environ.get("DAGSTER_HOME")
    if not home:
        home = str(PROJECT_ROOT / ".dagster")
        os.environ["DAGSTER_HOME"] = home
    path = Path(home)
    path.mkdir(parents=True, exist_ok=True)
    config = path / "dagster.yaml"
    if not config.exists():
        # An empty file makes Dagster warn on every command; these are the quiet local defaults.
        config.write_text("telemetry:\n  enabled: false\n")
    return path


def check_name(name: str, what: str = "name") -> str:
    if not _NAME.fullmatch(name):
        raise ValueError(f"{what} {name!r} must match [a-z][a-z0-9_]*")
    return name


def check_partition(key: str) -> str:
    if not _PARTITION.fullmatch(key):
        raise ValueError(f"partition key {key!r} is not YYYY-MM-DD, YYYY-MM-DD-HH:MM or current")
    return key


def partition_filename(key: str) -> str:
    """A partition key as a file-name stem: the key itself, once checked."""
    return check_partition(key)


@dataclass(frozen=True)
class DataLayout:
    """Paths under one data root."""

    root: Path

    @classmethod
    def from_env(cls) -> "DataLayout":
        return cls(data_root())

    def raw_dir(self, source: str, endpoint: str, partition: str) -> Path:
        return (
            self.root
            / "raw"
            / check_name(source)
            / check_name(endpoint)
            / partition_filename(partition)
        )

    def table_dir(self, source: str, endpoint: str) -> Path:
        return self.root / "tables" / check_name(source) / check_name(endpoint)

    def table_path(self, source: str, endpoint: str, partition: str) -> Path:
        return self.table_dir(source, endpoint) / f"{partition_filename(partition)}.parquet"

    def schema_path(self, source: str, endpoint: str, partition: str) -> Path:
        return (
            self.root
            / "schemas"
            / check_name(source)
            / check_name(endpoint)
            / f"{partition_filename(partition)}.json"
        )

    def report_path(self, source: str, endpoint: str, partition: str) -> Path:
        return (
            self.root
            / "reports"
            / check_name(source)
            / check_name(endpoint)
            / f"{partition_filename(partition)}.json"
        )

    def landing_dir(self, source: str) -> Path:
        return self.root / "landing" / check_name(source)

    def state_dir(self) -> Path:
        """Process-shared, non-secret state (e.g. the cross-process rate limiter)."""
        return self.root / ".state"
