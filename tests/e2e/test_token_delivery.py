"""The token Secret in the shape a workload needs, on the real API server: the token and the
certificate it was issued with in one object (`includeCertificate`), extra keys rendered from the
token (`template`), and `status.tokenSecretName`."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import jwt
import kubernetes
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from raidiam_devenv.pki import IssuedCertificate

from .conftest import World, wait_for

pytestmark = [pytest.mark.kube, pytest.mark.authserver]


def _thumbprint(cert_pem: bytes) -> str:
    der = x509.load_pem_x509_certificate(cert_pem).public_bytes(serialization.Encoding.DER)
    return base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()


def _data(secret: Any) -> dict[str, bytes]:
    return {key: base64.b64decode(value) for key, value in (secret.data or {}).items()}


def _bound_to(token: bytes) -> str:
    claims = jwt.decode(token, options={"verify_signature": False})
    return str(claims["cnf"]["x5t#S256"])


def _wait_bound_to(world: World, name: str, issued: IssuedCertificate) -> None:
    wait_for(
        lambda: world.claims(name)["cnf"]["x5t#S256"] == issued.x5t_s256,
        timeout=15,
        what="a token bound to the renewed certificate",
    )


@contextmanager
def _every_version(world: World, name: str) -> Iterator[list[dict[str, bytes]]]:
    """Each version of Secret `name` the API server stores while the block runs, in order.

    A watch from the version read at the start delivers every later one, so a version that lived
    for a moment between two others is seen too.
    """
    start = world.core.read_namespaced_secret(name, world.namespace)
    versions: list[dict[str, bytes]] = [_data(start)]
    watch = kubernetes.watch.Watch()
    stream = watch.stream(
        world.core.list_namespaced_secret,
        world.namespace,
        field_selector=f"metadata.name={name}",
        resource_version=start.metadata.resource_version,
        timeout_seconds=120,
    )

    stopping = threading.Event()
    broken: list[Exception] = []

    def collect() -> None:
        try:
            for event in stream:
                if event["type"] == "MODIFIED":
                    versions.append(_data(event["object"]))
        except Exception as error:  # the connection closes when the watch is stopped
            if not stopping.is_set():
                broken.append(error)

    thread = threading.Thread(target=collect, daemon=True)
    thread.start()
    try:
        yield versions
    finally:
        stopping.set()
        watch.stop()
        thread.join(timeout=5)
    assert not broken, f"the watch broke before the end, versions may be missing: {broken[0]!r}"


def test_the_bundle_changes_token_and_certificate_in_one_update(world: World) -> None:
    first = world.tls_client(
        "bundle", create_secret=False, tokenSecret={"includeCertificate": True}
    )
    world.tls_secret("bundle-transport", first, ca_pem=world.pki.ca_pem)
    world.wait_ready("bundle")
    client_id = world.client("bundle")["spec"]["clientId"]
    data = _data(world.secret("bundle-token"))
    assert (data["tls.crt"], data["tls.key"], data["ca.crt"]) == (
        first.cert_pem,
        first.key_pem,
        world.pki.ca_pem,
    )
    assert _bound_to(data["access_token"]) == first.x5t_s256

    with _every_version(world, "bundle-token") as versions:
        for _ in range(2):  # two rotations, as cert-manager renews: same subject, new key
            renewed = world.pki.client_certificate(client_id)
            world.tls_secret("bundle-transport", renewed, replace=True, ca_pem=world.pki.ca_pem)
            _wait_bound_to(world, "bundle", renewed)

    assert len({v["access_token"] for v in versions}) == 3, "one version per token"
    for version in versions:
        assert _bound_to(version["access_token"]) == _thumbprint(version["tls.crt"])
    latest = _data(world.secret("bundle-token"))
    assert (latest["tls.crt"], latest["tls.key"]) == (renewed.cert_pem, renewed.key_pem)
    assert world.secret("bundle-token").type == "Opaque"


def test_switching_the_bundle_on_adds_the_certificate_to_the_current_token(world: World) -> None:
    issued = world.tls_client("later")
    world.wait_ready("later")
    client_id = world.client("later")["spec"]["clientId"]
    token, requests = world.token("later"), world.requests_for(client_id)

    world.patch_client("later", {"spec": {"tokenSecret": {"includeCertificate": True}}})

    data = wait_for(
        lambda: (d := _data(world.secret("later-token"))).get("tls.crt") and d,
        timeout=10,
        what="the certificate in the token Secret",
    )
    assert (data["tls.crt"], data["tls.key"]) == (issued.cert_pem, issued.key_pem)
    assert data["access_token"].decode() == token
    assert world.requests_for(client_id) == requests, "no new token was needed"


TEMPLATES = {
    "authorization": "Authorization: ${token_type} ${access_token}",
    "token.json": '{"access_token": "${access_token}", "expires_at": "${expires_at}", '
    '"expires_in": ${expires_in}, "scope": "${scope}"}',
    "token.env": 'ACCESS_TOKEN="${access_token}"\nCLIENT="${client_namespace}/${client_name}"\n'
    'THUMBPRINT="${certificate_thumbprint}"\nPRICE="$$5"\n',
}


def test_template_keys_are_rendered_from_each_token(world: World) -> None:
    issued = world.tls_client("shaped", tokenSecret={"template": {"data": TEMPLATES}})
    world.wait_ready("shaped")

    data = _data(world.secret("shaped-token"))
    token = data["access_token"].decode()
    assert data["authorization"] == f"Authorization: Bearer {token}".encode()
    document = json.loads(data["token.json"])
    assert document["access_token"] == token
    assert document["expires_at"] == data["expires_at"].decode()
    assert document["scope"] == "directory:software"
    assert 0 < document["expires_in"] <= 3600
    assert data["token.env"].decode() == (
        f'ACCESS_TOKEN="{token}"\nCLIENT="{world.namespace}/shaped"\n'
        f'THUMBPRINT="{issued.x5t_s256}"\nPRICE="$5"\n'
    )

    world.patch_client(
        "shaped",
        {"metadata": {"annotations": {"raidiam.io/refresh-requested-at": "2026-12-02T01:00:00Z"}}},
    )
    renewed = wait_for(
        lambda: (d := _data(world.secret("shaped-token")))["access_token"].decode() != token and d,
        timeout=10,
        what="a new token",
    )
    assert renewed["authorization"] == b"Authorization: Bearer " + renewed["access_token"]


TLS = {"authMethod": "tls_client_auth", "transportCertificate": {"secretName": "t"}}
JWT_WITHOUT_CERTIFICATE = {
    "authMethod": "private_key_jwt",
    "signingKey": {"secretName": "s", "keyId": "k"},
}


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        (
            TLS | {"tokenSecret": {"template": {"data": {"header": "Bearer ${password}"}}}},
            "spec.tokenSecret.template.data[header]: Invalid value",
        ),
        (
            TLS | {"tokenSecret": {"template": {"data": {"header": "Bearer $access_token"}}}},
            "a template may use only ${access_token}",
        ),
        (
            TLS | {"tokenSecret": {"template": {"data": {"access_token": "${access_token}"}}}},
            "template.data may not set access_token",
        ),
        (
            TLS | {"tokenSecret": {"template": {"data": {"a/b": "${access_token}"}}}},
            "template.data keys must be valid Secret keys",
        ),
        (
            JWT_WITHOUT_CERTIFICATE | {"tokenSecret": {"includeCertificate": True}},
            "includeCertificate needs spec.transportCertificate",
        ),
    ],
)
def test_a_bad_token_secret_shape_is_refused_at_admission(
    world: World, spec: dict[str, Any], says: str
) -> None:
    manifest = json.dumps(
        {
            "apiVersion": "raidiam.io/v1alpha1",
            "kind": "RaidiamClient",
            "metadata": {"name": "bad", "namespace": world.namespace},
            "spec": world.spec("x", **spec),
        }
    )

    result = world.control_plane.kubectl("apply", "-f", "-", input=manifest, check=False)

    assert result.returncode != 0
    assert says in result.stderr


def test_a_template_too_large_for_a_secret_is_reported_and_the_token_kept(world: World) -> None:
    world.tls_client("oversized")
    world.wait_ready("oversized")
    token = world.token("oversized")
    huge = {f"copy{i}": "${access_token}" * 270 for i in range(32)}

    world.patch_client("oversized", {"spec": {"tokenSecret": {"template": {"data": huge}}}})

    ready = world.wait_reason("oversized", "TemplateRenderFailed", timeout=15)
    assert "(a Secret holds at most 1 MiB); data[copy0] alone would be" in ready["message"]
    assert world.token("oversized") == token
    assert set(_data(world.secret("oversized-token"))) == {
        "access_token",
        "token_type",
        "expires_at",
        "scope",
    }

    world.patch_client("oversized", {"spec": {"tokenSecret": {"template": {"data": None}}}})
    world.wait_ready("oversized", timeout=15)


def test_the_status_names_the_token_secret(world: World) -> None:
    world.tls_client("default-name")
    world.tls_client("custom-name", tokenSecret={"name": "where-the-token-is"})

    world.wait_ready("default-name")
    world.wait_ready("custom-name")

    assert world.client("default-name")["status"]["tokenSecretName"] == "default-name-token"
    assert world.client("custom-name")["status"]["tokenSecretName"] == "where-the-token-is"
    assert world.secret("where-the-token-is") is not None
