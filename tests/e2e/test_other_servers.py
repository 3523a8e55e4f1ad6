"""The operator against servers that are not Raidiam Connect but speak the same RFCs, on a real
API server: a self_signed_tls_client_auth client, opaque tokens from servers that do and do not
bind them, and a server that wants its token endpoint as the client assertion's audience."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from raidiam_devenv.authserver import AuthServer
from raidiam_devenv.pki import IssuedCertificate, self_signed_certificate

from .conftest import World, kubectl_raidiam, wait_for

pytestmark = [pytest.mark.kube, pytest.mark.authserver]


def _client_id(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


def _self_signed_client(world: World, name: str) -> IssuedCertificate:
    client_id = _client_id(name)
    issued = self_signed_certificate(client_id)
    world.auth.register_self_signed_tls_client(client_id, issued)
    world.tls_secret(f"{name}-transport", issued)
    world.create_client(
        name,
        world.spec(
            client_id,
            authMethod="self_signed_tls_client_auth",
            transportCertificate={"secretName": f"{name}-transport"},
        ),
    )
    return issued


def _jwt_client(
    world: World, name: str, server: AuthServer, spec: dict[str, Any] | None = None, **metadata: Any
) -> IssuedCertificate:
    """A private_key_jwt client with a transport certificate, registered on `server`."""
    client_id = _client_id(name)
    signing = world.pki.signing_key("rsa")
    issued = world.pki.client_certificate(client_id)
    server.register_private_key_jwt_client(
        client_id, {"keys": [signing.public_jwk("sig-1")]}, **metadata
    )
    world.tls_secret(f"{name}-transport", issued)
    world.signing_secret(f"{name}-signing", signing)
    world.create_client(
        name,
        {
            **world.spec(
                client_id,
                authMethod="private_key_jwt",
                transportCertificate={"secretName": f"{name}-transport"},
                signingKey={"secretName": f"{name}-signing", "keyId": "sig-1"},
            ),
            "issuer": server.issuer,
            **(spec or {}),
        },
    )
    return issued


def _annotations(world: World, name: str) -> dict[str, str]:
    return dict(world.secret(f"{name}-token").metadata.annotations)


def test_a_self_signed_client_gets_a_token_bound_to_its_certificate(world: World) -> None:
    issued = _self_signed_client(world, "selfsigned")

    world.wait_ready("selfsigned")

    status = world.client("selfsigned")["status"]
    assert status["binding"] == "verified"
    assert status["certificateThumbprint"] == issued.x5t_s256
    assert status["tokenEndpoint"] == world.auth.mtls_token_endpoint
    assert world.claims("selfsigned")["cnf"]["x5t#S256"] == issued.x5t_s256
    annotations = _annotations(world, "selfsigned")
    assert annotations["raidiam.io/binding"] == "verified"
    assert annotations["raidiam.io/certificate-thumbprint"] == issued.x5t_s256


def test_a_self_signed_client_without_a_transport_certificate_is_refused_at_admission(
    world: World,
) -> None:
    with pytest.raises(ApiException) as refused:
        world.create_client(
            "nocert", world.spec("nocert", authMethod="self_signed_tls_client_auth")
        )

    assert refused.value.status == 422
    assert "self_signed_tls_client_auth needs spec.transportCertificate" in str(refused.value.body)


def test_an_opaque_token_from_a_server_that_advertises_binding_is_advertised(
    world: World,
) -> None:
    client_id = _client_id("opaque")
    issued = world.pki.client_certificate(client_id)
    world.auth.register_tls_client(client_id, issued, access_token_format="opaque")
    world.tls_secret("opaque-transport", issued)
    world.create_client(
        "opaque",
        world.spec(
            client_id,
            authMethod="tls_client_auth",
            transportCertificate={"secretName": "opaque-transport"},
        ),
    )

    world.wait_ready("opaque")

    token = world.token("opaque")
    assert token is not None
    assert token.count(".") != 2  # opaque: nothing to parse, and nothing failed for it
    status = world.client("opaque")["status"]
    assert (status["binding"], status["certificateThumbprint"]) == ("advertised", issued.x5t_s256)
    assert _annotations(world, "opaque")["raidiam.io/binding"] == "advertised"
    described = kubectl_raidiam(
        world.control_plane, "describe", "opaque", "-n", world.namespace, "-o", "json"
    )
    assert described.returncode == 0, described.stderr
    binding = json.loads(described.stdout)["binding"]
    assert (binding["result"], binding["whenIssued"]) == ("bound", "advertised")


def test_an_opaque_token_from_a_server_that_binds_nothing_shows_no_thumbprint(
    world: World, unbinding_auth_server: AuthServer
) -> None:
    _jwt_client(world, "unbound", unbinding_auth_server, access_token_format="opaque", bound=False)

    world.wait_ready("unbound")

    status = world.client("unbound")["status"]
    assert status["binding"] == "none"
    assert status.get("certificateThumbprint") is None
    assert status["tokenEndpoint"] == unbinding_auth_server.mtls_token_endpoint
    annotations = _annotations(world, "unbound")
    assert annotations["raidiam.io/binding"] == "none"
    assert "raidiam.io/certificate-thumbprint" not in annotations


def test_a_server_wanting_the_token_endpoint_as_aud_is_quoted_whole_until_the_spec_says_so(
    world: World,
) -> None:
    _jwt_client(world, "tokenaud", world.auth, assertion_audience="token_endpoint")

    degraded = world.wait_reason("tokenaud", "invalid_client", kind="Degraded")

    wanted = world.auth.mtls_token_endpoint
    server_text = (
        f'The "aud" claim of the client_assertion must be the token endpoint URL {wanted}, '
        f'not "{world.auth.issuer}".'
    )
    assert server_text in degraded["message"]
    assert ".." not in degraded["message"]
    hint = (
        f"The client assertion's aud was the issuer {world.auth.issuer}; if the server wants its "
        f"token endpoint {wanted} there, set assertionAudience: tokenEndpoint in the RaidiamClient"
    )
    assert hint in degraded["message"]
    # The server named the audience: that hint comes before the usual invalid_client causes.
    assert degraded["message"].index(hint) < degraded["message"].index("Check that the client id")
    warning = wait_for(
        lambda: next((e for e in world.events("tokenaud") if e.reason == "invalid_client"), None),
        timeout=15,
        what="the invalid_client Warning Event",
    )
    assert warning.type == "Warning"
    assert server_text in warning.message
    assert hint in warning.message
    assert len(warning.message.encode()) <= 1024

    world.patch_client("tokenaud", {"spec": {"assertionAudience": "tokenEndpoint"}})

    world.wait_ready("tokenaud")
    assert world.client("tokenaud")["status"]["binding"] == "verified"


def test_a_long_server_description_reaches_the_condition_whole_and_the_event_within_one_kib(
    world: World,
) -> None:
    description = "Refused: " + "this server explains itself at length. " * 27
    description += "See https://auth.example/docs/errors#invalid_client for the fix."
    issued = world.pki.client_certificate("long")
    client_id = _client_id("long")
    world.auth.register_tls_client(client_id, issued)
    world.auth.set_fault(
        mode="status",
        status=401,
        client_id=client_id,
        body={"error": "invalid_client", "error_description": description},
    )
    world.tls_secret("long-transport", issued)
    world.create_client(
        "long",
        world.spec(
            client_id,
            authMethod="tls_client_auth",
            transportCertificate={"secretName": "long-transport"},
        ),
    )

    degraded = world.wait_reason("long", "invalid_client", kind="Degraded")

    assert description in degraded["message"]
    warning = wait_for(
        lambda: next((e for e in world.events("long") if e.reason == "invalid_client"), None),
        timeout=15,
        what="the invalid_client Warning Event",
    )
    note = warning.message
    assert len(note.encode()) <= 1024
    assert "…" in note  # the server's text gave way ...
    assert note.endswith("the one registered for it in the directory.")  # ... never the hint


def test_kubectl_get_wide_shows_the_method_and_the_binding(world: World) -> None:
    _self_signed_client(world, "wide")
    world.wait_ready("wide")

    table = world.control_plane.kubectl(
        "get", "raidiamclients", "-n", world.namespace, "-o", "wide"
    ).stdout

    header, row = table.splitlines()[:2]
    assert "METHOD" in header
    assert "BINDING" in header
    assert "self_signed_tls_client_auth" in row
    assert "verified" in row


def _jwt_manifest(
    world: World,
    tmp_path: Path,
    name: str,
    *,
    audience: str,
    certificate: bool = False,
    **metadata: Any,
) -> tuple[Path, str]:
    client_id = _client_id(name)
    signing = world.pki.signing_key("rsa")
    world.auth.register_private_key_jwt_client(
        client_id, {"keys": [signing.public_jwk("sig-1")]}, bound=certificate, **metadata
    )
    world.signing_secret(f"{name}-signing", signing)
    spec = world.spec(
        client_id,
        authMethod="private_key_jwt",
        signingKey={"secretName": f"{name}-signing", "keyId": "sig-1"},
        assertionAudience=audience,
    )
    if certificate:
        world.tls_secret(f"{name}-transport", world.pki.client_certificate(client_id))
        spec["transportCertificate"] = {"secretName": f"{name}-transport"}
    return world.manifest(tmp_path, name, spec), client_id


def test_check_verifies_a_self_signed_client_against_discovery(
    world: World, tmp_path: Path
) -> None:
    issued = self_signed_certificate("checked-selfsigned")
    world.tls_secret("checked-transport", issued)
    manifest = world.manifest(
        tmp_path,
        "checked",
        world.spec(
            "checked-selfsigned",
            authMethod="self_signed_tls_client_auth",
            transportCertificate={"secretName": "checked-transport"},
        ),
    )

    result = kubectl_raidiam(world.control_plane, "check", "-f", str(manifest))

    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok    the server supports self_signed_tls_client_auth" in result.stdout
    assert "ok    the server binds tokens to the transport certificate" in result.stdout
    assert f"ok    token endpoint {world.auth.mtls_token_endpoint} answers" in result.stdout


def test_check_tries_both_audiences_only_when_asked_and_names_the_one_to_set(
    world: World, tmp_path: Path
) -> None:
    manifest, client_id = _jwt_manifest(
        world, tmp_path, "audience", audience="issuer", assertion_audience="token_endpoint"
    )

    plain = kubectl_raidiam(world.control_plane, "check", "-f", str(manifest))
    assert plain.returncode == 0, plain.stdout + plain.stderr
    assert world.requests_for(client_id) == 0

    result = kubectl_raidiam(world.control_plane, "check", "-f", str(manifest), "--try-audiences")

    assert result.returncode == 2, result.stdout + result.stderr
    assert "info  assertionAudience: issuer (aud " in result.stdout
    assert "): refused with invalid_client" in result.stdout
    assert (
        f"info  assertionAudience: tokenEndpoint (aud {world.auth.token_endpoint}): "
        "a token was issued"
    ) in result.stdout
    assert (
        "FAIL  the server refuses assertionAudience: issuer but accepts tokenEndpoint; "
        "set assertionAudience: tokenEndpoint in the RaidiamClient"
    ) in result.stdout
    assert world.requests_for(client_id) == 2  # one per audience
    assert world.secret("audience-token") is None


def test_check_says_when_the_configured_audience_is_the_accepted_one(
    world: World, tmp_path: Path
) -> None:
    manifest, _ = _jwt_manifest(
        world, tmp_path, "fapi", audience="issuer", certificate=True, fapi_profile="2.0"
    )

    result = kubectl_raidiam(world.control_plane, "check", "-f", str(manifest), "--try-audiences")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "): refused with invalid_client" in result.stdout  # FAPI 2.0: only the issuer
    assert "ok    the server accepts the configured assertionAudience: issuer" in result.stdout
