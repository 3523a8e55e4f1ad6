"""A token client at the bank: a RaidiamClient whose client id comes from a RaidiamRegistration
(spec.clientIdFrom), on the real API server with the devenv directory and the data-provider bank.

What a user sees is asserted: the client's Ready condition while it waits, the token in its
Secret and the client id the bank issued it to, and the old token kept while the registration
is made again.
"""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from raidiam_devenv.dataprovider import DataProvider
from raidiam_devenv.directory import Directory
from raidiam_devenv.pki import TestPKI

from .conftest import World, wait_for
from .test_registration import Participant, participant_in

pytestmark = [pytest.mark.kube, pytest.mark.authserver]

CLIENT = "to-bank"


@pytest.fixture(name="participant")
def _participant(
    world: World,
    clean_directory: Directory,
    clean_data_provider: DataProvider,
    test_pki: TestPKI,
) -> Participant:
    return participant_in(world, clean_directory, clean_data_provider, test_pki)


def _token_client(**extra: Any) -> dict[str, Any]:
    """A RaidiamClient at the bank with the registration's client id and server."""
    return {
        "clientIdFrom": {"registrationRef": {"name": "bank"}},
        "transportCertificate": {"secretName": "directory-transport"},
        **extra,
    }


def _client_id_of_token(participant: Participant) -> str:
    client_id: str = participant.world.claims(CLIENT)["client_id"]
    return client_id


def _wait_for_a_new_token(world: World, old_token: str | None) -> None:
    wait_for(
        lambda: (
            world.token(CLIENT) != old_token and world.condition(CLIENT).get("status") == "True"
        ),
        timeout=60,
        what="a new token for the new client id",
    )


def test_a_token_from_the_bank_through_client_id_from(participant: Participant) -> None:
    world = participant.world
    world.create_client(CLIENT, _token_client())

    waiting = world.wait_reason(CLIENT, "RegistrationNotReady")
    assert waiting["status"] == "False"
    assert "RaidiamRegistration" in waiting["message"]
    assert "bank" in waiting["message"]
    assert world.token(CLIENT) is None

    registered = participant.registered("bank")

    world.wait_ready(CLIENT, timeout=60)
    assert _client_id_of_token(participant) == registered
    assert participant.bank.stats()["token_requests_by_client"][registered] >= 1
    issued = [e for e in world.events(CLIENT) if e.reason == "TokenIssued"]
    assert registered in issued[-1].message


def test_a_new_token_when_the_registrations_client_changes(participant: Participant) -> None:
    world = participant.world
    first = participant.registered("bank")
    world.create_client(CLIENT, _token_client())
    world.wait_ready(CLIENT, timeout=60)
    old_token = world.token(CLIENT)
    assert _client_id_of_token(participant) == first

    # Another registration of the software at the bank, not made yet: the client waits for it.
    world.patch_client(CLIENT, {"spec": {"clientIdFrom": {"registrationRef": {"name": "bank-2"}}}})
    waiting = world.wait_reason(CLIENT, "RegistrationNotReady", timeout=60)
    assert "bank-2" in waiting["message"]
    # Meanwhile the token issued before is still valid: kept.
    assert world.token(CLIENT) == old_token

    second = participant.registered("bank-2")

    assert second != first
    _wait_for_a_new_token(world, old_token)
    assert _client_id_of_token(participant) == second


def test_a_registration_deleted_and_made_again_gives_the_client_a_token_for_the_new_client(
    participant: Participant,
) -> None:
    """deletionPolicy Delete, the object deleted and created again at once (before any garbage
    collection): the old client is deleted at the bank, a new one is registered, and the token
    client follows it, keeping its still-valid token meanwhile."""
    world = participant.world
    first = participant.registered("bank", deletionPolicy="Delete")
    world.create_client(CLIENT, _token_client())
    world.wait_ready(CLIENT, timeout=60)
    old_token = world.token(CLIENT)

    participant.delete("bank")
    wait_for(lambda: participant.registration("bank") is None, timeout=60, what="bank deleted")
    assert participant.bank.registrations(first)["deleted"] == 1
    assert world.token(CLIENT) == old_token

    participant.create("bank", participant.spec(deletionPolicy="Delete"))
    participant.wait_reason("bank", "Registered")
    second = participant.credentials("bank")["client_id"]

    assert second != first
    _wait_for_a_new_token(world, old_token)
    assert _client_id_of_token(participant) == second


def test_a_client_id_from_a_registration_at_another_server_is_refused_naming_both(
    participant: Participant,
) -> None:
    world = participant.world
    participant.registered("bank")
    other = "https://other-bank.example"

    world.create_client(CLIENT, _token_client(issuer=other))

    mismatch = world.wait_reason(CLIENT, "RegistrationIssuerMismatch", timeout=60)
    assert other in mismatch["message"]
    assert participant.bank.issuer in mismatch["message"]
    assert world.token(CLIENT) is None


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        (
            _token_client(clientIdFrom={"registrationRef": {"name": "Bank_1"}}),
            "must be a RaidiamRegistration's name",
        ),
        (
            _token_client(clientIdFrom={"registrationRef": {"name": "bank/../x"}}),
            "must be a RaidiamRegistration's name",
        ),
        (_token_client(clientId="c1"), "set exactly one of spec.clientId"),
        (_token_client(caBundle={"configMapName": "ca"}), "come from the RaidiamRegistration"),
    ],
    ids=["not-dns", "path", "both-ids", "ca-without-issuer"],
)
def test_the_api_server_refuses_a_client_id_source_that_cannot_work(
    participant: Participant, spec: dict[str, Any], says: str
) -> None:
    with pytest.raises(ApiException) as refused:
        participant.world.create_client("bad", spec)

    assert refused.value.status == 422
    assert says in str(refused.value.body)
