"""One RaidiamRegistration attempt against an in-memory Kubernetes and a MockTransport bank and
directory: register once (the Secret before the status, a restart reads it), refusals reported
and not retried, outages backed off with the registration kept, and the controller woken only
by changes that matter."""

from __future__ import annotations

import asyncio
import base64
import copy
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from raidiam_devenv.pki import TestPKI
from raidiam_operator.core.errors import KubernetesError, KubernetesUnavailable
from raidiam_operator.core.registration_pending import PENDING_ANNOTATION
from raidiam_operator.core.spec import Owner
from raidiam_operator.protocol.client import TokenClient
from raidiam_operator.protocol.keychecks import KeyChecker
from raidiam_operator.protocol.registrar import Registrar
from raidiam_operator.refresh.registrations import (
    RegistrationController,
    RegistrationReconciler,
    RegistrationSettings,
)

from .engine_fakes import FakeKube
from .test_registrar import (
    ASSERTION,
    CLIENT_URI,
    DIRECTORY_API,
    DIRECTORY_TOKEN,
    ISSUER,
    MTLS_REGISTRATION,
    REGISTERED,
    REGISTRATION_TOKEN,
    SSA,
    Bank,
    jwt_text,
)

NS = "tpp"
NOW = datetime(2026, 12, 8, 12, 0, tzinfo=UTC)


