"""The refresh engine with an in-memory Kubernetes and a MockTransport authorization server."""

from __future__ import annotations

import base64
import copy
from dataclasses import replace
from typing import Any

import httpx
import jwt
import pytest

from raidiam_operator.core.spec import Owner, TokenSecretTemplate
from raidiam_operator.refresh.readback import record_from_secret
from raidiam_operator.refresh.render import token_secret
from tests.unit.engine_fakes import BODY, KEY, NS, Clock, FakeKube, Server, _engine


async def test_first_reconcile_issues_a_token_writes_the_secret_status_and_an_event(
    kube: FakeKube, server: Server, clock: Clock
) -> None:
    engine = _engine(kube, server, clock)
    engine.observe(BODY)

    await engine.reconcile(KEY)
    await engine.events_posted()  # Normal Events follow the attempt

    assert server.token_requests == 1
    assert base64.b64decode(kube.secrets["directory-token"]["data"]["access_token"]) == b"token-1"
    assert kube.ready()["status"] == "True"
    assert kube.events == [(False, "TokenIssued", kube.events[0][2])]
    assert "first token" in kube.events[0][2]


async def test_nothing_is_requested_or_written_before_renewal(
    kube: FakeKube, server: Server, clock: Clock
) -> None:
    engine = _engine(kube, server, clock)
    engine.observe(BODY)
    await engine.reconcile(KEY)
    writes = kube.writes

    clock.advance(60)
    await engine.reconcile(KEY)

    assert server.token_requests == 1
    assert kube.writes == writes


async def test_a_renewal_costs_one_request_and_two_writes_and_no_event(
    kube: FakeKube, server: Server, clock: Clock
) -> None:
    engine = _engine(kube, server, clock)
    engine.observe(BODY)
    await engine.reconcile(KEY)
    writes, events = kube.writes, len(kube.events)

    clock.advance(230)  # past 300 - 33% (+ jitter of at most 15 s)
    await engine.reconcile(KEY)

    assert server.token_requests == 2
    assert kube.writes - writes == 2  # the Secret and the status
    assert len(kube.events) == events


async def _first_token(kube: FakeKube, server: Server, clock: Clock) -> dict[str, Any]:
    """A token issued by one engine; the client as a restarted engine lists it."""
    first = _engine(kube, server, clock)
    first.observe(BODY)
    await first.reconcile(KEY)
    return {**BODY, "status": kube.statuses[-1]}


async def test_a_restarted_engine_reuses_the_stored_token(
    kube: FakeKube, server: Server, clock: Clock
) -> None:
    body = await _first_token(kube, server, clock)

    clock.advance(30)
    second = _engine(kube, server, clock)
    second.observe(body)
    await second.reconcile(KEY)

    assert server.token_requests == 1


async def test_a_restarted_engine_replaces_a_token_secret_edited_to_live_forever(
    kube: FakeKube, server: Server, clock: Clock
) -> None:
    body = await _first_token(kube, server, clock)
    annotations = kube.secrets["directory-token"]["metadata"]["annotations"]
    annotations["raidiam.io/expires-at"] = "2099-01-01T00:00:00Z"
    annotations["raidiam.io/binding"] = "verified"

    clock.advance(30)
    second = _engine(kube, server, clock)
    second.observe(body)
    await second.reconcile(KEY)
    await second.events_posted()

    assert server.token_requests == 2
    secret = kube.secrets["directory-token"]
    assert base64.b64decode(secret["data"]["access_token"]) == b"token-2"
    assert secret["metadata"]["annotations"]["raidiam.io/expires-at"] == "2026-11-27T12:05:30Z"
    assert kube.statuses[-1]["binding"] == "none"
    warnings = [event for event in kube.events if event[0]]
    assert warnings == [
        (
            True,
            "TokenSecretEdited",
            "the token Secret payments/directory-token is not as the operator wrote it: its "
            "raidiam.io/expires-at annotation says 2099-01-01T00:00:00Z, its expires_at key "
            "'2026-11-27T12:05:00Z'. A new token is requested to replace it; the operator owns "
            "this Secret, so change the RaidiamClient instead",
        )
    ]
    assert kube.events[-1] == (
        False,
        "TokenIssued",
        "Issued a token for client c1 (the token Secret was not as the operator wrote it); it "
        "expires at 2026-11-27T12:05:30Z",
    )


