"""Kubernetes failures, translated once into the error tree by the gateway."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import urllib3
from kubernetes.client.exceptions import ApiException

from raidiam_operator.core.errors import (
    Conflict,
    Forbidden,
    KubernetesError,
    KubernetesUnavailable,
    ObjectNotFound,
    TransientError,
)
from raidiam_operator.kube.errors import translated

NOW = datetime(2026, 11, 27, 12, 0, 0, tzinfo=UTC)
WHAT = "reading Secret payments/transport"


def _api_exception(status: int, reason: str, headers: dict[str, str] | None = None) -> ApiException:
    error = ApiException(status=status, reason=reason)
    error.headers = headers or {}
    error.body = '{"data": {"access_token": "secret-token"}}'
    return error


@pytest.mark.parametrize(
    ("status", "kind"),
    [(404, ObjectNotFound), (409, Conflict), (403, Forbidden), (422, KubernetesError)],
)
def test_a_refusal_becomes_a_kubernetes_error_naming_the_call_and_the_status(
    status: int, kind: type[KubernetesError]
) -> None:
    error = translated(_api_exception(status, "Refused"), what=WHAT, now=lambda: NOW)

    assert type(error) is kind
    assert error.message.startswith(f"{WHAT} failed: HTTP {status} Refused")
    assert "secret-token" not in error.message, "the body may quote the object"


def test_forbidden_says_to_look_at_the_rbac() -> None:
    error = translated(_api_exception(403, "Forbidden"), what=WHAT, now=lambda: NOW)

    assert "check their RBAC" in error.message


def test_a_namespace_being_deleted_is_not_called_an_rbac_problem() -> None:
    error = ApiException(status=403, reason="Forbidden")
    error.body = (
        '{"kind": "Status", "reason": "Forbidden", "message": "unable to create new content in'
        ' namespace payments because it is being terminated", "details": {"causes":'
        ' [{"reason": "NamespaceTerminating", "field": "metadata.namespace"}]}}'
    )

    translated_error = translated(error, what=WHAT, now=lambda: NOW)

    assert isinstance(translated_error, Forbidden)
    assert translated_error.message == f"{WHAT} failed: the namespace is being deleted"


@pytest.mark.parametrize("status", [429, 500, 503])
def test_an_overloaded_api_server_is_transient_and_its_retry_after_is_kept(status: int) -> None:
    error = translated(
        _api_exception(status, "Busy", {"Retry-After": "7"}), what=WHAT, now=lambda: NOW
    )

    assert isinstance(error, KubernetesUnavailable)
    assert isinstance(error, TransientError)
    assert error.retry_after == 7


def test_an_unreachable_api_server_is_transient() -> None:
    cause = urllib3.exceptions.MaxRetryError(None, "/api", "refused")  # type: ignore[arg-type]

    error = translated(cause, what=WHAT, now=lambda: NOW)

    assert isinstance(error, KubernetesUnavailable)
    assert "could not be reached (MaxRetryError)" in error.message
