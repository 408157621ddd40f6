"""Dagster's public API only: no module of the package imports `dagster._…` (private modules
change without notice between patch releases, which the `>=1.13,<1.14` range lets in)."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "api_assets"


def private_dagster_imports(source: str) -> list[tuple[int, str]]:
    """(line, module) of every import of a private Dagster module in `source`."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # `from dagster import _check` imports a private module too
            modules = [node.module]
            if not _private_dagster(node.module):
                modules = [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        found += [(node.lineno, m) for m in modules if _private_dagster(m)]
    return found


def _private_dagster(module: str) -> bool:
    parts = module.split(".")
    return parts[0].startswith("dagster") and any(p.startswith("_") for p in parts[1:])


def test_no_module_imports_a_private_dagster_module() -> None:
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 20
    offenders = [
        f"{path.relative_to(PACKAGE.parent)}:{line}: {module}"
        for path in files
        for line, module in private_dagster_imports(path.read_text())
    ]
    assert offenders == [], "private Dagster imports:\n" + "\n".join(offenders)


def test_the_scan_sees_every_form_of_a_private_import() -> None:
    source = "\n".join(
        [
            "import dagster._core.events",
            "import os, dagster._config as cfg",
            "from dagster._utils.schedules import get_smallest_cron_interval",
            "from dagster import _check",
            "from dagster_shared._x import y",
            "def f():",
            "    from dagster._core.executor.base import Executor",
        ]
    )
    assert [line for line, _ in private_dagster_imports(source)] == [1, 2, 3, 4, 5, 7]


def test_the_scan_lets_public_imports_pass() -> None:
    source = "\n".join(
        [
            "import dagster as dg",
            "from dagster import AssetKey, Definitions",
            "from dagster.components import Component",
            "from . import _private",
            "import _thread",
            "from api_assets._x import y",
        ]
    )
    assert private_dagster_imports(source) == []
