"""`raidiam-operator` (and `kubectl raidiam`): the command line over the same core the operator
uses. One module per command: `token`, `register`, `run`, `cluster` (status, describe), `refresh_request`
(refresh), `check`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from raidiam_operator import __version__
from raidiam_operator.cli import check, cluster, refresh_request, register, run, token


def main(argv: Sequence[str] | None = None, *, prog: str = "raidiam-operator") -> int:
    parser = _parser(prog)
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        return 130


def kubectl_plugin() -> None:
    """`kubectl raidiam ...`: kubectl finds `kubectl-raidiam` on PATH and passes the rest."""
    sys.exit(main(sys.argv[1:], prog="kubectl raidiam"))


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Keep OAuth 2.0 client-credentials tokens from Raidiam Connect fresh.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    # Error messages name the command as the user typed it.
    parser.set_defaults(prog=prog)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    token.add_parser(commands)
    register.add_parser(commands)
    run.add_parser(commands)
    cluster.add_parsers(commands)
    refresh_request.add_parser(commands)
    check.add_parser(commands)
    return parser
