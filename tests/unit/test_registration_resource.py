"""A RaidiamRegistration's spec as the operator reads it, and what it writes: the credentials
Secret (the record a restart reads back), the Secret kept on deletion, and the status."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from raidiam_operator.core.errors import ConfigurationError
from raidiam_operator.core.issuers import IssuerPolicy
from raidiam_operator.core.registration import Registration
from raidiam_operator.core.registration_spec import (
    REGISTRATION_KIND,
    FromDirectory,
    SecretKeyRef,
    check_directory_url,
    parse_registration_spec,
)
from raidiam_operator.core.spec import Owner
from raidiam_operator.refresh.registration_status import (
    DIGEST_ANNOTATION,
    RegistrationView,
    adopted,
    credentials_secret,
    emptied,
    recorded_in,
    registration_status,
    retained,
)
from raidiam_operator.refresh.render import Condition, is_owned_by

NOW = datetime(2026, 12, 8, 12, 0, tzinfo=UTC)
OWNER = Owner("tpp", "bank", "uid-1", kind=REGISTRATION_KIND)


def spec(**extra: Any) -> dict[str, Any]:
    return {
        "issuer": "https://bank.example",
        "transportCertificate": {"secretName": "transport"},
        "softwareStatement": {
            "fromDirectory": {
                "clientRef": {"name": "directory"},
                "apiBaseUrl": "https://matls-api.directory.example",
                "organisationId": "org",
                "softwareStatementId": "software",
            }
        },
        **extra,
    }


def test_a_spec_reads_into_the_server_side_a_client_has_and_the_metadata_to_register() -> None:
    parsed = parse_registration_spec(
        spec(metadata={"redirectUris": ["https://tpp.example/cb"], "scope": "accounts"}),
        name="bank",
    )

    assert parsed.server.issuer == "https://bank.example"
    assert parsed.server.transport_certificate is not None
    assert parsed.server.transport_certificate.secret_name == "transport"
    assert parsed.metadata.redirect_uris == ("https://tpp.example/cb",)
    assert parsed.metadata.grant_types == ("client_credentials",)
    assert parsed.credentials_secret == "bank-registration"
    assert parsed.deletion_policy == "Retain"
    assert isinstance(parsed.software_statement, FromDirectory)
    assert parsed.referenced_secrets() == {"transport"}


def test_an_ssa_and_an_initial_access_token_from_secrets_are_read_secrets() -> None:
    parsed = parse_registration_spec(
        spec(
            softwareStatement={"secretRef": {"name": "ssa"}},
            initialAccessToken={"name": "iat"},
        ),
        name="bank",
    )

    assert parsed.software_statement == SecretKeyRef("ssa", "software_statement")
    assert parsed.initial_access_token == SecretKeyRef("iat", "initial_access_token")
    assert parsed.referenced_secrets() == {"transport", "ssa", "iat"}


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ({"issuerRef": {"name": "bank"}}, "set exactly one of spec.issuer"),
        ({"issuer": "http://bank.example"}, "spec.issuer"),
        ({"metadata": {"extra": {"client_secret": "x"}}}, "spec.metadata.extra may not set"),
        ({"metadata": {"extra": {"scope": "x"}}}, "use its own setting"),
        ({"metadata": {"redirectUris": ["http://tpp.example/cb"]}}, "spec.metadata.redirectUris"),
        (
            {"metadata": {"extra": {f"field{i}": i for i in range(33)}}},
            "more than the 32 accepted",
        ),
        ({"softwareStatement": {}}, None),
        (
            {"softwareStatement": {"secretRef": {"name": "a"}, "fromDirectory": {}}},
            "exactly one of spec.softwareStatement",
        ),
        ({"transportCertificate": {}}, "spec.transportCertificate.secretName is required"),
    ],
    ids=[
        "issuer-and-ref",
        "plain-http",
        "extra-reserved",
        "extra-typed",
        "redirect-not-https",
        "extra-too-many",
        "no-statement-is-fine",
        "two-statements",
        "no-certificate",
    ],
)
def test_a_spec_that_cannot_work_says_which_field_to_fix(
    changes: dict[str, Any], says: str | None
) -> None:
    if says is None:
        assert parse_registration_spec(spec(**changes), name="bank").software_statement is None
        return
    with pytest.raises(ConfigurationError, match=says.replace(".", r"\.")):
        parse_registration_spec(spec(**changes), name="bank")


def test_the_directory_api_is_held_to_the_issuer_policy() -> None:
    directory = FromDirectory("directory", "https://matls-api.directory.example", "o", "s")
    check_directory_url(IssuerPolicy(), directory)
    check_directory_url(
        IssuerPolicy("allowlist", ("https://matls-api.directory.example",)), directory
    )

    with pytest.raises(ConfigurationError, match="apiBaseUrl is not a URL") as refused:
        check_directory_url(IssuerPolicy("allowlist", ("https://auth.example",)), directory)
    assert refused.value.reason == "IssuerNotAllowed"
    with pytest.raises(ConfigurationError, match="references-only"):
        check_directory_url(IssuerPolicy("references-only"), directory)


def registration(token: str | None = "rat-1") -> Registration:
    return Registration(
        client_id="client-1",
        registration_client_uri="https://bank.example/reg/client-1",
        registration_access_token=token,
        client_id_issued_at=NOW,
        document={},
    )


def test_the_credentials_secret_is_the_record_a_restart_reads_back() -> None:
    secret = credentials_secret(OWNER, "bank-registration", registration(), digest="v1:a:b:-")

    recorded = recorded_in(secret, checked_at=NOW)

    assert is_owned_by(secret, OWNER)
    assert recorded is not None
    assert recorded.registration.client_id == "client-1"
    assert recorded.registration.digest == "v1:a:b:-"
    assert recorded.registration.checked_at == NOW
    assert recorded.handle.registration_access_token == "rat-1"
    assert recorded_in(None, checked_at=None) is None


def test_a_secret_that_lost_the_registration_token_is_reported_not_registered_again() -> None:
    secret = credentials_secret(OWNER, "bank-registration", registration(), digest="d")
    del secret["data"]["registration_access_token"]

    with pytest.raises(ConfigurationError, match="registration_access_token") as lost:
        recorded_in(secret, checked_at=None)
    assert lost.value.reason == "RegistrationCredentialsLost"


def test_a_retained_secret_outlives_its_registration_and_is_taken_over_by_one_of_that_name() -> (
    None
):
    secret = credentials_secret(OWNER, "bank-registration", registration(), digest="d")

    kept = retained(secret, OWNER)
    successor = Owner("tpp", "bank", "uid-2", kind=REGISTRATION_KIND)
    stranger = Owner("tpp", "other", "uid-3", kind=REGISTRATION_KIND)

    assert kept["metadata"]["ownerReferences"] == []
    assert adopted(kept, stranger) is None
    taken = adopted(kept, successor)
    assert taken is not None
    assert is_owned_by(taken, successor)
    assert adopted(secret, successor) is None  # still owned: not left behind


def test_an_emptied_secret_of_a_deleted_registration_is_taken_over_and_records_nothing() -> None:
    """deletionPolicy Delete: the registration deleted at the server, its Secret emptied and
    left to garbage collection; a successor of the same name takes it over and registers anew,
    while a Secret that still records a registration stays the old owner's."""
    secret = credentials_secret(OWNER, "bank-registration", registration(), digest="d")

    empty = emptied(secret)
    successor = Owner("tpp", "bank", "uid-2", kind=REGISTRATION_KIND)
    stranger = Owner("tpp", "other", "uid-3", kind=REGISTRATION_KIND)

    assert empty["data"] == {}
    assert DIGEST_ANNOTATION not in empty["metadata"]["annotations"]
    assert is_owned_by(empty, OWNER)  # garbage collection still removes it
    assert adopted(empty, stranger) is None
    assert adopted(empty, OWNER) is None  # its own owner does not adopt it
    taken = adopted(empty, successor)
    assert taken is not None
    assert is_owned_by(taken, successor)
    assert recorded_in(taken, checked_at=None) is None
    assert adopted(secret, successor) is None  # credentials still in it: not taken


