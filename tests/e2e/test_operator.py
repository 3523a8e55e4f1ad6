"""The operator end to end: RaidiamClient in, token Secret out, on a real API server."""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime

import jwt
import pytest

from .conftest import World, wait_for

pytestmark = [pytest.mark.kube, pytest.mark.authserver]


def _expires_at(world: World, name: str) -> datetime:
    return datetime.fromisoformat(world.client(name)["status"]["expiresAt"].replace("Z", "+00:00"))


@pytest.mark.parametrize("method", ["tls_client_auth", "private_key_jwt"])
def test_each_auth_method_leads_to_a_secret_holding_a_certificate_bound_token(
    world: World, method: str
) -> None:
    issued = (
        world.tls_client("directory")
        if method == "tls_client_auth"
        else world.jwt_client("directory")
    )

    ready = world.wait_ready("directory")

    secret = world.secret("directory-token")
    assert secret.type == "Opaque"
    assert set(secret.data) == {"access_token", "token_type", "expires_at", "scope"}
    assert base64.b64decode(secret.data["token_type"]) == b"Bearer"
    assert base64.b64decode(secret.data["scope"]) == b"directory:software"
    assert secret.metadata.annotations["raidiam.io/certificate-thumbprint"] == issued.x5t_s256
    assert world.claims("directory")["cnf"]["x5t#S256"] == issued.x5t_s256
    assert secret.metadata.labels["app.kubernetes.io/managed-by"] == "raidiam-token-operator"
    owner = secret.metadata.owner_references[0]
    assert (owner.kind, owner.name, owner.controller) == ("RaidiamClient", "directory", True)
    assert ready["reason"] == "TokenValid"
    status = world.client("directory")["status"]
    assert status["certificateThumbprint"] == issued.x5t_s256
    assert status["tokenEndpoint"] == world.auth.mtls_token_endpoint
    assert status["observedGeneration"] == 1
    # The Event follows the writes that made the client Ready.
    wait_for(
        lambda: any(
            e.reason == "TokenIssued" and e.type == "Normal" for e in world.events("directory")
        ),
        timeout=10,
        what="the TokenIssued Event",
    )


def test_a_short_lived_token_is_refreshed_before_expiry_exactly_once_per_cycle(
    world: World,
) -> None:
    issued = world.tls_client("short", token_ttl=20)
    client_id = world.client("short")["spec"]["clientId"]
    world.wait_ready("short")
    seen: list[tuple[str, datetime]] = []

    def record_token() -> int:
        token = world.token("short")
        now = datetime.now(UTC)
        if token and (not seen or seen[-1][0] != token):
            if seen:
                previous_expiry = datetime.fromtimestamp(
                    jwt.decode(seen[-1][0], options={"verify_signature": False})["exp"], UTC
                )
                assert now < previous_expiry, "the new token arrived after the old one expired"
            seen.append((token, now))
        return len(seen)

    deadline = time.monotonic() + 50
    while time.monotonic() < deadline:
        record_token()
        time.sleep(0.5)
    requests = world.requests_for(client_id)
    # A refresh may be in flight as we stop watching: let its token reach the Secret.
    wait_for(lambda: record_token() >= requests, timeout=10, what="the last token to be written")

    assert len(seen) >= 3, f"expected at least two refreshes in 50 s, saw {len(seen)} tokens"
    assert requests == len(seen), "one token request per refresh"
    assert world.claims("short")["cnf"]["x5t#S256"] == issued.x5t_s256


def test_a_rotated_transport_certificate_gets_a_new_token_bound_to_it(world: World) -> None:
    world.tls_client("rotating")
    world.wait_ready("rotating")
    old_token = world.token("rotating")
    client_id = world.client("rotating")["spec"]["clientId"]
    renewed = world.pki.client_certificate(
        client_id
    )  # same subject, new key: what cert-manager does

    world.tls_secret("rotating-transport", renewed, replace=True)

    wait_for(
        lambda: world.claims("rotating")["cnf"]["x5t#S256"] == renewed.x5t_s256,
        timeout=10,
        what="a token bound to the renewed certificate",
    )
    assert world.token("rotating") != old_token
    assert world.client("rotating")["status"]["certificateThumbprint"] == renewed.x5t_s256


