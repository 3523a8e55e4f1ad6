"""The official client's exceptions, translated once into the error tree of `core.errors`: a
refusal is a `KubernetesError` (`ObjectNotFound`, `Conflict`, `Forbidden`), an API server that is
down, overloaded or unreachable a `KubernetesUnavailable`, which is transient.
"""

from __future__ import annotations

import json

from kubernetes.client.exceptions import ApiException

from raidiam_operator.core.errors import (
    Conflict,
    Forbidden,
    KubernetesError,
    KubernetesUnavailable,
    ObjectNotFound,
    RaidiamOperatorError,
)
from raidiam_operator.core.times import Clock, parse_retry_after


def translated(error: Exception, *, what: str, now: Clock) -> RaidiamOperatorError:
    """The official client's exception as an error of our tree. The message names the call and
    the HTTP status, never the body: it may quote the object, and a token Secret is one."""
    if not isinstance(error, ApiException) or not error.status:
        return KubernetesUnavailable(
            f"{what} failed: the API server could not be reached ({type(error).__name__})"
        )
    status = int(error.status)
    answered = f"{what} failed: HTTP {status} {error.reason or ''}".rstrip()
    if status == 404:
        return ObjectNotFound(answered, status_code=status)
    if status == 409:
        return Conflict(f"{answered}: it changed since it was read", status_code=status)
    if status == 403 and "NamespaceTerminating" in _cause_reasons(error):
        # Not a missing permission: the namespace is going away, with everything in it.
        return Forbidden(f"{what} failed: the namespace is being deleted", status_code=status)
    if status == 403:
        return Forbidden(
            f"{answered}: the credentials in use may not do this; check their RBAC",
            status_code=status,
        )
    if status == 429 or status >= 500:
        headers = error.headers or {}
        return KubernetesUnavailable(
            answered, retry_after=parse_retry_after(headers.get("Retry-After"), now=now())
        )
    return KubernetesError(answered, status_code=status)


def _cause_reasons(error: ApiException) -> set[str]:
    """The machine-readable reasons of a refusal (`details.causes[].reason` of the Status the
    API server answered), read without quoting anything else of the body."""
    try:
        details = json.loads(error.body or "{}").get("details") or {}
        return {str(cause.get("reason")) for cause in details.get("causes") or []}
    except (ValueError, AttributeError, TypeError):
        return set()
