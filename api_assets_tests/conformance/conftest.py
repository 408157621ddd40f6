"""Fixtures of the conformance suite (servers and versions: see `__init__.py`).

- `log_dir`: where this module's servers write their logs (shown when one fails to start).
- `project(sources_yaml, env)`: a `ConformanceProject` in this test's tmp dir.
"""

from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from api_assets_tests.conformance.harness import ConformanceProject, make_project


@pytest.fixture(scope="module")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("server-logs")


@pytest.fixture
def project(tmp_path: Path) -> Callable[..., ConformanceProject]:
    def make(sources_yaml: str, env: Mapping[str, str] | None = None) -> ConformanceProject:
        return make_project(tmp_path, sources_yaml, env)

    return make