def test_a_server_outage_keeps_the_old_token_sets_degraded_and_recovers(world: World) -> None:
    world.tls_client("outage", token_ttl=20)
    world.wait_ready("outage")
    token = world.token("outage")
    client_id = world.client("outage")["spec"]["clientId"]
    world.auth.set_fault(mode="status", status=503, retry_after="1", client_id=client_id)

    degraded = world.wait_reason(
        "outage", "AuthorizationServerUnavailable", kind="Degraded", timeout=30
    )

    assert degraded["status"] == "True"
    assert world.token("outage") == token, "the token still valid stays in the Secret"
    assert world.condition("outage")["status"] == "True", "Ready while the old token is valid"
    assert world.client("outage")["status"]["failedAttempts"] >= 1

    world.auth.clear_faults()
    wait_for(
        lambda: world.condition("outage", "Degraded").get("status") == "False",
        timeout=70,
        what="recovery",
    )
    assert world.token("outage") != token
    assert world.condition("outage")["status"] == "True"


def test_a_server_outage_past_expiry_reports_token_expired_but_keeps_the_secret(
    world: World,
) -> None:
    world.tls_client("expiring", token_ttl=8)
    world.wait_ready("expiring")
    client_id = world.client("expiring")["spec"]["clientId"]
    world.auth.set_fault(mode="status", status=503, client_id=client_id)

    ready = world.wait_reason("expiring", "TokenExpired", timeout=30)

    assert ready["status"] == "False"
    assert world.token("expiring") is not None, "the Secret is never blanked"


def test_invalid_client_gives_a_clear_condition_and_a_warning_event(world: World) -> None:
    issued = world.pki.client_certificate("never-registered")
    world.tls_secret("unknown-transport", issued)
    world.create_client(
        "unknown",
        world.spec("never-registered", transportCertificate={"secretName": "unknown-transport"}),
    )

    degraded = world.wait_reason("unknown", "invalid_client", kind="Degraded")

    assert "rejected the token request with invalid_client" in degraded["message"]
    assert "registered" in degraded["message"]
    assert world.condition("unknown")["status"] == "False"
    warning = wait_for(
        lambda: [e for e in world.events("unknown") if e.type == "Warning"],
        timeout=10,
        what="a Warning event",
    )
    assert warning[0].reason == "invalid_client"
    assert world.secret("unknown-token") is None


def test_a_missing_secret_gives_secret_not_found_then_recovers_by_itself(world: World) -> None:
    issued = world.tls_client("late", create_secret=False)

    ready = world.wait_reason("late", "SecretNotFound")
    assert "late-transport" in ready["message"]
    assert "does not exist" in ready["message"]

    world.tls_secret("late-transport", issued)

    world.wait_ready("late", timeout=10)


def test_a_bad_spec_is_rejected_by_kubectl_with_a_readable_message(world: World) -> None:
    manifest = f"""
apiVersion: raidiam.io/v1alpha1
kind: RaidiamClient
metadata: {{name: bad, namespace: {world.namespace}}}
spec:
  issuer: http://auth.example
  clientId: x
  authMethod: private_key_jwt
  refresh: {{renewBefore: 2m, renewBeforePercentage: 20}}
"""
    result = world.control_plane.kubectl("apply", "-f", "-", input=manifest, check=False)

    assert result.returncode != 0
    assert "issuer must be an https URL" in result.stderr
    assert "private_key_jwt needs spec.signingKey" in result.stderr
    assert (
        "set either refresh.renewBefore or refresh.renewBeforePercentage, not both" in result.stderr
    )


