"""A RaidiamClient reads only its own namespace: a Secret or ConfigMap of the same name in
another tenant's namespace is never used, and the client reports its own as missing."""

from __future__ import annotations

import base64
import copy
from typing import Any

from tests.unit.engine_fakes import BODY, NS, Clock, FakeKube, Server, _engine

# The client's namespace; the `kube` fixture's Secrets are in NS, another tenant's.
MINE = "tenant-a"
KEY = (MINE, "directory")


def _mine(**spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = copy.deepcopy(BODY)
    body["metadata"].update(namespace=MINE, uid="uid-mine")
    body["spec"].update(spec)
    return body


async def _reconciled(kube: FakeKube, server: Server, clock: Clock, body: dict[str, Any]) -> None:
    engine = _engine(kube, server, clock)
    engine.observe(body)
    await engine.reconcile(KEY)
    await engine.events_posted()


async def test_a_transport_certificate_of_the_same_name_in_another_namespace_is_not_used(
    kube: FakeKube, server: Server, clock: Clock
) -> None:
    await _reconciled(kube, server, clock, _mine())

    assert server.token_requests == 0
    assert kube.ready()["reason"] == "SecretNotFound"
    assert f"{MINE}/transport" in kube.ready()["message"]


async def test_a_signing_key_of_the_same_name_in_another_namespace_is_not_used(
    kube: FakeKube, server: Server, clock: Clock
) -> None:
    kube.secrets["signing"] = copy.deepcopy(kube.secrets["transport"])
    body = _mine(authMethod="private_key_jwt", signingKey={"secretName": "signing", "keyId": "k"})
    del body["spec"]["transportCertificate"]

    await _reconciled(kube, server, clock, body)

    assert server.token_requests == 0
    assert kube.ready()["reason"] == "SecretNotFound"
    assert f"{MINE}/signing" in kube.ready()["message"]


async def test_a_ca_bundle_of_the_same_name_in_another_namespace_is_not_used(
    kube: FakeKube, server: Server, clock: Clock
) -> None:
    kube.secrets_in(MINE)["transport"] = copy.deepcopy(kube.secrets["transport"])
    kube.config_maps["ca"] = {"data": {"ca.crt": "someone else's CA"}}

    await _reconciled(kube, server, clock, _mine(caBundle={"configMapName": "ca"}))

    assert server.token_requests == 0
    assert kube.ready()["reason"] == "ConfigMapNotFound"
    assert f"{MINE}/ca" in kube.ready()["message"]


async def test_a_token_secret_of_the_same_name_in_another_namespace_is_left_alone(
    kube: FakeKube, server: Server, clock: Clock
) -> None:
    kube.secrets_in(MINE)["transport"] = copy.deepcopy(kube.secrets["transport"])
    theirs = {
        "metadata": {"name": "directory-token", "resourceVersion": "0"},
        "data": {"x": "eQ=="},
    }
    kube.secrets["directory-token"] = copy.deepcopy(theirs)

    await _reconciled(kube, server, clock, _mine())

    assert kube.ready()["status"] == "True", "their Secret is no conflict of mine"
    written = kube.secrets_in(MINE)["directory-token"]["data"]["access_token"]
    assert base64.b64decode(written) == b"token-1"
    assert kube.secrets["directory-token"] == theirs
    assert NS != MINE
