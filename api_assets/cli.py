"""`api-assets`: the project's own command line.

Each subcommand imports its module lazily so that `api-assets validate` stays fast and never
pays for Dagster's import.
"""

import argparse
import sys


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("api-assets")
    except PackageNotFoundError:  # run from a tree that was never installed
        return "unknown"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="api-assets", description=__doc__)
    p.add_argument(
        "--version", action="version", version=f"%(prog)s {_version()}", help="print the version"
    )
    sub = p.add_subparsers(dest="command", required=True)

    demo = sub.add_parser(
        "demo",
        help="run the whole demo against the bundled demo API",
        description="Start the bundled demo API, materialize every asset of sources/demo.yaml "
        "for today's UTC partition and print one line per endpoint. Dagster's event log goes "
        "to DAGSTER_HOME/logs/demo.log (default DAGSTER_HOME: .dagster/ in the project).",
    )
    demo.add_argument(
        "--ui",
        action="store_true",
        help="then open the Dagster UI on the same instance (default: off)",
    )
    demo.add_argument(
        "--port", type=int, default=3000, help="UI port, with --ui (default: %(default)s)"
    )
    demo.add_argument(
        "--verbose",
        action="store_true",
        help="print Dagster's event log on the terminal too (default: off, only to the log file)",
    )

    api = sub.add_parser("demo-api", help="run the bundled demo API alone")
    api.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: %(default)s)"
    )
    api.add_argument(
        "--port", type=int, default=8765, help="port to listen on, 0 for any (default: %(default)s)"
    )
    api.add_argument(
        "--seed", type=int, default=42, help="seed of the generated data (default: %(default)s)"
    )
    api.add_argument(
        "--faults", default=None, help="a fault profile name to inject (default: none)"
    )
    api.add_argument(
        "--token-lifetime",
        type=float,
        default=3600.0,
        help="seconds an issued OAuth2 token stays valid (default: %(default)s)",
    )
    api.add_argument(
        "--rate-limit",
        type=float,
        default=0.0,
        help="requests/s per credential, 0 for no limit (default: %(default)s)",
    )
    api.add_argument(
        "--latency-ms",
        type=float,
        default=0.0,
        help="milliseconds added to every answer (default: %(default)s)",
    )

    val = sub.add_parser("validate", help="validate a sources file or folder")
    val.add_argument(
        "path",
        nargs="?",
        default=None,
        help="sources file or folder (default: $API_ASSETS_SOURCES, else sources/)",
    )

    wh = sub.add_parser("webhooks", help="webhook receiver")
    whsub = wh.add_subparsers(dest="webhooks_command", required=True)
    serve = whsub.add_parser("serve", help="serve POST /webhooks/<source>")
    serve.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: %(default)s)"
    )
    serve.add_argument(
        "--port", type=int, default=8780, help="port to listen on (default: %(default)s)"
    )
    serve.add_argument(
        "--sources",
        default=None,
        help="sources file or folder (default: $API_ASSETS_SOURCES, else sources/)",
    )
    # defaults in api_assets/webhooks/limits.py (10 s, 10 s, 1000, 64 MiB)
    serve.add_argument(
        "--header-timeout",
        type=float,
        help="seconds a request's headers may take, from the connection (default: 10): then 408",
    )
    serve.add_argument(
        "--body-timeout",
        type=float,
        help="seconds a request's body may take, after its headers (default: 10): then 408",
    )
    serve.add_argument(
        "--max-connections",
        type=int,
        help="open connections at most (default: 1000): a request past it is answered 503",
    )
    serve.add_argument(
        "--max-buffered-bytes",
        type=int,
        help="body bytes held by all requests together (default: 64 MiB): past it, 503",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "validate":
        from api_assets.config.validate import validate_command

        return validate_command(args.path)
    if args.command == "demo-api":
        from api_assets.demo_api.server import main as demo_api_main

        return demo_api_main(args)
    if args.command == "webhooks":
        from api_assets.webhooks.receiver import serve_command

        return serve_command(args)
    if args.command == "demo":
        from api_assets.demo import run_demo

        return run_demo(ui=args.ui, ui_port=args.port, verbose=args.verbose)
    return 2


if __name__ == "__main__":
    sys.exit(main())
