"""`${VAR}` and `${VAR:-default}` in a sources file's string values."""

import re
from collections.abc import Mapping

# --- ${VAR} expansion ------------------------------------------------------------------------

_REFERENCE = re.compile(r"\$\$\{|\$\{([^}]*)\}|\$\{")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def expand_env(text: str, environ: Mapping[str, str]) -> tuple[str, list[str]]:
    """`text` with every `${VAR}` / `${VAR:-default}` replaced, and the reasons it could not be.

    The messages name variables, never values.
    """
    problems: list[str] = []

    def replace(match: re.Match[str]) -> str:
        token = match.group(0)
        if token == "$${":
            return "${"
        body = match.group(1)
        if body is None:
            problems.append(
                "`${` without a closing `}`; write ${VAR} or ${VAR:-default}, or $${ for a literal ${"
            )
            return token
        name, default_sep, default = body.partition(":-")
        if not _ENV_NAME.fullmatch(name):
            problems.append(
                "malformed `${...}`: expected ${VAR} or ${VAR:-default}, VAR made of letters, digits and _"
            )
            return token
        value = environ.get(name)
        if default_sep:
            return value if value else default
        if value is None:
            problems.append(
                f"environment variable {name} is not set (use ${{{name}:-default}} or set it)"
            )
            return token
        return value

    return _REFERENCE.sub(replace, text), problems
