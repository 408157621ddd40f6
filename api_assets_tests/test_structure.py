"""The shape of the package, checked: the layers hold (import-linter's contracts in
pyproject.toml, run by the test command: the engine never imports Dagster, the servers never
import the Dagster layer, no layer imports one above it), and no engine function grows past
~60 lines without a reason written next to it (`# long: why`)."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "api_assets"
ENGINE = ["config", "http", "pagination", "pipeline", "storage", "webhooks"]
ENGINE_MODULES = ["errors.py", "pages.py", "records.py", "utc.py"]
LIMIT = 60


def engine_files() -> list[Path]:
    files = [PACKAGE / name for name in ENGINE_MODULES]
    for folder in ENGINE:
        files += sorted((PACKAGE / folder).rglob("*.py"))
    return files


def long_functions_without_a_reason(path: Path) -> list[tuple[int, str, int]]:
    """(line, name, length) of each function over the limit with no `# long:` comment above."""
    lines = path.read_text().splitlines()
    found = []
    for node in ast.walk(ast.parse("\n".join(lines))):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        length = (node.end_lineno or node.lineno) - node.lineno + 1
        if length <= LIMIT:
            continue
        first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
        above = lines[max(0, first - 4) : first - 1]  # the comment block right above
        if not any("# long:" in line for line in above):
            found.append((node.lineno, node.name, length))
    return found


def test_engine_functions_are_short_or_say_why() -> None:
    offenders = [
        f"{path.relative_to(PACKAGE.parent)}:{line} {name} ({length} lines)"
        for path in engine_files()
        for line, name, length in long_functions_without_a_reason(path)
    ]
    assert offenders == [], "functions over 60 lines without a `# long:` reason: " + ", ".join(
        offenders
    )


def test_the_check_sees_a_long_function(tmp_path: Path) -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(LIMIT + 1))
    plain = tmp_path / "plain.py"
    plain.write_text(f"def f():\n{body}\n")
    assert [n for _, n, _ in long_functions_without_a_reason(plain)] == ["f"]
    reasoned = tmp_path / "reasoned.py"
    reasoned.write_text(f"# long: a reason\ndef f():\n{body}\n")
    assert long_functions_without_a_reason(reasoned) == []
