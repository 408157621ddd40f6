"""`api-assets validate` as a user runs it: exit codes, one problem per line, no traceback."""

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from .conftest import CONTRACT_EXAMPLE, CONTRACT_SECRETS

CLI = Path(sys.executable).parent / "api-assets"
PROBLEM_LINE = re.compile(r"^[^:]+:\d+: [^:]+: .+$")


def run_validate(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SHOP_", "API_ASSETS_"))}
    return subprocess.run(
        [str(CLI), "validate", *args],
        capture_output=True,
        text=True,
        env={**base, **(env or {})},
        timeout=60,
        check=False,
    )


def assert_problem_lines(result: subprocess.CompletedProcess[str], count: int) -> list[str]:
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == count, result.stderr
    for line in lines:
        assert PROBLEM_LINE.match(line), line
    return lines


def test_valid_file_exits_0(write: Callable[..., Path]) -> None:
    path = write(CONTRACT_EXAMPLE)
    result = run_validate(str(path), env=CONTRACT_SECRETS)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"OK: 1 sources, 4 endpoints ({path})"
    assert result.stderr == ""


def test_missing_variables_exit_2_and_name_them(write: Callable[..., Path]) -> None:
    path = write(CONTRACT_EXAMPLE)
    lines = assert_problem_lines(run_validate(str(path)), 3)
    assert lines[1] == (
        f"{path}:10: sources.shop.auth.client_secret: environment variable SHOP_CLIENT_SECRET "
        "is not set (use ${SHOP_CLIENT_SECRET:-default} or set it)"
    )


def test_a_folder_with_mistakes_in_two_files(write: Callable[..., Path]) -> None:
    write("sources:\n  - name: shop\n    base_url: nowhere\n    retries: 3\n", "a.yaml")
    folder = write(
        "sources:\n  - name: shop\n    base_url: http://127.0.0.1:1\n    endpoints: [{name: x}]\n",
        "b.yaml",
    ).parent
    lines = assert_problem_lines(run_validate(str(folder)), 4)
    assert [line.split(": ")[0].rsplit("/", 1)[1] for line in lines] == [
        "a.yaml:3",
        "a.yaml:4",
        "b.yaml:2",
        "b.yaml:4",
    ]
    assert "source name `shop` is already used at" in lines[2]


def test_unreadable_input_never_shows_a_traceback(
    write: Callable[..., Path], tmp_path: Path
) -> None:
    assert_problem_lines(run_validate(str(tmp_path / "missing.yaml")), 1)
    write(b"\xff\xfe\x00s", "folder/binary.yaml")
    folder = write(": : :\n\t- [", "folder/broken.yaml").parent
    lines = assert_problem_lines(run_validate(str(folder)), 2)
    assert "binary.yaml:1: <root>: the file is not UTF-8 text" in lines[0]
    assert "broken.yaml:1: <root>: YAML syntax error" in lines[1]


def test_without_a_path_reads_api_assets_sources(write: Callable[..., Path]) -> None:
    path = write("sources:\n  - name: shop\n    base_url: http://127.0.0.1:1\n")
    result = run_validate(env={"API_ASSETS_SOURCES": str(path)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("OK: 1 sources, 0 endpoints (")


def test_empty_secrets_exit_2_naming_their_variables(write: Callable[..., Path]) -> None:
    """`${VAR}` set to nothing is no secret: an empty webhook key would accept forgeries."""
    path = write(CONTRACT_EXAMPLE)
    lines = CONTRACT_EXAMPLE.splitlines()
    hook = 1 + next(i for i, line in enumerate(lines) if "${SHOP_WEBHOOK_SECRET}" in line)
    client = 1 + next(i for i, line in enumerate(lines) if "${SHOP_CLIENT_SECRET}" in line)
    env = {**CONTRACT_SECRETS, "SHOP_WEBHOOK_SECRET": "", "SHOP_CLIENT_SECRET": ""}
    assert assert_problem_lines(run_validate(str(path), env=env), 2) == [
        f"{path}:{client}: sources.shop.auth.client_secret: `auth.client_secret` is empty: "
        "`${SHOP_CLIENT_SECRET}` expanded to nothing; set SHOP_CLIENT_SECRET (a secret must not "
        "be empty)",
        f"{path}:{hook}: sources.shop.webhooks.secret: `webhooks.secret` is empty: "
        "`${SHOP_WEBHOOK_SECRET}` expanded to nothing; set SHOP_WEBHOOK_SECRET (a secret must not "
        "be empty)",
    ]