async def test_a_restarted_engine_replaces_a_token_bound_to_another_certificate(
    kube: FakeKube, server: Server, clock: Clock
) -> None:
    body = await _first_token(kube, server, clock)
    # Rewritten with care: every annotation agrees with a JWT bound to someone else's certificate.
    written = record_from_secret(kube.secrets["directory-token"], now=clock.now).record
    assert written is not None
    theirs = jwt.encode({"cnf": {"x5t#S256": "theirs"}}, "k" * 32, algorithm="HS256")
    forged = replace(
        written, access_token=theirs, binding="verified", certificate_thumbprint="theirs"
    )
    kube.store_secret(
        NS,
        token_secret(
            Owner(NS, "directory", "uid-1"), TokenSecretTemplate("directory-token"), forged
        ),
    )

    second = _engine(kube, server, clock)
    second.observe(body)
    await second.reconcile(KEY)
    await second.events_posted()

    assert server.token_requests == 2
    assert base64.b64decode(kube.secrets["directory-token"]["data"]["access_token"]) == b"token-2"
    assert "(the transport certificate changed)" in kube.events[-1][2]


async def test_a_transient_failure_keeps_the_token_and_honours_retry_after(
    kube: FakeKube, server: Server, clock: Clock
) -> None:
    engine = _engine(kube, server, clock)
    engine.observe(BODY)
    await engine.reconcile(KEY)
    token = kube.secrets["directory-token"]["data"]["access_token"]
    server.response = httpx.Response(503, headers={"Retry-After": "40"})

    clock.advance(230)
    await engine.reconcile(KEY)
    clock.advance(10)
    await engine.reconcile(KEY)  # inside Retry-After: must not ask again

    assert server.token_requests == 2
    assert kube.secrets["directory-token"]["data"]["access_token"] == token
    assert kube.ready()["status"] == "True"
    assert kube.degraded()["reason"] == "AuthorizationServerUnavailable"
    assert kube.statuses[-1]["failedAttempts"] == 1


async def test_a_rejection_names_the_oauth_code_and_waits_five_minutes(
    kube: FakeKube, server: Server, clock: Clock
) -> None:
    server.response = httpx.Response(401, json={"error": "invalid_client"})
    engine = _engine(kube, server, clock)
    engine.observe(BODY)

    await engine.reconcile(KEY)
    clock.advance(299)
    await engine.reconcile(KEY)

    assert server.token_requests == 1
    assert kube.degraded()["reason"] == "invalid_client"
    assert kube.events[0][:2] == (True, "invalid_client")
    assert "directory-token" not in kube.secrets


async def test_a_foreign_secret_of_the_same_name_is_left_alone(
    kube: FakeKube, server: Server, clock: Clock
) -> None:
    kube.secrets["directory-token"] = {
        "metadata": {"name": "directory-token", "resourceVersion": "9"},
        "data": {"x": "eQ=="},
    }
    engine = _engine(kube, server, clock)
    engine.observe(BODY)

    await engine.reconcile(KEY)

    assert server.token_requests == 0
    assert kube.secrets["directory-token"]["data"] == {"x": "eQ=="}
    assert kube.ready()["reason"] == "SecretConflict"


async def test_a_missing_transport_secret_is_reported_without_a_request(
    kube: FakeKube, server: Server, clock: Clock
) -> None:
    del kube.secrets["transport"]
    engine = _engine(kube, server, clock)
    engine.observe(BODY)

    await engine.reconcile(KEY)

    assert server.token_requests == 0
    assert kube.ready()["reason"] == "SecretNotFound"
    assert "payments/transport" in kube.ready()["message"]


