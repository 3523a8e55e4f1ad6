"""RaidiamRegistrations in `kubectl raidiam`: the status table, describe, which object a NAME
names, and what `refresh --wait` makes of the operator's answer. Never a credential's value."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from raidiam_operator.cli.output import registration_table, status_output
from raidiam_operator.cli.registration_views import (
    REGISTRATION_HEADERS,
    format_registration_detail,
    registration_detail,
    registration_rows,
)
from raidiam_operator.cli.shared import (
    CLIENT_SHORT_NAME,
    EXIT_CONFIGURATION,
    EXIT_OK,
    EXIT_REJECTED,
    EXIT_TRANSIENT,
    REGISTRATION_SHORT_NAME,
    named,
)
from raidiam_operator.cli.waiting import (
    registration_exit_code,
    registration_refresh_outcome,
    registration_timeout_outcome,
)
from raidiam_operator.core.errors import ConfigurationError
from raidiam_operator.refresh.registration_status import DIGEST_ANNOTATION

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
REQUESTED_AT = datetime(2026, 3, 2, 9, 59, 30, 250000, tzinfo=UTC)
STAMP = "2026-03-02T09:59:30.250000Z"
ACCESS_TOKEN = "registration-access-token-never-shown"
CRDS = Path(__file__).resolve().parents[2] / "crds"


def _registration(name: str = "bank", *conditions: dict[str, Any], **status: Any) -> dict:
    return {
        "apiVersion": "raidiam.io/v1alpha1",
        "kind": "RaidiamRegistration",
        "metadata": {
            "namespace": "payments",
            "name": name,
            "creationTimestamp": "2026-02-28T08:00:00Z",
        },
        "spec": {
            "issuer": "https://auth.bank.example",
            "transportCertificate": {"secretName": "transport"},
        },
        "status": {"conditions": list(conditions), **status},
    }


def _condition(kind: str, status: str, reason: str, **extra: str) -> dict[str, str]:
    return {"type": kind, "status": status, "reason": reason, "message": f"{reason} says", **extra}


def _credentials() -> dict[str, Any]:
    values = {
        "client_id": "c7b3",
        "registration_access_token": ACCESS_TOKEN,
        "registration_client_uri": "https://auth.bank.example/reg/c7b3",
    }
    return {
        "metadata": {"name": "bank-registration", "annotations": {DIGEST_ANNOTATION: "v1:abc"}},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in values.items()},
    }


def test_the_table_shows_server_client_id_ready_reason_last_check_and_age() -> None:
    registered = _registration(
        "bank",
        _condition("Ready", "True", "Checked"),
        clientId="c7b3",
        lastCheckTime="2026-03-02T09:58:00Z",
    )
    shared = _registration("shared")
    shared["spec"] = {"issuerRef": {"name": "ofb-bank"}}

    rows = registration_rows([shared, registered], now=NOW, with_namespace=False)

    assert [dict(zip(REGISTRATION_HEADERS, row, strict=True)) for row in rows] == [
        {
            "RAIDIAMREGISTRATION": "bank",
            "SERVER": "https://auth.bank.example",
            "CLIENT ID": "c7b3",
            "READY": "True",
            "REASON": "Checked",
            "LAST CHECK": "2m0s ago",
            "AGE": "2d2h",
        },
        {
            "RAIDIAMREGISTRATION": "shared",
            "SERVER": "ClusterRaidiamIssuer/ofb-bank",
            "CLIENT ID": "-",
            "READY": "Unknown",
            "REASON": "Pending",
            "LAST CHECK": "-",
            "AGE": "2d2h",
        },
    ]


def test_across_namespaces_and_wide_the_table_adds_namespace_credentials_secret_and_message() -> (
    None
):
    failing = _registration(
        "bank",
        _condition("Ready", "False", "RegistrationRejected"),
        _condition("Degraded", "True", "RegistrationRejected"),
    )

    table = registration_table([failing], output="wide", now=NOW, with_namespace=True)

    header, row = table.splitlines()
    assert header.split()[:2] == ["NAMESPACE", "RAIDIAMREGISTRATION"]
    assert header.endswith("CREDENTIALS SECRET   MESSAGE")
    assert row.startswith("payments")
    assert "bank-registration" in row
    assert row.endswith("RegistrationRejected says")


@pytest.mark.parametrize("output", ["json", "yaml"])
def test_data_output_is_one_list_with_the_clients_then_the_registrations(output: str) -> None:
    client = {"kind": "RaidiamClient", "metadata": {"namespace": "payments", "name": "directory"}}

    printed = status_output(
        [client], registrations=[_registration()], output=output, now=NOW, with_namespace=False
    )

    listing = json.loads(printed) if output == "json" else yaml.safe_load(printed)
    assert listing["kind"] == "List"
    assert [(i["kind"], i["metadata"]["name"]) for i in listing["items"]] == [
        ("RaidiamClient", "directory"),
        ("RaidiamRegistration", "bank"),
    ]


def test_names_output_names_each_kind() -> None:
    client = {"metadata": {"namespace": "payments", "name": "directory"}}

    printed = status_output(
        [client], registrations=[_registration()], output="name", now=NOW, with_namespace=False
    )

    assert printed.splitlines() == [
        "raidiamclient.raidiam.io/directory",
        "raidiamregistration.raidiam.io/bank",
    ]


@pytest.mark.parametrize(
    ("argument", "kind", "name"),
    [
        ("directory", "RaidiamClient", "directory"),
        ("raidiamclient/directory", "RaidiamClient", "directory"),
        ("raidiamregistration/bank", "RaidiamRegistration", "bank"),
        ("RaidiamRegistrations/bank", "RaidiamRegistration", "bank"),
        ("raidiamreg/bank", "RaidiamRegistration", "bank"),
        ("raidiamregistration.raidiam.io/bank", "RaidiamRegistration", "bank"),
    ],
)
def test_a_name_is_a_client_unless_kubectls_kind_slash_name_says_otherwise(
    argument: str, kind: str, name: str
) -> None:
    assert named(argument) == (kind, name)


@pytest.mark.parametrize("argument", ["secret/bank", "raidiamregistration/"])
def test_another_kind_is_refused_saying_how_to_name_one(argument: str) -> None:
    with pytest.raises(ConfigurationError, match="raidiamregistration/NAME"):
        named(argument)


def test_the_short_names_are_the_crds() -> None:
    def short_names(file: str) -> list[str]:
        crd = yaml.safe_load((CRDS / file).read_text())
        return list(crd["spec"]["names"]["shortNames"])

    assert short_names("raidiam.io_raidiamclients.yaml") == [CLIENT_SHORT_NAME]
    assert short_names("raidiam.io_raidiamregistrations.yaml") == [REGISTRATION_SHORT_NAME]


def test_describe_shows_the_credentials_secrets_keys_and_digest_never_a_value() -> None:
    registration = _registration(
        "bank",
        _condition("Ready", "True", "Registered"),
        clientId="c7b3",
        registrationClientUri="https://auth.bank.example/reg/c7b3",
        registeredDigest="v1:abc",
        lastCheckTime="2026-03-02T09:58:00Z",
        credentialsSecretName="bank-registration",
    )

    detail = registration_detail(registration, credentials=_credentials(), readable=True)
    text = format_registration_detail(detail, now=NOW)

    assert detail["credentialsSecret"] == {
        "name": "bank-registration",
        "present": True,
        "keys": ["client_id", "registration_access_token", "registration_client_uri"],
        "digest": "v1:abc",
        "digestMatchesStatus": True,
        "retainedFrom": None,
    }
    assert "Server:             https://auth.bank.example" in text
    assert "Last check:         2026-03-02T09:58:00Z (2m0s ago)" in text
    assert "Digest:   v1:abc (as the status says)" in text
    assert "Ready  True    Registered: Registered says" in text
    encoded = _credentials()["data"]["registration_access_token"]
    for shown in (text, json.dumps(detail)):
        assert ACCESS_TOKEN not in shown
        assert encoded not in shown


def test_describe_without_the_secret_says_it_was_not_read() -> None:
    detail = registration_detail(_registration(), credentials=None, readable=False)

    text = format_registration_detail(detail, now=NOW)

    assert "Client ID:          - (not registered yet)" in text
    assert "State:    not read (see the note on stderr)" in text
    assert "none yet (the operator has not written a status)" in text


def test_a_read_answered_after_the_request_is_done_with_its_ready_message() -> None:
    answered = _registration(
        "bank", _condition("Ready", "True", "Checked"), lastRefreshRequest=STAMP
    )

    outcome = registration_refresh_outcome(answered, requested=STAMP, requested_at=REQUESTED_AT)

    assert outcome is not None
    assert (outcome.exit_code, outcome.message) == (EXIT_OK, "Checked: Checked says")


def test_an_earlier_answer_is_not_the_answer_to_this_request() -> None:
    earlier = _registration(
        "bank",
        _condition("Ready", "True", "Checked"),
        _condition(
            "Degraded", "True", "RegistrationGone", lastTransitionTime="2026-03-02T09:00:00Z"
        ),
        lastRefreshRequest="2026-03-01T00:00:00.000000Z",
    )

    assert registration_refresh_outcome(earlier, requested=STAMP, requested_at=REQUESTED_AT) is None


@pytest.mark.parametrize(
    ("reason", "code"),
    [
        ("RegistrationGone", EXIT_REJECTED),
        ("RegistrationRejected", EXIT_REJECTED),
        ("SoftwareStatementRefused", EXIT_REJECTED),
        ("SoftwareStatementUnavailable", EXIT_TRANSIENT),
        ("AuthorizationServerUnreachable", EXIT_TRANSIENT),
        ("SecretNotFound", EXIT_CONFIGURATION),
        ("RegistrationEndpointMissing", EXIT_CONFIGURATION),
    ],
)
def test_a_failure_since_the_request_exits_with_its_class_code(reason: str, code: int) -> None:
    failed = _registration(
        "bank",
        _condition("Ready", "False", reason),
        _condition("Degraded", "True", reason, lastTransitionTime="2026-03-02T09:59:31Z"),
    )

    outcome = registration_refresh_outcome(failed, requested=STAMP, requested_at=REQUESTED_AT)

    assert outcome is not None
    assert outcome.exit_code == code == registration_exit_code(reason)
    assert outcome.message == f"{reason}: {reason} says"


def test_no_answer_in_time_names_what_stands_in_the_way_or_the_silent_operator() -> None:
    stuck = _registration(
        "bank", _condition("Degraded", "True", "SecretNotFound"), lastRefreshRequest=None
    )

    blocked = registration_timeout_outcome(stuck, waited=60)
    silent = registration_timeout_outcome(_registration(), waited=60)

    assert (blocked.exit_code, blocked.message) == (
        EXIT_CONFIGURATION,
        "not read after 60 s; SecretNotFound: SecretNotFound says",
    )
    assert silent.exit_code == EXIT_TRANSIENT
    assert "no answer from the operator after 60 s" in silent.message
