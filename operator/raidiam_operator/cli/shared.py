"""What the commands share: exit codes, error output, the API client, the expiry-warning flag."""

from __future__ import annotations

import argparse
import sys
from datetime import timedelta
from typing import TYPE_CHECKING

from raidiam_operator.core.errors import RaidiamOperatorError
from raidiam_operator.core.options import CERTIFICATE_EXPIRY_WARNING
from raidiam_operator.core.spec import parse_duration

if TYPE_CHECKING:
    from raidiam_operator.kube.gateway import KubernetesGateway

EXIT_OK = 0
EXIT_CONFIGURATION = 2
EXIT_REJECTED = 3
EXIT_TRANSIENT = 4

Commands = argparse._SubParsersAction  # the `add_subparsers()` of the main parser


def gateway() -> KubernetesGateway:
    """The API client of the kubeconfig in use (imported late: `token` needs no cluster)."""
    from raidiam_operator.kube.gateway import KubernetesGateway

    return KubernetesGateway.from_environment(threads=4)


def current_namespace() -> str:
    from raidiam_operator.kube.gateway import KubernetesGateway

    return KubernetesGateway.current_namespace()


def error(message: str) -> None:
    print(f"raidiam-operator: error: {message}", file=sys.stderr)


def fail(code: int, problem: RaidiamOperatorError) -> int:
    error(f"{problem.reason}: {problem.message}")
    return code


def add_expiry_warning_flag(parser: argparse.ArgumentParser) -> None:
    """`run` and `check` warn about the same certificates: one flag, one default."""
    hours = int(CERTIFICATE_EXPIRY_WARNING.total_seconds() // 3600)
    parser.add_argument(
        "--certificate-expiry-warning",
        default=f"{hours}h",
        metavar="DURATION",
        help="warn when a transport or signing certificate expires within this "
        f"(default %(default)s = {CERTIFICATE_EXPIRY_WARNING.days} days)",
    )


def expiry_warning(args: argparse.Namespace) -> timedelta:
    """The flag's value; raises `ConfigurationError` naming the flag."""
    return parse_duration(args.certificate_expiry_warning, field="--certificate-expiry-warning")