def view(**fields: Any) -> RegistrationView:
    values: dict[str, Any] = {
        "ready": Condition("Ready", True, "Registered", "client client-1 registered"),
        "degraded": Condition("Degraded", False, "AsExpected", "the last attempt succeeded"),
        "generation": 2,
        "previous": {},
        "credentials_secret": "bank-registration",
    }
    values.update(fields)
    return RegistrationView(**values)


def test_the_status_keeps_what_an_attempt_did_not_learn_and_moves_transitions_only_on_flips() -> (
    None
):
    first = registration_status(
        view(client_id="client-1", digest="d", checked_at=NOW, client_id_issued_at=NOW), now=NOW
    )
    later = NOW + timedelta(hours=1)
    second = registration_status(view(previous=first), now=later)
    failed = registration_status(
        view(
            previous=second,
            ready=Condition("Ready", False, "RegistrationRejected", "invalid_redirect_uri"),
        ),
        now=later,
    )

    assert second["clientId"] == "client-1"
    assert second["registeredDigest"] == "d"
    assert second["credentialsSecretName"] == "bank-registration"
    assert (
        second["conditions"][0]["lastTransitionTime"]
        == first["conditions"][0]["lastTransitionTime"]
    )
    assert (
        failed["conditions"][0]["lastTransitionTime"]
        != first["conditions"][0]["lastTransitionTime"]
    )
    assert failed["conditions"][0]["observedGeneration"] == 2
    assert "rat-1" not in str(failed)
