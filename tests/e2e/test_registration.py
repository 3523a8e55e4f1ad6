"""RaidiamRegistration on the real API server, with the devenv directory (and its authorization
server, which issues the directory:software token) and the data-provider bank.

Each test is a participant: a RaidiamClient for the directory, a transport certificate shaped
as Open Finance Brasil has it, and a RaidiamRegistration at the bank with its SSA fresh from the
directory. What a user sees is asserted: the status, the credentials Secret, Events, and the
bank's own counters of what was registered.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from raidiam_devenv.authserver import AuthServer
from raidiam_devenv.controlplane import ControlPlane
from raidiam_devenv.dataprovider import DataProvider
from raidiam_devenv.directory import Directory
from raidiam_devenv.pki import TestPKI
from tests.integration.conftest import open_finance_certificate

from .conftest import GROUP, VERSION, World, started_world, wait_for
from .fault_helpers import assert_nothing_leaked

pytestmark = [pytest.mark.kube, pytest.mark.authserver]

PLURAL = "raidiamregistrations"
REFRESH_REQUESTED_AT = "raidiam.io/refresh-requested-at"
PENDING = "raidiam.io/registration-pending"


@dataclass
class Participant:
    """A participant's software as the directory knows it, in one namespace."""

    world: World
    bank: DataProvider
    organisation_id: str
    software_statement_id: str
    redirect_uris: list[str]
    directory_api: str
    directory_client_id: str

    def spec(self, **extra: Any) -> dict[str, Any]:
        return {
            "issuer": self.bank.issuer,
            "caBundle": {"configMapName": self.world.ca_config_map()},
            "transportCertificate": {"secretName": "directory-transport"},
            "softwareStatement": {
                "fromDirectory": {
                    "clientRef": {"name": "directory"},
                    "apiBaseUrl": self.directory_api,
                    "organisationId": self.organisation_id,
                    "softwareStatementId": self.software_statement_id,
                }
            },
            "metadata": {"redirectUris": self.redirect_uris[:1]},
            **extra,
        }

    def registered(self, name: str, **extra: Any) -> str:
        """A registration made from `spec(**extra)`, once Ready: its client id."""
        self.create(name, self.spec(**extra))
        self.wait_reason(name, "Registered")
        return self.credentials(name)["client_id"]

    def create(self, name: str, spec: dict[str, Any]) -> None:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "RaidiamRegistration",
            "metadata": {"name": name},
            "spec": spec,
        }
        self.world.custom.create_namespaced_custom_object(
            GROUP, VERSION, self.world.namespace, PLURAL, body
        )

    def patch(self, name: str, patch: dict[str, Any]) -> None:
        self.world.custom.patch_namespaced_custom_object(
            GROUP, VERSION, self.world.namespace, PLURAL, name, patch
        )

    def delete(self, name: str) -> None:
        self.world.custom.delete_namespaced_custom_object(
            GROUP, VERSION, self.world.namespace, PLURAL, name
        )

    def registration(self, name: str) -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = self.world.custom.get_namespaced_custom_object(
                GROUP, VERSION, self.world.namespace, PLURAL, name
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        return found

    def condition(self, name: str, kind: str = "Ready") -> dict[str, Any]:
        body = self.registration(name) or {}
        found = [c for c in (body.get("status") or {}).get("conditions") or [] if c["type"] == kind]
        return found[0] if found else {}

    def wait_reason(self, name: str, reason: str, *, timeout: float = 60.0) -> dict[str, Any]:
        wait_for(
            lambda: self.condition(name).get("reason") == reason,
            timeout=timeout,
            what=f"{name} Ready reason {reason} (now {self.condition(name)})",
        )
        return self.condition(name)

    def credentials(self, name: str) -> dict[str, str]:
        secret = self.world.core.read_namespaced_secret(
            f"{name}-registration", self.world.namespace
        )
        return {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}

    def events(self, name: str) -> list[Any]:
        return [
            e
            for e in self.world.core.list_namespaced_event(self.world.namespace).items
            if e.involved_object.name == name and e.involved_object.kind == "RaidiamRegistration"
        ]


def participant_in(
    world: World, directory: Directory, bank: DataProvider, pki: TestPKI
) -> Participant:
    """A participant's software in `world`'s namespace: registered in the directory, with a
    RaidiamClient `directory` (scope directory:software) on an Open Finance Brasil shaped
    transport certificate (Secret `directory-transport`)."""
    organisation_id, software_statement_id = str(uuid.uuid4()), str(uuid.uuid4())
    redirect_uris = [f"https://{software_statement_id}.example/cb"]
    directory.register_organisation(organisation_id, name="Participante Exemplo SA")
    certificate = open_finance_certificate(
        pki, organisation_id, software_statement_id, "tpp.example"
    )
    world.tls_client("directory", issued=certificate)
    client_id = world.client("directory")["spec"]["clientId"]
    directory.register_software_statement(
        organisation_id,
        software_statement_id,
        client_id=client_id,
        redirect_uris=redirect_uris,
    )
    return Participant(
        world,
        bank,
        organisation_id,
        software_statement_id,
        redirect_uris,
        directory.api_base_url,
        client_id,
    )


@pytest.fixture
def participant(
    world: World,
    clean_directory: Directory,
    clean_data_provider: DataProvider,
    test_pki: TestPKI,
) -> Participant:
    return participant_in(world, clean_directory, clean_data_provider, test_pki)


Restart = Callable[[], AbstractContextManager[World]]


@pytest.fixture
def restart(
    participant: Participant,
    control_plane: ControlPlane,
    auth_server: AuthServer,
    test_pki: TestPKI,
    kube_api: Any,
    tmp_path: Path,
) -> Restart:
    """Stop the participant's operator and start another in its namespace, stopped on the
    way out."""

    @contextmanager
    def restarted() -> Iterator[World]:
        participant.world.operator.stop()
        with started_world(
            control_plane,
            auth_server,
            test_pki,
            kube_api,
            participant.world.namespace,
            tmp_path / "restarted.log",
        ) as world:
            yield world

    return restarted


def annotations_of(participant: Participant, name: str) -> dict[str, str]:
    return dict(((participant.registration(name) or {})["metadata"].get("annotations")) or {})


def assert_no_registration_secret_leaked(participant: Participant, names: list[str]) -> None:
    tokens = [participant.credentials(name)["registration_access_token"] for name in names]
    assert_nothing_leaked(participant.world, tokens=tokens)
    for text in (participant.world.operator.log_text(), str(participant.events(names[0]))):
        for token in tokens:
            assert token not in text


def test_a_registration_from_the_directory_becomes_ready_with_its_credentials_in_a_secret(
    participant: Participant,
) -> None:
    participant.create("bank", participant.spec())

    ready = participant.wait_reason("bank", "Registered")

    status = (participant.registration("bank") or {})["status"]
    credentials = participant.credentials("bank")
    assert ready["status"] == "True"
    assert status["clientId"] == credentials["client_id"]
    assert status["registrationClientUri"] == credentials["registration_client_uri"]
    assert status["credentialsSecretName"] == "bank-registration"
    assert credentials["registration_access_token"]
    assert participant.bank.registrations(status["clientId"])["created"] == 1
    registered = [e for e in participant.events("bank") if e.reason == "Registered"]
    assert registered[0].type == "Normal"
    assert status["clientId"] in registered[0].message
    assert_no_registration_secret_leaked(participant, ["bank"])


def test_an_operator_restart_registers_nothing_twice(
    participant: Participant, restart: Restart
) -> None:
    participant.registered("bank")
    created = participant.bank.stats()["registrations_created_total"]
    with restart() as restarted:
        # The restarted operator finds the registration in its Secret and leaves it be
        # (a registration is read daily, and this one was just made) until asked.
        client_id = participant.credentials("bank")["client_id"]
        # On request (kubectl raidiam refresh sets the annotation) it reads it back: GET only.
        participant.patch(
            "bank", {"metadata": {"annotations": {REFRESH_REQUESTED_AT: "2026-12-08T00:00:00Z"}}}
        )
        participant.wait_reason("bank", "Checked")
        assert participant.bank.stats()["registrations_created_total"] == created
        assert participant.bank.registrations(client_id) == {
            "created": 1,
            "read": 1,
            "updated": 0,
            "deleted": 0,
        }
        assert "registration attempt" not in restarted.operator.log_text()


def test_a_restart_in_the_middle_of_registering_leaves_exactly_one_registration_at_the_bank(
    participant: Participant, restart: Restart
) -> None:
    bank = participant.bank
    created = bank.stats()["registrations_created_total"]
    # The bank registers the client, then holds its answer: the operator stops before it learns
    # the credentials.
    bank.delay_registration(25)
    participant.create("bank", participant.spec())
    wait_for(
        lambda: bank.stats()["registrations_created_total"] == created + 1,
        timeout=60,
        what="the bank to register the client",
    )

    with restart():
        ready = participant.wait_reason("bank", "RegistrationInDoubt")

        # What the stopped operator left on the object: when and where it was registering.
        pending = annotations_of(participant, "bank")[PENDING]
        assert pending.split()[1] == bank.mtls_registration_endpoint

        assert ready["status"] == "False"
        assert (
            f"sent to {bank.mtls_registration_endpoint} at {pending.split()[0]}"
            in (ready["message"])
        )
        assert "the bank may hold a client whose credentials are not here" in ready["message"]
        namespace = participant.world.namespace
        instruction = f"kubectl annotate raidiamregistration bank -n {namespace} {PENDING}-"
        assert ready["message"].endswith(instruction)
        warnings = [e for e in participant.events("bank") if e.reason == "RegistrationInDoubt"]
        assert warnings
        assert warnings[0].type == "Warning"
        assert bank.stats()["registrations_created_total"] == created + 1

        # The person checked at the bank and asks for a registration again.
        participant.patch("bank", {"metadata": {"annotations": {PENDING: None}}})

        participant.wait_reason("bank", "Registered")
        assert bank.stats()["registrations_created_total"] == created + 2
        assert PENDING not in annotations_of(participant, "bank")
        assert_no_registration_secret_leaked(participant, ["bank"])


def test_a_changed_software_statement_is_sent_with_a_put_on_a_refresh_request(
    participant: Participant, clean_directory: Directory
) -> None:
    client_id = participant.registered("bank")
    # The participant adds a redirect URI in the directory: the SSA's claims change.
    clean_directory.register_software_statement(
        participant.organisation_id,
        participant.software_statement_id,
        client_id=participant.directory_client_id,
        redirect_uris=[*participant.redirect_uris, "https://added.example/cb"],
    )

    participant.patch(
        "bank", {"metadata": {"annotations": {REFRESH_REQUESTED_AT: "2026-12-08T00:00:00Z"}}}
    )

    ready = participant.wait_reason("bank", "Updated")
    assert ready["status"] == "True"
    assert "SoftwareStatementChanged" in ready["message"]
    assert participant.bank.registrations(client_id)["updated"] == 1
    assert participant.credentials("bank")["client_id"] == client_id


def test_a_metadata_change_updates_the_registration_with_a_put(participant: Participant) -> None:
    client_id = participant.registered("bank")

    participant.patch("bank", {"spec": {"metadata": {"scope": "openid accounts"}}})

    ready = participant.wait_reason("bank", "Updated")
    assert "MetadataChanged" in ready["message"]
    assert participant.bank.registrations(client_id)["updated"] == 1
    assert "RegistrationUpdated" in {e.reason for e in participant.events("bank")}
    assert participant.credentials("bank")["client_id"] == client_id


@pytest.mark.parametrize(
    ("metadata", "fault", "error", "hint"),
    [
        pytest.param(
            {"redirectUris": ["https://elsewhere.example/cb"]},
            None,
            "invalid_redirect_uri",
            "software_redirect_uris",
            id="redirect-outside-ssa",
        ),
        pytest.param(
            {"tlsClientAuthSubjectDn": "CN=someone.example,O=Other,C=BR"},
            None,
            "invalid_client_metadata",
            "tls_client_auth_subject_dn the transport certificate's subject",
            id="subject-dn-of-another-certificate",
        ),
        pytest.param(
            {},
            Directory.issue_stale_ssa,
            "invalid_software_statement",
            "the Brasil profile takes one at most 300 s old",
            id="stale-ssa",
        ),
        pytest.param(
            {},
            Directory.issue_foreign_signed_ssa,
            "invalid_software_statement",
            "signed by the directory the server trusts",
            id="foreign-signed-ssa",
        ),
    ],
)
def test_a_rejection_is_reported_with_the_servers_error_and_a_hint_and_not_retried(
    participant: Participant,
    clean_directory: Directory,
    metadata: dict[str, Any],
    fault: Callable[[Directory], object] | None,
    error: str,
    hint: str,
) -> None:
    if fault is not None:
        fault(clean_directory)

    spec = participant.spec()
    spec["metadata"].update(metadata)
    participant.create("bank", spec)

    ready = participant.wait_reason("bank", "RegistrationRejected")
    assert ready["status"] == "False"
    assert error in ready["message"]
    assert hint in ready["message"]
    assert participant.condition("bank", "Degraded")["status"] == "True"
    warnings = [e for e in participant.events("bank") if e.reason == "RegistrationRejected"]
    assert len(warnings) == 1
    assert participant.bank.stats()["registrations_created_total"] == 0


def test_a_renewed_certificate_with_another_subject_is_registered_by_a_put(
    participant: Participant, test_pki: TestPKI
) -> None:
    client_id = participant.registered("bank")
    renewed = open_finance_certificate(
        test_pki,
        participant.organisation_id,
        participant.software_statement_id,
        "renewed.tpp.example",
    )
    participant.world.auth.register_tls_client(participant.directory_client_id, renewed)

    participant.world.tls_secret("directory-transport", renewed, replace=True)

    ready = participant.wait_reason("bank", "Updated")
    assert "SubjectDNChanged" in ready["message"]
    assert participant.bank.registrations(client_id)["updated"] == 1


def test_a_directory_outage_degrades_the_registration_and_keeps_it(
    participant: Participant, clean_directory: Directory
) -> None:
    client_id = participant.registered("bank")
    clean_directory.outage(status=503)

    # An update needs a fresh SSA, which the directory cannot give now.
    participant.patch("bank", {"spec": {"metadata": {"scope": "openid accounts"}}})

    wait_for(
        lambda: (
            participant.condition("bank", "Degraded").get("reason")
            == "SoftwareStatementUnavailable"
        ),
        timeout=60,
        what="Degraded SoftwareStatementUnavailable",
    )
    assert participant.condition("bank")["status"] == "True"
    assert participant.credentials("bank")["client_id"] == client_id
    clean_directory.clear_faults()
    participant.wait_reason("bank", "Updated", timeout=90)


def test_a_registration_deleted_at_the_server_is_reported_gone(participant: Participant) -> None:
    participant.bank.delete_registration(participant.registered("bank"))

    participant.patch(
        "bank", {"metadata": {"annotations": {REFRESH_REQUESTED_AT: "2026-12-08T00:00:00Z"}}}
    )

    ready = participant.wait_reason("bank", "RegistrationGone")
    assert ready["status"] == "False"
    assert participant.bank.stats()["registrations_created_total"] == 1


@pytest.mark.parametrize(
    ("policy", "deleted"), [("Delete", 1), ("Retain", 0)], ids=["delete", "retain"]
)
def test_deleting_the_object_deletes_the_registration_only_with_delete(
    participant: Participant, policy: str, deleted: int
) -> None:
    client_id = participant.registered("bank", deletionPolicy=policy)

    participant.delete("bank")

    wait_for(
        lambda: participant.registration("bank") is None,
        timeout=60,
        what="the RaidiamRegistration to go",
    )
    assert participant.bank.registrations(client_id)["deleted"] == deleted
    reasons = {e.reason for e in participant.events("bank")}
    if policy == "Delete":
        assert "RegistrationDeleted" in reasons
    else:
        assert "RegistrationRetained" in reasons
        # The Secret outlives the object, so the registration at the bank stays manageable.
        assert participant.credentials("bank")["client_id"] == client_id


def test_a_bank_that_refuses_delete_lets_the_object_go_with_a_warning(
    participant: Participant,
) -> None:
    participant.registered("bank", deletionPolicy="Delete")
    participant.bank.refuse_delete(status=405)

    participant.delete("bank")

    wait_for(
        lambda: participant.registration("bank") is None,
        timeout=60,
        what="the RaidiamRegistration to go",
    )
    warnings = [e for e in participant.events("bank") if e.reason == "RegistrationNotDeleted"]
    assert warnings
    assert "may still be there" in warnings[0].message


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ({"issuer": "http://bank.example"}, "issuer must be an https URL"),
        ({"issuerRef": {"name": "bank"}}, "set exactly one of spec.issuer"),
        (
            {"metadata": {"redirectUris": ["http://tpp.example/cb"]}},
            "redirectUris must be https URLs",
        ),
        ({"metadata": {"tokenEndpointAuthMethod": "client_secret_basic"}}, "Unsupported value"),
        (
            {"metadata": {"tokenEndpointAuthSigningAlg": "PS256"}},
            "only applies to private_key_jwt",
        ),
        ({"metadata": {"extra": {f"f{i}": i for i in range(33)}}}, "must have at most 32"),
        ({"deletionPolicy": "Orphan"}, "Unsupported value"),
    ],
    ids=["http", "issuer-and-ref", "redirect-http", "auth-method", "alg", "extra-many", "policy"],
)
def test_the_api_server_refuses_a_registration_that_cannot_work_and_says_why(
    participant: Participant, changes: dict[str, Any], says: str
) -> None:
    with pytest.raises(ApiException) as refused:
        participant.create("bad", participant.spec(**changes))

    assert refused.value.status == 422
    assert says in str(refused.value.body)


@pytest.fixture(autouse=True)
def _clean_bank_faults(clean_data_provider: DataProvider) -> Iterator[None]:
    yield
    clean_data_provider.clear_faults()
