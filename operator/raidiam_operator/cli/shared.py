"""What the commands share: exit codes, error output, the API client, the expiry-warning flag."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable, Coroutine
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from raidiam_operator.core.errors import (
    AuthorizationServerRejection,
    ConfigurationError,
    RaidiamOperatorError,
    RegistrationGone,
    TransientError,
)
from raidiam_operator.core.options import CERTIFICATE_EXPIRY_WARNING
from raidiam_operator.core.registration_spec import REGISTRATION_KIND, REGISTRATION_PLURAL
from raidiam_operator.core.spec import GROUP, KIND, PLURAL, parse_duration

if TYPE_CHECKING:
    from raidiam_operator.kube.gateway import KubeGateway

EXIT_OK = 0
EXIT_CONFIGURATION = 2
EXIT_REJECTED = 3
EXIT_TRANSIENT = 4

Commands = argparse._SubParsersAction  # the `add_subparsers()` of the main parser
# One quick retry for a blip; anything that asks us to wait longer is reported instead.
QUICK_RETRY_LIMIT_SECONDS = 5.0
_T = TypeVar("_T")
#: The short names the CRDs give (crds/raidiam.io_*.yaml), as kubectl accepts them.
CLIENT_SHORT_NAME, REGISTRATION_SHORT_NAME = "raidiam", "raidiamreg"
_KIND_SPELLINGS = {
    spelling: kind
    for kind, plural, short in (
        (KIND, PLURAL, CLIENT_SHORT_NAME),
        (REGISTRATION_KIND, REGISTRATION_PLURAL, REGISTRATION_SHORT_NAME),
    )
    for word in (kind.lower(), plural, short)
    for spelling in (word, f"{word}.{GROUP}")
}


def named(argument: str) -> tuple[str, str]:
    """A NAME argument as (kind, name): a bare name is a RaidiamClient; `raidiamregistration/NAME`
    (or kubectl's other spellings: plural, short name, with the group) a RaidiamRegistration.
    Raises `ConfigurationError` for another kind."""
    spelled, slash, name = argument.rpartition("/")
    if not slash:
        return KIND, argument
    kind = _KIND_SPELLINGS.get(spelled.lower())
    if kind is None or not name:
        raise ConfigurationError(
            f"{argument}: name a RaidiamClient (NAME or raidiamclient/NAME) or a "
            "RaidiamRegistration (raidiamregistration/NAME)"
        )
    return kind, name


def add_cluster_flags(parser: argparse.ArgumentParser) -> None:
    """kubectl's own flags for which cluster to talk to."""
    parser.add_argument(
        "--kubeconfig",
        metavar="FILE",
        help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config)",
    )
    parser.add_argument(
        "--context", metavar="NAME", help="kubeconfig context (default: its current one)"
    )


def gateway(args: argparse.Namespace) -> KubeGateway:
    """The API client of the kubeconfig in use (imported late: `token` needs no cluster).
    Raises `ConfigurationError` when there is no usable kubeconfig."""
    from raidiam_operator.kube.gateway import KubernetesGateway

    return KubernetesGateway.from_environment(
        kubeconfig=getattr(args, "kubeconfig", None),
        context=getattr(args, "context", None),
        threads=4,
    )


def namespace_flags(parser: argparse.ArgumentParser) -> None:
    """kubectl's -n and -A."""
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument("-n", "--namespace", help="namespace (default: the current context's)")
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="every namespace")


def selector_flag(parser: argparse.ArgumentParser) -> None:
    """kubectl's -l."""
    parser.add_argument(
        "-l",
        "--selector",
        metavar="SELECTOR",
        help="label selector, as kubectl's: team=payments, tier in (gold,silver), !legacy",
    )


def chosen_namespace(args: argparse.Namespace) -> str | None:
    """-n, else the context's namespace; None for -A (every namespace)."""
    return (
        None
        if getattr(args, "all_namespaces", False)
        else (args.namespace or current_namespace(args))
    )


def with_api(
    args: argparse.Namespace,
    doing: str,
    work: Callable[[KubeGateway], Coroutine[Any, Any, _T]],
) -> _T | int:
    """Run `work` with an API client; a failure is reported on stderr and becomes the exit code
    (an int), so callers check `isinstance(result, int)`."""
    try:
        api = gateway(args)
    except RaidiamOperatorError as problem:
        error(args, f"cannot {doing}: {problem.message}")
        return exit_code_for(problem)
    try:
        return asyncio.run(work(api))
    except RaidiamOperatorError as problem:
        error(args, f"cannot {doing}: {problem.message}")
        return exit_code_for(problem)
    finally:
        api.close()


def current_namespace(args: argparse.Namespace | None = None) -> str:
    from raidiam_operator.kube.api import current_namespace as kubeconfig_namespace

    return kubeconfig_namespace(getattr(args, "kubeconfig", None), getattr(args, "context", None))


def exit_code_for(problem: RaidiamOperatorError) -> int:
    """4 when the API server (or authorization server) could not be reached or was overloaded:
    trying again may work. 2 for everything to fix first (kubeconfig, RBAC, a missing object)."""
    return EXIT_TRANSIENT if isinstance(problem, TransientError) else EXIT_CONFIGURATION


def request_exit_code(problem: RaidiamOperatorError) -> int:
    """For the commands that talk to an authorization server themselves (`token`, `register`):
    3 when it (or the directory) refused, 4 when trying again may work, 2 for the rest."""
    if isinstance(problem, AuthorizationServerRejection | RegistrationGone):
        return EXIT_REJECTED
    return EXIT_TRANSIENT if isinstance(problem, TransientError) else EXIT_CONFIGURATION


def error(args: argparse.Namespace, message: str) -> None:
    """On stderr, named as the user invoked us: `kubectl raidiam` or `raidiam-operator`."""
    print(f"{getattr(args, 'prog', 'raidiam-operator')}: error: {message}", file=sys.stderr)


def fail(args: argparse.Namespace, code: int, problem: RaidiamOperatorError) -> int:
    error(args, f"{problem.reason}: {problem.message}")
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


def read_flag_file(path: Path, flag: str) -> bytes:
    """A file a flag names; a missing or unreadable one is a `ConfigurationError` naming both."""
    try:
        return path.read_bytes()
    except OSError as error:
        raise ConfigurationError(f"{flag} {path}: {error.strerror}") from None


async def with_one_quick_retry(attempt: Callable[[], Awaitable[_T]]) -> _T:
    """`attempt`, once more after a transient failure that asks for at most a short wait (a
    one-shot command absorbs a blip, and reports anything longer)."""
    try:
        return await attempt()
    except TransientError as error:
        wait = 1.0 if error.retry_after is None else error.retry_after
        if wait > QUICK_RETRY_LIMIT_SECONDS:
            raise
        await asyncio.sleep(wait)
        return await attempt()
