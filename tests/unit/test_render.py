from __future__ import annotations

import base64
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from raidiam_operator.core.errors import ConfigurationError
from raidiam_operator.core.spec import TokenSecretTemplate
from raidiam_operator.protocol.credentials import CertificateFiles
from raidiam_operator.refresh.readback import ReadBack, record_from_secret
from raidiam_operator.refresh.render import (
    Owner,
    Problem,
    StatusView,
    TokenRecord,
    client_status,
    secret_differs,
    token_secret,
)

NOW = datetime(2026, 11, 27, 12, 0, 0, tzinfo=UTC)
OWNER = Owner(namespace="payments", name="directory", uid="uid-1")
RECORD = TokenRecord(
    access_token="secret-token",
    token_type="Bearer",
    scope="directory:software",
    issued_at=NOW,
    expires_at=NOW + timedelta(minutes=5),
    token_endpoint="https://matls.example/token",
    certificate_thumbprint="thumb",
    inputs_fingerprint="f1",
    binding="advertised",
)
TEMPLATE = TokenSecretTemplate(
    name="directory-token", labels={"team": "a"}, annotations={"note": "n"}
)


def test_the_token_secret_carries_the_token_its_expiry_and_its_owner() -> None:
    secret = token_secret(OWNER, TEMPLATE, RECORD)

    assert secret["type"] == "Opaque"
    assert base64.b64decode(secret["data"]["access_token"]) == b"secret-token"
    assert base64.b64decode(secret["data"]["expires_at"]) == b"2026-11-27T12:05:00Z"
    assert secret["metadata"]["annotations"]["raidiam.io/expires-at"] == "2026-11-27T12:05:00Z"
    assert secret["metadata"]["annotations"]["raidiam.io/certificate-thumbprint"] == "thumb"
    assert secret["metadata"]["annotations"]["note"] == "n"
    assert secret["metadata"]["labels"] == {
        "team": "a",
        "app.kubernetes.io/managed-by": "raidiam-token-operator",
        "raidiam.io/client": "directory",
    }
    assert secret["metadata"]["ownerReferences"][0]["controller"] is True


def test_rendering_is_stable_and_reads_back_to_the_same_record() -> None:
    secret = token_secret(OWNER, TEMPLATE, RECORD)

    assert token_secret(OWNER, TEMPLATE, RECORD) == secret
    assert record_from_secret(secret, now=NOW) == ReadBack(RECORD)
    assert not secret_differs(secret, secret)


def test_the_binding_is_written_to_the_secret_and_the_status() -> None:
    secret = token_secret(OWNER, TEMPLATE, RECORD)

    assert secret["metadata"]["annotations"]["raidiam.io/binding"] == "advertised"
    assert _status()["binding"] == "advertised"
    assert _status()["certificateThumbprint"] == "thumb"


def test_an_unbound_token_reports_no_thumbprint() -> None:
    unbound = replace(RECORD, binding="none", certificate_thumbprint=None)

    secret = token_secret(OWNER, TEMPLATE, unbound)

    assert "raidiam.io/certificate-thumbprint" not in secret["metadata"]["annotations"]
    assert (
        _status(record=unbound)["binding"],
        _status(record=unbound)["certificateThumbprint"],
    ) == ("none", None)


def test_a_hand_edited_token_is_seen_as_drift() -> None:
    secret = token_secret(OWNER, TEMPLATE, RECORD)
    edited = {**secret, "data": {**secret["data"], "access_token": "aGFja2Vk"}}

    assert secret_differs(edited, secret)


def _status(**overrides: object) -> dict[str, object]:
    arguments: dict[str, Any] = {
        "record": RECORD,
        "inputs_fingerprint": "f1",
        "blocked": None,
        "failure": None,
        "failed_attempts": 0,
        "last_failure_time": None,
        "next_refresh": NOW + timedelta(minutes=3),
        "suspended": False,
        "generation": 2,
        "previous_conditions": [],
        "now": NOW,
    }
    arguments.update(overrides)
    now = arguments.pop("now")
    return client_status(StatusView(**arguments), now=now).status


def _condition(status: dict[str, object], kind: str) -> dict[str, str]:
    return next(c for c in status["conditions"] if c["type"] == kind)  # type: ignore[attr-defined]


def test_a_valid_current_token_is_ready_and_not_degraded() -> None:
    status = _status()

    assert _condition(status, "Ready")["status"] == "True"
    assert _condition(status, "Ready")["reason"] == "TokenValid"
    assert _condition(status, "Degraded")["status"] == "False"
    assert status["observedGeneration"] == 2
    assert "secret-token" not in str(status)


def test_a_failure_while_the_token_is_valid_degrades_but_stays_ready() -> None:
    status = _status(
        failure=Problem("AuthorizationServerUnavailable", "HTTP 503"), failed_attempts=2
    )

    assert _condition(status, "Ready")["status"] == "True"
    assert _condition(status, "Degraded")["reason"] == "AuthorizationServerUnavailable"


