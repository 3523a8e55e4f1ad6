"""A RaidiamClient's client id from a RaidiamRegistration (spec.clientIdFrom): the spec, the
decision to use a registration's client id, and the engine waiting for it and following it."""

from __future__ import annotations

import copy
import re
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from raidiam_operator.core.client_ids import (
    REGISTRATION_ISSUER_MISMATCH,
    check_same_server,
    registered_client,
    with_registered_client,
)
from raidiam_operator.core.errors import ConfigurationError, RegistrationNotReady
from raidiam_operator.core.spec import RegistrationRef, parse_spec
from raidiam_operator.protocol.client import TokenClient
from raidiam_operator.refresh.engine import EngineSettings, RefreshEngine
from tests.unit.engine_fakes import BODY, ISSUER, KEY, NS, Clock, FakeKube, Server

BANK = "bank"
FROM_BANK = {
    "clientIdFrom": {"registrationRef": {"name": BANK}},
    "transportCertificate": {"secretName": "transport"},
}


def _registration(
    client_id: str | None = "bank-client-1",
    *,
    ready: str = "True",
    generation: int = 1,
    observed: int = 1,
    uid: str = "reg-1",
    **spec: Any,
) -> dict[str, Any]:
    status: dict[str, Any] = {
        "observedGeneration": observed,
        "conditions": [
            {
                "type": "Ready",
                "status": ready,
                "reason": "Registered" if ready == "True" else "Pending",
                "message": "",
                "observedGeneration": observed,
            }
        ],
    }
    if client_id is not None:
        status["clientId"] = client_id
    return {
        "metadata": {"namespace": NS, "name": BANK, "uid": uid, "generation": generation},
        "spec": {"issuer": ISSUER, "transportCertificate": {"secretName": "transport"}, **spec},
        "status": status,
    }


# -- the spec --------------------------------------------------------------------------------


def test_client_id_from_names_a_registration_and_may_leave_the_server_to_it() -> None:
    spec = parse_spec(FROM_BANK, name="to-bank")

    assert spec.client_id_from == RegistrationRef(BANK)
    assert spec.client_id == ""
    assert spec.issuer == ""
    assert spec.issuer_ref is None


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ({**FROM_BANK, "clientId": "c1"}, "set exactly one of spec.clientId"),
        ({"issuer": ISSUER, "transportCertificate": {"secretName": "t"}}, "exactly one of"),
        ({**FROM_BANK, "clientIdFrom": {}}, "registrationRef.name is required"),
        (
            {**FROM_BANK, "clientIdFrom": {"registrationRef": {"name": "Bank_1"}}},
            "is not a RaidiamRegistration name",
        ),
        (
            {**FROM_BANK, "clientIdFrom": {"registrationRef": {"name": "a" * 254}}},
            "is not a RaidiamRegistration name",
        ),
        ({**FROM_BANK, "tokenEndpoint": f"{ISSUER}/token"}, "remove spec.tokenEndpoint"),
        ({**FROM_BANK, "caBundle": {"configMapName": "ca"}}, "and spec.caBundle"),
        ({**FROM_BANK, "issuer": ISSUER, "issuerRef": {"name": "x"}}, "set exactly one of"),
    ],
    ids=["both", "neither", "no-ref", "not-dns", "too-long", "endpoint", "ca", "issuer-and-ref"],
)
def test_a_client_id_source_that_cannot_work_is_refused_naming_the_field(
    spec: dict[str, Any], says: str
) -> None:
    with pytest.raises(ConfigurationError, match=says):
        parse_spec(spec, name="to-bank")


def test_a_client_id_from_a_registration_asks_for_no_new_token_if_it_is_the_same_id() -> None:
    written = parse_spec({**BODY["spec"], "clientId": "bank-client-1"}, name="directory")
    registered = registered_client(_registration(), namespace=NS, ref=RegistrationRef(BANK))
    taken = with_registered_client(
        parse_spec({**FROM_BANK, "issuer": ISSUER}, name="directory"), registered
    )

    assert taken.client_id == "bank-client-1"
    assert taken.token_fingerprint() == written.token_fingerprint()


# -- the decision ----------------------------------------------------------------------------


def _deleting() -> dict[str, Any]:
    body = _registration()
    body["metadata"]["deletionTimestamp"] = "2026-11-27T12:00:00Z"
    return body


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (None, "does not exist; create it"),
        (_deleting(), "is being deleted"),
        ({**_registration(), "status": {}}, "it has no status yet"),
        (_registration(ready="False"), "to be Ready with a registered client id (now Ready False"),
        (_registration(generation=2, observed=1), "to register its current spec (generation 2"),
        (_registration(client_id=None), "status.clientId is not a client id"),
        (_registration(client_id="x" * 513), "status.clientId is not a client id"),
        (_registration(client_id="a\nb"), "status.clientId is not a client id"),
        (_registration(issuer="http://bank.example"), "cannot be used: spec.issuer"),
    ],
    ids=[
        "absent",
        "deleting",
        "no-status",
        "not-ready",
        "old-generation",
        "no-id",
        "long-id",
        "control",
        "bad-spec",
    ],
)
def test_a_registration_without_a_current_client_id_makes_the_client_wait_saying_for_what(
    body: dict[str, Any] | None, says: str
) -> None:
    with pytest.raises(RegistrationNotReady, match=re.escape(says)) as waiting:
        registered_client(body, namespace=NS, ref=RegistrationRef(BANK))

    assert waiting.value.reason == "RegistrationNotReady"
    assert f"RaidiamRegistration {NS}/{BANK}" in waiting.value.message