def test_after_a_restart_a_valid_token_is_kept_without_a_new_request(world: World) -> None:
    world.tls_client("restart")
    world.wait_ready("restart")
    client_id = world.client("restart")["spec"]["clientId"]
    token = world.token("restart")
    next_refresh = world.client("restart")["status"]["nextRefreshTime"]
    requests = world.requests_for(client_id)

    world.operator.stop()
    world.operator.start()
    time.sleep(5)

    assert world.requests_for(client_id) == requests
    assert world.token("restart") == token
    assert world.condition("restart")["status"] == "True"
    assert world.client("restart")["status"]["nextRefreshTime"] is not None
    assert next_refresh


def test_deleting_the_client_garbage_collects_its_secret(world: World) -> None:
    world.tls_client("doomed")
    world.wait_ready("doomed")

    world.custom.delete_namespaced_custom_object(
        "raidiam.io", "v1alpha1", world.namespace, "raidiamclients", "doomed"
    )

    wait_for(
        lambda: world.secret("doomed-token") is None,
        timeout=30,
        what="the token Secret to be collected",
    )


def test_a_pre_existing_secret_of_someone_else_is_left_untouched(world: World) -> None:
    world.core.create_namespaced_secret(
        world.namespace,
        {"metadata": {"name": "taken-token"}, "stringData": {"mine": "do not touch"}},
    )

    world.tls_client("taken")

    ready = world.wait_reason("taken", "SecretConflict")
    assert "not owned by this RaidiamClient" in ready["message"]
    secret = world.secret("taken-token")
    assert base64.b64decode(secret.data["mine"]) == b"do not touch"
    assert not secret.metadata.owner_references


def test_the_refresh_annotation_issues_a_new_token(world: World) -> None:
    world.tls_client("manual")
    world.wait_ready("manual")
    token = world.token("manual")

    world.patch_client(
        "manual",
        {"metadata": {"annotations": {"raidiam.io/refresh-requested-at": "2026-11-27T12:00:00Z"}}},
    )

    wait_for(lambda: world.token("manual") not in (None, token), timeout=10, what="a new token")
    secret = world.secret("manual-token")
    assert secret.metadata.annotations["raidiam.io/refresh-requested-at"] == "2026-11-27T12:00:00Z"


def test_suspend_stops_requests_and_resume_continues(world: World) -> None:
    world.tls_client("paused", token_ttl=10)
    world.wait_ready("paused")
    client_id = world.client("paused")["spec"]["clientId"]

    world.patch_client("paused", {"spec": {"suspend": True}})
    world.wait_reason("paused", "Suspended", timeout=10)
    requests = world.requests_for(client_id)
    time.sleep(12)

    assert world.requests_for(client_id) == requests
    assert world.client("paused")["status"].get("nextRefreshTime") is None

    world.patch_client("paused", {"spec": {"suspend": False}})
    world.wait_ready("paused", timeout=15)
    wait_for(
        lambda: world.requests_for(client_id) > requests,
        timeout=10,
        what="a request after resuming",
    )


def test_a_token_secret_deleted_by_hand_is_restored_without_a_new_request(world: World) -> None:
    world.tls_client("restored")
    world.wait_ready("restored")
    client_id = world.client("restored")["spec"]["clientId"]
    token = world.token("restored")
    requests = world.requests_for(client_id)

    world.core.delete_namespaced_secret("restored-token", world.namespace)

    wait_for(lambda: world.token("restored") == token, timeout=10, what="the Secret to be restored")
    assert world.requests_for(client_id) == requests


def test_a_spec_change_issues_a_new_token_at_once(world: World) -> None:
    world.tls_client("changing")
    world.wait_ready("changing")
    token = world.token("changing")

    world.patch_client("changing", {"spec": {"parameters": {"resource": world.auth.resource}}})

    wait_for(
        lambda: world.token("changing") not in (None, token),
        timeout=10,
        what="a token for the new spec",
    )
    assert world.claims("changing")["aud"] == world.auth.resource
    wait_for(
        lambda: world.client("changing")["status"]["observedGeneration"] == 2,
        timeout=10,
        what="generation 2",
    )


