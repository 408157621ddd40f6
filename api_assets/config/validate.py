"""`api-assets validate [PATH]`: every mistake of a sources file or folder, one line each."""

import sys

from api_assets.config.loader import load_with_files
from api_assets.errors import SourcesError


def validate_command(path: str | None) -> int:
    """`api-assets validate [PATH]`: prints `OK: ...` and returns 0, or prints each problem on
    stderr, one per line, and returns 2. Never a traceback."""
    try:
        sources, files = load_with_files(path, None)
    except SourcesError as err:
        for problem in err.problems:
            print(problem, file=sys.stderr)
        return 2
    except Exception as exc:  # a loader bug must not look like a crash of the user's file
        shown = path or "sources"
        print(
            f"{shown}:0: <root>: could not validate ({type(exc).__name__}); please report this",
            file=sys.stderr,
        )
        return 2
    endpoints = sum(len(s.endpoints) for s in sources)
    print(f"OK: {len(sources)} sources, {endpoints} endpoints ({', '.join(files)})")
    return 0