async def test_an_unchanged_status_is_not_patched_again(
    kube: FakeKube, server: Server, clock: Clock
) -> None:
    del kube.secrets["transport"]
    engine = _engine(kube, server, clock)
    engine.observe(BODY)
    await engine.reconcile(KEY)
    patches = len(kube.statuses)

    clock.advance(60)
    await engine.reconcile(KEY)

    assert len(kube.statuses) == patches


async def test_a_token_secret_deleted_by_hand_is_restored_without_a_request(
    kube: FakeKube, server: Server, clock: Clock
) -> None:
    engine = _engine(kube, server, clock)
    engine.observe(BODY)
    await engine.reconcile(KEY)
    token = kube.secrets.pop("directory-token")["data"]["access_token"]

    engine.secret_changed(NS, "directory-token", None)
    await engine.reconcile(KEY)

    assert server.token_requests == 1
    assert kube.secrets["directory-token"]["data"]["access_token"] == token


async def test_a_standby_neither_requests_nor_writes_and_rereads_on_takeover(
    kube: FakeKube, server: Server, clock: Clock
) -> None:
    leader = _engine(kube, server, clock)
    leader.observe(BODY)
    await leader.reconcile(KEY)
    standby = _engine(kube, server, clock)
    standby.set_active(False)
    standby.observe(BODY)
    writes = kube.writes

    await standby.reconcile(KEY)
    assert (server.token_requests, kube.writes) == (1, writes)

    clock.advance(30)
    standby.set_active(True)
    await standby.reconcile(KEY)

    assert server.token_requests == 1, "the token in the Secret is still good"


# -- the engine: failed writes and shared token Secrets ------------------------------------------


class FlakyKube(FakeKube):
    """The API server goes away for exactly one Secret write."""

    def __init__(self) -> None:
        super().__init__()
        self.fail_next_write = False

    async def replace_secret(self, namespace: str, name: str, body: dict[str, Any]) -> Any:
        if self.fail_next_write:
            self.fail_next_write = False
            raise ConnectionError("the API server went away")
        return await super().replace_secret(namespace, name, body)


async def test_a_token_whose_secret_write_failed_reaches_the_secret_on_the_next_reconcile(
    kube: FakeKube, server: Server, clock: Clock
) -> None:
    flaky = FlakyKube()
    flaky.all_secrets = kube.all_secrets
    engine = _engine(flaky, server, clock)
    engine.observe(BODY)
    await engine.reconcile(KEY)
    clock.advance(250)  # past the renewal time
    flaky.fail_next_write = True

    with pytest.raises(ConnectionError):
        await engine.reconcile(KEY)
    await engine.reconcile(KEY)

    assert server.token_requests == 2, "no third request: the token in memory is used"
    stored = flaky.secrets["directory-token"]["data"]["access_token"]
    assert stored == "dG9rZW4tMg=="  # base64 of token-2


async def test_every_client_naming_a_token_secret_hears_when_it_changes(
    kube: FakeKube, server: Server, clock: Clock
) -> None:
    engine = _engine(kube, server, clock)
    engine.observe(BODY)
    await engine.reconcile(KEY)
    second = copy.deepcopy(BODY)
    second["metadata"].update(name="second", uid="uid-2")
    second["spec"]["tokenSecret"] = {"name": "directory-token"}
    engine.observe(second)
    await engine.reconcile((NS, "second"))
    assert kube.degraded()["reason"] == "SecretConflict"
    kube.secrets["directory-token"]["data"]["access_token"] = "dGFtcGVyZWQ="
    kube.secrets["directory-token"]["metadata"]["resourceVersion"] = "tampered"

    engine.secret_changed(NS, "directory-token", "tampered")
    engine.forget(NS, "second")
    await engine.reconcile(KEY)

    assert kube.secrets["directory-token"]["data"]["access_token"] == "dG9rZW4tMQ=="
    assert server.token_requests == 1