def test_an_expired_token_is_not_ready() -> None:
    status = _status(
        now=NOW + timedelta(minutes=6), failure=Problem("AuthorizationServerUnavailable", "down")
    )

    assert _condition(status, "Ready")["reason"] == "TokenExpired"
    assert _condition(status, "Ready")["status"] == "False"


def test_an_expired_short_lived_token_says_the_lifetime_is_why() -> None:
    short = Problem("ShortTokenLifetime", "the server's tokens live 0.5 s, less than 30 s")
    status = _status(now=NOW + timedelta(minutes=6), lifetime_warning=short)

    ready = _condition(status, "Ready")
    assert ready["reason"] == "TokenExpired"
    assert ready["message"].endswith("; the server's tokens live 0.5 s, less than 30 s")


def test_blocking_input_is_not_ready_with_its_reason() -> None:
    status = _status(blocked=Problem("SecretNotFound", "Secret payments/transport does not exist"))

    assert _condition(status, "Ready")["reason"] == "SecretNotFound"
    assert _condition(status, "Degraded")["status"] == "True"


def test_last_transition_time_moves_only_when_the_status_flips() -> None:
    first = _status()
    later = _status(now=NOW + timedelta(minutes=1), previous_conditions=first["conditions"])
    flipped = _status(
        now=NOW + timedelta(minutes=2),
        previous_conditions=later["conditions"],
        blocked=Problem("SecretNotFound", "gone"),
    )

    assert (
        _condition(later, "Ready")["lastTransitionTime"]
        == _condition(first, "Ready")["lastTransitionTime"]
    )
    assert _condition(flipped, "Ready")["lastTransitionTime"] == "2026-11-27T12:02:00Z"


CERTIFICATE = CertificateFiles(certificate=b"CHAIN PEM", private_key=b"KEY PEM", ca=b"CA PEM")
BUNDLE = TokenSecretTemplate(name="directory-token", include_certificate=True)


def _data(secret: dict[str, object]) -> dict[str, bytes]:
    return {k: base64.b64decode(v) for k, v in secret["data"].items()}  # type: ignore[attr-defined]


def test_the_bundle_carries_the_certificate_the_token_was_issued_with_in_the_same_object() -> None:
    record = replace(RECORD, certificate=CERTIFICATE)

    data = _data(token_secret(OWNER, BUNDLE, record))

    assert data["access_token"] == b"secret-token"
    assert (data["tls.crt"], data["tls.key"], data["ca.crt"]) == (
        b"CHAIN PEM",
        b"KEY PEM",
        b"CA PEM",
    )
    assert token_secret(OWNER, BUNDLE, record)["type"] == "Opaque"


def test_without_include_certificate_no_key_is_copied() -> None:
    data = _data(token_secret(OWNER, TEMPLATE, replace(RECORD, certificate=CERTIFICATE)))

    assert set(data) == {"access_token", "token_type", "expires_at", "scope"}


def test_ca_crt_is_written_only_when_the_certificate_secret_has_one() -> None:
    record = replace(RECORD, certificate=replace(CERTIFICATE, ca=None))

    assert "ca.crt" not in _data(token_secret(OWNER, BUNDLE, record))


def test_the_certificate_reads_back_with_its_token_after_a_restart() -> None:
    record = replace(RECORD, certificate=CERTIFICATE)

    assert record_from_secret(token_secret(OWNER, BUNDLE, record), now=NOW) == ReadBack(record)


def test_template_keys_are_rendered_from_the_token_and_the_client() -> None:
    template = replace(
        TEMPLATE,
        templates={
            "authorization": "Authorization: ${token_type} ${access_token}",
            "token.env": "EXPIRES_AT=${expires_at}\nEXPIRES_IN=${expires_in}\n"
            "CLIENT=${client_namespace}/${client_name}\nTHUMBPRINT=${certificate_thumbprint}\n",
        },
    )

    data = _data(token_secret(OWNER, template, RECORD))

    assert data["authorization"] == b"Authorization: Bearer secret-token"
    assert data["token.env"] == (
        b"EXPIRES_AT=2026-11-27T12:05:00Z\nEXPIRES_IN=300\n"
        b"CLIENT=payments/directory\nTHUMBPRINT=thumb\n"
    )
    assert record_from_secret(token_secret(OWNER, template, RECORD), now=NOW) == ReadBack(RECORD)


def test_a_rendered_secret_over_the_api_servers_limit_is_a_render_error() -> None:
    template = replace(TEMPLATE, templates={f"k{i}": "${access_token}" * 270 for i in range(32)})
    record = replace(RECORD, access_token="t" * 200)

    with pytest.raises(ConfigurationError) as caught:
        token_secret(OWNER, template, record)

    assert caught.value.reason == "TemplateRenderFailed"
    assert caught.value.message == (
        "spec.tokenSecret.template.data would render to 1.6 MiB, more than the 1.0 MiB left in "
        "the token Secret (a Secret holds at most 1 MiB); data[k0] alone would be 53 KiB. Use "
        "${access_token} fewer times, or in fewer keys"
    )


def test_the_status_names_the_token_secret() -> None:
    assert _status(token_secret_name="directory-token")["tokenSecretName"] == "directory-token"
    assert _status()["tokenSecretName"] is None