def test_a_client_that_names_no_server_takes_the_registrations() -> None:
    registered = registered_client(
        _registration(issuerRef={"name": "bank"}, issuer=None),
        namespace=NS,
        ref=RegistrationRef(BANK),
    )

    taken = with_registered_client(parse_spec(FROM_BANK, name="to-bank"), registered)

    assert (taken.client_id, taken.issuer_ref, taken.issuer) == ("bank-client-1", "bank", "")


@pytest.mark.parametrize(
    ("client_issuer", "registration_issuer", "refused"),
    [
        (ISSUER, ISSUER, False),
        ("https://other.example", ISSUER, True),
        (None, ISSUER, False),  # the client's ClusterRaidiamIssuer is missing: IssuerNotFound
    ],
)
def test_a_client_that_names_its_own_server_must_name_the_registrations(
    client_issuer: str | None, registration_issuer: str, refused: bool
) -> None:
    spec = parse_spec({**FROM_BANK, "issuer": client_issuer or ISSUER}, name="to-bank")
    registered = registered_client(_registration(), namespace=NS, ref=RegistrationRef(BANK))

    def check() -> None:
        check_same_server(
            spec,
            registered,
            namespace=NS,
            client_issuer=client_issuer,
            registration_issuer=registration_issuer,
        )

    if not refused:
        check()
        return
    with pytest.raises(ConfigurationError) as mismatch:
        check()
    assert mismatch.value.reason == REGISTRATION_ISSUER_MISMATCH
    assert "https://other.example" in mismatch.value.message
    assert ISSUER in mismatch.value.message
    assert f"RaidiamRegistration {NS}/{BANK}" in mismatch.value.message


# -- the engine ------------------------------------------------------------------------------


class Registrations:
    """The registrations as the RegistrationController would hold them."""

    def __init__(self) -> None:
        self.bodies: dict[tuple[str, str], dict[str, Any]] = {}

    async def read_registration(self, namespace: str, name: str) -> dict[str, Any] | None:
        return copy.deepcopy(self.bodies.get((namespace, name)))


class RecordingServer(Server):
    """The fake server, remembering which client id each token request named."""

    def __init__(self) -> None:
        super().__init__()
        self.client_ids: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if not request.url.path.endswith("openid-configuration"):
            self.client_ids.append(parse_qs(request.content.decode())["client_id"][0])
        return super().__call__(request)


@pytest.fixture
def recording() -> RecordingServer:
    return RecordingServer()


def _engine(kube: FakeKube, server: Server, clock: Clock, registrations: Registrations) -> Any:
    tokens = TokenClient(transport=httpx.MockTransport(server), clock=clock)
    return RefreshEngine(
        kube, tokens, EngineSettings(seed=1), clock=clock, registrations=registrations
    )


def _client() -> dict[str, Any]:
    return {**copy.deepcopy(BODY), "spec": copy.deepcopy(FROM_BANK)}


async def test_a_client_waits_for_its_registration_then_gets_a_token_for_its_client_id(
    kube: FakeKube, recording: RecordingServer, clock: Clock
) -> None:
    registrations = Registrations()
    engine = _engine(kube, recording, clock, registrations)
    engine.observe(_client())

    await engine.reconcile(KEY)

    assert recording.requests == 0
    assert kube.ready()["reason"] == "RegistrationNotReady"
    assert f"RaidiamRegistration {NS}/{BANK}" in kube.ready()["message"]

    registrations.bodies[(NS, BANK)] = _registration()
    engine.registration_changed(NS, BANK)
    assert engine.planned(KEY) == clock.now
    await engine.reconcile(KEY)

    assert recording.client_ids == ["bank-client-1"]
    assert kube.ready()["reason"] == "TokenValid"


async def test_a_new_client_id_gets_a_new_token_and_the_old_one_stays_meanwhile(
    kube: FakeKube, recording: RecordingServer, clock: Clock
) -> None:
    registrations = Registrations()
    registrations.bodies[(NS, BANK)] = _registration()
    engine = _engine(kube, recording, clock, registrations)
    engine.observe(_client())
    await engine.reconcile(KEY)
    token_before = kube.secrets["directory-token"]["data"]["access_token"]

    del registrations.bodies[(NS, BANK)]  # deleted, to be registered again
    engine.registration_changed(NS, BANK)
    clock.advance(5)
    await engine.reconcile(KEY)

    assert kube.ready()["reason"] == "RegistrationNotReady"
    assert kube.secrets["directory-token"]["data"]["access_token"] == token_before

    registrations.bodies[(NS, BANK)] = _registration("bank-client-2", uid="reg-2")
    engine.registration_changed(NS, BANK)
    clock.advance(5)
    await engine.reconcile(KEY)

    assert recording.client_ids == ["bank-client-1", "bank-client-2"]
    assert kube.ready()["reason"] == "TokenValid"
    assert kube.secrets["directory-token"]["data"]["access_token"] != token_before
    await engine.events_posted()
    issued = [e for e in kube.events if e[1] == "TokenIssued"]
    assert "bank-client-2" in issued[-1][2]


async def test_a_client_that_names_another_server_than_its_registration_sends_nothing(
    kube: FakeKube, recording: RecordingServer, clock: Clock
) -> None:
    registrations = Registrations()
    registrations.bodies[(NS, BANK)] = _registration(issuer="https://bank.example")
    engine = _engine(kube, recording, clock, registrations)
    engine.observe({**_client(), "spec": {**FROM_BANK, "issuer": ISSUER}})

    await engine.reconcile(KEY)

    assert recording.requests == 0
    assert kube.ready()["reason"] == REGISTRATION_ISSUER_MISMATCH
    assert "https://bank.example" in kube.ready()["message"]