class Kube(FakeKube):
    """FakeKube, and the calls a registration makes besides: its finalizer and status, the
    directory's RaidiamClient, and the order of the writes."""

    def __init__(self) -> None:
        super().__init__(namespace=NS)
        self.patches: list[dict[str, Any]] = []
        self.order: list[str] = []
        self.fail_next_create = False
        #: the pending record as the patches left it
        self.pending: str | None = None
        self.clients = {
            (NS, "directory"): {
                "metadata": {"name": "directory", "namespace": NS},
                "spec": {
                    "issuer": "https://auth.example",
                    "clientId": "dir-client",
                    "transportCertificate": {"secretName": "transport"},
                },
            }
        }

    async def read_client(self, namespace: str, name: str) -> dict[str, Any] | None:
        return copy.deepcopy(self.clients.get((namespace, name)))

    async def read_issuer(self, name: str) -> dict[str, Any] | None:
        return None

    async def create_secret(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        if self.fail_next_create:
            self.fail_next_create = False
            raise KubernetesUnavailable("the API server went away")
        self.order.append("secret")
        return await super().create_secret(namespace, body)

    async def patch_registration(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        self.patches.append(patch)
        annotations = patch["metadata"].get("annotations") or {}
        if PENDING_ANNOTATION in annotations:
            self.order.append("pending" if annotations[PENDING_ANNOTATION] else "settled")
            self.pending = annotations[PENDING_ANNOTATION]

    async def patch_registration_status(self, owner: Owner, status: dict[str, Any]) -> None:
        self.order.append("status")
        await self.patch_status(owner, status)


@pytest.fixture
def kube(pki: TestPKI) -> Kube:
    kube = Kube()
    issued = pki.client_certificate("tpp.example")
    kube.put_tls_secret("transport", issued.cert_pem, issued.key_pem)
    kube.secrets["directory-token"] = {
        "metadata": {"name": "directory-token", "resourceVersion": "0"},
        "data": {
            "access_token": base64.b64encode(DIRECTORY_TOKEN.encode()).decode(),
            "scope": base64.b64encode(b"directory:software").decode(),
        },
    }
    return kube


@pytest.fixture
def bank() -> Bank:
    return Bank()


def reconciler(kube: Kube, bank: Bank) -> RegistrationReconciler:
    registrar = Registrar(TokenClient(transport=httpx.MockTransport(bank)))
    return RegistrationReconciler(
        kube, registrar, KeyChecker(), RegistrationSettings(), rng=random.Random(1)
    )


def body(generation: int = 1, *, pending: str | None = None, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "annotations": {PENDING_ANNOTATION: pending} if pending else {},
            "namespace": NS,
            "name": "bank",
            "uid": "uid-1",
            "generation": generation,
            "resourceVersion": "1",
            "finalizers": ["raidiam.io/registration"],
        },
        "spec": {
            "issuer": ISSUER,
            "transportCertificate": {"secretName": "transport"},
            "softwareStatement": {
                "fromDirectory": {
                    "clientRef": {"name": "directory"},
                    "apiBaseUrl": DIRECTORY_API,
                    "organisationId": "org-1",
                    "softwareStatementId": "ss-1",
                }
            },
            "metadata": {"redirectUris": ["https://tpp.example/cb"]},
            **spec,
        },
    }


def _answer_lost(request: httpx.Request) -> httpx.Response:
    """The bank took the POST and its answer never came."""
    raise httpx.ReadTimeout("no answer", request=request)


def posts(bank: Bank) -> int:
    return sum(1 for r in bank.requests if r.method == "POST")


async def test_a_registration_is_made_once_and_a_restart_reads_it_back_from_its_secret(
    kube: Kube, bank: Bank
) -> None:
    wait = await reconciler(kube, bank).reconcile(body(), now=NOW)

    assert posts(bank) == 1
    assert kube.order[:4] == ["pending", "secret", "settled", "status"]
    assert kube.ready()["reason"] == "Registered"
    status = kube.statuses[-1]
    assert status["clientId"] == "c-1"
    assert status["registrationClientUri"] == CLIENT_URI
    assert wait == timedelta(days=1)
    assert REGISTRATION_TOKEN not in str(kube.statuses) + str(kube.events)
    assert SSA not in str(kube.statuses) + str(kube.events)

    restarted = reconciler(kube, bank)
    again = await restarted.reconcile({**body(), "status": status}, now=NOW + timedelta(hours=1))

    assert posts(bank) == 1
    assert again == timedelta(hours=23)
    assert kube.ready()["reason"] == "Registered"


async def test_a_secret_write_lost_after_the_post_is_made_first_and_nothing_registered_twice(
    kube: Kube, bank: Bank
) -> None:
    kube.fail_next_create = True
    attempt = reconciler(kube, bank)

    wait = await attempt.reconcile(body(), now=NOW)
    assert wait is not None
    assert kube.degraded()["reason"] == "KubernetesUnavailable"
    await attempt.reconcile(body(), now=NOW + wait)

    assert posts(bank) == 1
    assert "bank-registration" in kube.secrets
    assert kube.ready()["reason"] == "Registered"


async def test_a_refusal_is_reported_with_the_servers_error_and_waits_for_a_change(
    kube: Kube, bank: Bank
) -> None:
    bank.answer(
        "POST",
        MTLS_REGISTRATION,
        400,
        json={"error": "invalid_redirect_uri", "error_description": "not in the SSA"},
    )

    wait = await reconciler(kube, bank).reconcile(body(), now=NOW)

    assert wait is None
    ready = kube.ready()
    assert ready["status"] == "False"
    assert ready["reason"] == "RegistrationRejected"
    assert "invalid_redirect_uri" in ready["message"]
    assert kube.events == [(True, "RegistrationRejected", kube.events[0][2])]
    assert "bank-registration" not in kube.secrets
    # A refusal made nothing: its record goes, and a spec change may register again.
    assert kube.order == ["pending", "settled", "status"]


async def test_an_outage_at_an_update_keeps_the_registration_ready_and_backs_off(
    kube: Kube, bank: Bank
) -> None:
    attempt = reconciler(kube, bank)
    await attempt.reconcile(body(), now=NOW)
    bank.answer("PUT", CLIENT_URI, 503)

    wait = await attempt.reconcile(
        body(2, metadata={"redirectUris": ["https://tpp.example/cb"], "scope": "accounts"}),
        now=NOW,
    )

    assert wait is not None
    assert timedelta(seconds=1) <= wait <= timedelta(seconds=60)
    assert kube.ready()["status"] == "True"
    assert kube.degraded()["status"] == "True"
    assert kube.degraded()["reason"] == "AuthorizationServerUnavailable"


async def test_an_unreadable_answer_to_a_post_is_not_registered_again(
    kube: Kube, bank: Bank
) -> None:
    bank.answer("POST", MTLS_REGISTRATION, 201, text="<html>")

    wait = await reconciler(kube, bank).reconcile(body(), now=NOW)

    assert wait is None
    assert kube.ready()["reason"] == "RegistrationInDoubt"
    assert "the bank may hold a client" in kube.ready()["message"]
    assert "is not JSON" in kube.ready()["message"]
    assert kube.order == ["pending", "status"]


async def test_a_directory_client_without_a_directory_token_is_reported(
    kube: Kube, bank: Bank
) -> None:
    del kube.secrets["directory-token"]

    await reconciler(kube, bank).reconcile(body(), now=NOW)

    assert kube.ready()["reason"] == "DirectoryTokenMissing"
    assert posts(bank) == 0


async def test_only_changes_that_matter_wake_a_registration() -> None:
    attempts: list[int] = []

    class Counting(RegistrationReconciler):
        def __init__(self) -> None:
            pass

        async def reconcile(self, body: Any, *, now: datetime) -> timedelta | None:
            attempts.append(body["metadata"]["generation"])
            return None

        def reads_secret(self, key: Any, name: str) -> bool:
            return name == "transport"

        def forget(self, key: Any) -> None:
            pass

    controller = RegistrationController(Counting())
    first = body()
    controller.observe(first)
    await asyncio.sleep(0.01)
    # Our own writes: the status, the finalizer; a new resourceVersion, the same spec.
    controller.observe({**first, "status": {"clientId": "c-1"}})
    added = copy.deepcopy(first)
    added["metadata"]["finalizers"] = ["other.example/keep", "raidiam.io/registration"]
    controller.observe(added)
    await asyncio.sleep(0.01)
    controller.secret_changed(NS, "unrelated")
    await asyncio.sleep(0.01)
    assert attempts == [1]

    controller.secret_changed(NS, "transport")
    await asyncio.sleep(0.01)
    controller.observe(body(2))
    await asyncio.sleep(0.01)
    await controller.aclose()

    assert attempts == [1, 1, 2]


async def test_a_registration_the_server_made_unmanageable_is_not_made_again(
    kube: Kube, bank: Bank
) -> None:
    bank.answer("POST", MTLS_REGISTRATION, 201, json={"client_id": "c-2"})

    wait = await reconciler(kube, bank).reconcile(body(), now=NOW)

    assert wait is None
    assert kube.ready()["reason"] == "RegistrationNotManageable"
    assert "c-2" in kube.ready()["message"]


async def test_a_replica_without_the_lease_sends_and_writes_nothing(kube: Kube, bank: Bank) -> None:
    class Closed:
        def holds_lease(self) -> bool:
            return False

    registrar = Registrar(TokenClient(transport=httpx.MockTransport(bank)))
    follower = RegistrationReconciler(
        kube, registrar, KeyChecker(), RegistrationSettings(), fence=Closed()
    )

    assert await follower.reconcile(body(), now=NOW) is None
    assert bank.requests == []
    assert kube.order == []
    assert kube.patches == []


# -- the pending record of a POST ----------------------------------------------------------


async def test_the_post_goes_out_only_once_its_pending_record_is_written(
    kube: Kube, bank: Bank
) -> None:
    recorded_when_posted: list[str | None] = []

    def registered(request: httpx.Request) -> httpx.Response:
        recorded_when_posted.append(kube.pending)
        return httpx.Response(201, json=REGISTERED)

    bank.answers[("POST", MTLS_REGISTRATION)] = registered

    await reconciler(kube, bank).reconcile(body(), now=NOW)

    assert recorded_when_posted == [f"2026-12-08T12:00:00Z {MTLS_REGISTRATION}"]
    assert kube.pending is None
    assert kube.ready()["reason"] == "Registered"


async def test_a_lost_answer_holds_the_registration_back_across_a_restart_until_the_record_goes(
    kube: Kube, bank: Bank
) -> None:
    bank.answers[("POST", MTLS_REGISTRATION)] = _answer_lost

    wait = await reconciler(kube, bank).reconcile(body(), now=NOW)

    assert wait is None
    ready = kube.ready()
    assert (ready["status"], ready["reason"]) == ("False", "RegistrationInDoubt")
    assert "timed out" in ready["message"]
    assert "at 2026-12-08T12:00:00Z" in ready["message"]
    assert ready["message"].endswith(
        f"kubectl annotate raidiamregistration bank -n {NS} {PENDING_ANNOTATION}-"
    )
    assert [e[:2] for e in kube.events] == [(True, "RegistrationInDoubt")]
    assert kube.pending is not None

    bank.answers[("POST", MTLS_REGISTRATION)] = lambda r: httpx.Response(201, json=REGISTERED)
    restarted = reconciler(kube, bank)
    again = await restarted.reconcile(
        {**body(pending=kube.pending), "status": kube.statuses[-1]}, now=NOW + timedelta(hours=1)
    )

    assert again is None
    assert posts(bank) == 1
    assert kube.ready()["reason"] == "RegistrationInDoubt"
    assert (
        "sent to https://matls-bank.example/reg at 2026-12-08T12:00:00Z"
        in (kube.ready()["message"])
    )

    await restarted.reconcile({**body(), "status": kube.statuses[-1]}, now=NOW + timedelta(hours=2))

    assert posts(bank) == 2
    assert kube.ready()["reason"] == "Registered"
    assert kube.pending is None


async def test_a_post_that_never_left_clears_its_record_and_is_retried(
    kube: Kube, bank: Bank
) -> None:
    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    bank.answers[("POST", MTLS_REGISTRATION)] = refused
    attempt = reconciler(kube, bank)

    wait = await attempt.reconcile(body(), now=NOW)

    assert wait is not None
    assert kube.degraded()["reason"] == "AuthorizationServerUnreachable"
    assert kube.order == ["pending", "settled", "status"]
    bank.answers[("POST", MTLS_REGISTRATION)] = lambda r: httpx.Response(201, json=REGISTERED)
    # The watch may still show the record this replica removed.
    stale = f"2026-12-08T12:00:00Z {MTLS_REGISTRATION}"
    await attempt.reconcile(body(pending=stale), now=NOW + wait)

    assert kube.ready()["reason"] == "Registered"
    assert kube.pending is None


async def test_a_record_beside_a_written_secret_is_removed_and_nothing_registered(
    kube: Kube, bank: Bank
) -> None:
    await reconciler(kube, bank).reconcile(body(), now=NOW)
    status = kube.statuses[-1]
    kube.order.clear()

    # The Secret was written, and the operator stopped before it removed the record.
    stale = f"2026-12-08T12:00:00Z {MTLS_REGISTRATION}"
    await reconciler(kube, bank).reconcile(
        {**body(pending=stale), "status": status}, now=NOW + timedelta(hours=1)
    )

    assert posts(bank) == 1
    assert kube.order[0] == "settled"
    assert kube.ready()["reason"] == "Registered"


@pytest.mark.parametrize(("held_back", "woken"), [(True, True), (False, False)])
async def test_removing_the_record_wakes_only_a_registration_held_back_for_it(
    held_back: bool, woken: bool
) -> None:
    attempts: list[str | None] = []

    class Counting(RegistrationReconciler):
        def __init__(self) -> None:
            pass

        async def reconcile(self, body: Any, *, now: datetime) -> timedelta | None:
            attempts.append(body["metadata"]["annotations"].get(PENDING_ANNOTATION))
            return None

        def held_back(self, key: Any) -> bool:
            return held_back

        def forget(self, key: Any) -> None:
            pass

    controller = RegistrationController(Counting())
    controller.observe(body(pending="2026-12-08T12:00:00Z https://bank.example/reg"))
    await asyncio.sleep(0.01)
    # A person removes the record; or the operator does, after a refusal that made nothing.
    controller.observe(body())
    await asyncio.sleep(0.01)
    await controller.aclose()

    pending = "2026-12-08T12:00:00Z https://bank.example/reg"
    assert attempts == ([pending, None] if woken else [pending])


# -- the software statement's claims, looked at on each check ------------------------------


def refresh_requested(status: dict[str, Any], at: str = "2026-12-08T13:00:00Z") -> dict[str, Any]:
    asked = body()
    asked["metadata"]["annotations"]["raidiam.io/refresh-requested-at"] = at
    return {**asked, "status": status}


@pytest.mark.parametrize(
    ("claims", "method", "reason"),
    [
        pytest.param({"iat": 1_700_000_500, "jti": "again"}, "GET", "Checked", id="re-issued"),
        pytest.param(
            {"software_redirect_uris": ["https://tpp.example/cb", "https://tpp.example/cb2"]},
            "PUT",
            "Updated",
            id="redirect-uris-changed",
        ),
        pytest.param(
            {"software_jwks_uri": "https://keystore.example/org-1/ss-1/rotated.jwks"},
            "PUT",
            "Updated",
            id="jwks-uri-changed",
        ),
    ],
)
async def test_a_check_sends_a_put_only_when_the_ssas_claims_changed(
    kube: Kube, bank: Bank, claims: dict[str, Any], method: str, reason: str
) -> None:
    attempt = reconciler(kube, bank)
    await attempt.reconcile(body(), now=NOW)
    ssa = jwt_text(
        {
            "software_id": "ss-1",
            "org_id": "org-1",
            "software_jwks_uri": "https://keystore.example/org-1/ss-1/application.jwks",
            "iat": 1_700_000_000,
            **claims,
        }
    )
    bank.answer("GET", ASSERTION, 200, text=ssa, headers={"content-type": "application/jwt"})

    await attempt.reconcile(refresh_requested(kube.statuses[-1]), now=NOW + timedelta(minutes=5))

    assert [r.method for r in bank.requests if "/reg" in r.url.path] == ["POST", method]
    ready = kube.ready()
    assert ready["reason"] == reason
    if method == "PUT":
        assert "SoftwareStatementChanged" in ready["message"]
        assert ssa.encode() in bank.last("PUT").content
        # The new claims are recorded: the next check reads back, nothing more.
        await attempt.reconcile(
            refresh_requested(kube.statuses[-1], "2026-12-08T14:00:00Z"),
            now=NOW + timedelta(minutes=10),
        )
        assert bank.last("GET").url.path.startswith("/reg/")
        assert kube.ready()["reason"] == "Checked"


async def test_a_directory_down_at_a_check_degrades_and_keeps_the_registration(
    kube: Kube, bank: Bank
) -> None:
    attempt = reconciler(kube, bank)
    await attempt.reconcile(body(), now=NOW)
    bank.answer("GET", ASSERTION, 503)

    wait = await attempt.reconcile(
        refresh_requested(kube.statuses[-1]), now=NOW + timedelta(minutes=5)
    )

    assert wait is not None
    assert kube.ready()["status"] == "True"
    assert kube.degraded()["reason"] == "SoftwareStatementUnavailable"
    assert kube.secrets["bank-registration"]
    assert posts(bank) == 1


async def test_deleting_a_registration_in_doubt_warns_once_that_the_bank_may_hold_a_client(
    kube: Kube, bank: Bank
) -> None:
    bank.answers[("POST", MTLS_REGISTRATION)] = _answer_lost
    registrations = reconciler(kube, bank)
    await registrations.reconcile(body(), now=NOW)
    assert kube.pending is not None
    deleting = body(pending=kube.pending)
    deleting["metadata"]["deletionTimestamp"] = "2026-12-08T13:00:00Z"
    kube.events.clear()
    patch_registration = kube.patch_registration
    refused = []

    async def finalizer_conflict_once(namespace: str, name: str, patch: dict[str, Any]) -> None:
        if "finalizers" in patch["metadata"] and not refused:
            refused.append(patch)
            raise KubernetesError("the object changed", status_code=409)
        await patch_registration(namespace, name, patch)

    kube.patch_registration = finalizer_conflict_once  # type: ignore[method-assign]

    retry = await registrations.reconcile(deleting, now=NOW + timedelta(hours=1))
    await registrations.reconcile(deleting, now=NOW + timedelta(hours=1))

    assert retry is not None, "the finalizer was let go although its patch was refused"
    assert kube.patches[-1]["metadata"]["finalizers"] == []
    assert [e[:2] for e in kube.events] == [(True, "RegistrationInDoubt")]
    message = kube.events[0][2]
    assert "sent to https://matls-bank.example/reg at 2026-12-08T12:00:00Z" in message
    assert "Check at the bank, and delete it there" in message
    assert posts(bank) == 1