def test_no_secret_material_reaches_the_operator_log(world: World) -> None:
    world.tls_client("canary-tls")
    world.jwt_client("canary-jwt")
    world.wait_ready("canary-tls")
    world.wait_ready("canary-jwt")
    tokens = [world.token("canary-tls"), world.token("canary-jwt")]

    log = world.operator.log_text()

    assert "issued token" in log
    for token in tokens:
        assert token
        assert token not in log
    events = " ".join(
        f"{e.reason} {e.message}" for e in world.events("canary-tls") + world.events("canary-jwt")
    )
    statuses = str(world.client("canary-tls")["status"]) + str(world.client("canary-jwt")["status"])
    for token in tokens:
        assert token not in events
        assert token not in statuses


def test_the_operator_runs_only_in_the_namespaces_it_is_given(
    world: World, tmp_path: object
) -> None:
    del tmp_path
    other = f"{world.namespace}-x"[:63]
    world.control_plane.kubectl("create", "namespace", other)
    try:
        world.core.create_namespaced_config_map(
            other,
            {
                "metadata": {"name": "authserver-ca"},
                "data": {"ca.crt": world.auth.ca_path.read_text()},
            },
        )
        body = {
            "apiVersion": "raidiam.io/v1alpha1",
            "kind": "RaidiamClient",
            "metadata": {"name": "outside"},
            "spec": {**world.spec("whoever"), "transportCertificate": {"secretName": "nothing"}},
        }
        world.custom.create_namespaced_custom_object(
            "raidiam.io", "v1alpha1", other, "raidiamclients", body
        )
        time.sleep(3)
        outside = world.custom.get_namespaced_custom_object(
            "raidiam.io", "v1alpha1", other, "raidiamclients", "outside"
        )
        assert "status" not in outside
    finally:
        world.control_plane.kubectl("delete", "namespace", other, "--wait=false", check=False)


def test_a_rotated_signing_key_gets_a_new_token_signed_with_it(world: World) -> None:
    world.jwt_client("signed")
    world.wait_ready("signed")
    client_id = world.client("signed")["spec"]["clientId"]
    old_token = world.token("signed")
    renewed = world.pki.signing_key("rsa")
    world.auth.register_private_key_jwt_client(
        client_id, {"keys": [renewed.public_jwk("sig-1")]}, bound=True
    )

    world.core.replace_namespaced_secret(
        "signed-signing",
        world.namespace,
        {
            "metadata": {"name": "signed-signing"},
            "data": {"tls.key": base64.b64encode(renewed.private_pem).decode()},
        },
    )
    world.secrets_seen.append(renewed.private_pem)

    wait_for(
        lambda: world.token("signed") not in (None, old_token),
        timeout=10,
        what="a token requested with the new signing key",
    )
    assert world.condition("signed")["status"] == "True"


def test_kubectl_explain_documents_the_spec(world: World) -> None:
    explained = world.control_plane.kubectl("explain", "raidiamclient.spec.refresh").stdout

    assert "renewBeforePercentage" in explained
    assert "Refresh when this percentage of the token's lifetime remains" in explained


def test_an_assertion_cannot_be_aimed_at_a_foreign_token_endpoint(world: World) -> None:
    manifest = f"""
apiVersion: raidiam.io/v1alpha1
kind: RaidiamClient
metadata: {{name: redirected, namespace: {world.namespace}}}
spec:
  issuer: https://auth.example
  clientId: x
  authMethod: private_key_jwt
  signingKey: {{secretName: signing, keyId: k}}
  tokenEndpoint: https://attacker.example/token
"""
    result = world.control_plane.kubectl("apply", "-f", "-", input=manifest, check=False)

    assert result.returncode != 0
    assert "set assertionAudience: tokenEndpoint" in result.stderr
