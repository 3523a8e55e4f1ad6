"""The engine delivers the token Secret in the shape the spec asks for: the bundle moves with
its token, a token the template cannot carry is dropped, the status names the Secret."""

from __future__ import annotations

import base64
import copy
from datetime import timedelta
from typing import Any

import httpx

from raidiam_devenv.pki import TestPKI
from tests.unit.engine_fakes import BODY, KEY, NS, Clock, FakeKube, Server, _engine


def _shaped(**token_secret: Any) -> dict[str, Any]:
    body = copy.deepcopy(BODY)
    body["spec"]["tokenSecret"] = token_secret
    return body


def _token_secret(kube: FakeKube) -> dict[str, bytes]:
    data = kube.secrets["directory-token"]["data"]
    return {key: base64.b64decode(value) for key, value in data.items()}


def _transport(kube: FakeKube) -> bytes:
    return base64.b64decode(kube.secrets["transport"]["data"]["tls.crt"])


async def test_after_a_rotation_the_old_pair_stays_until_the_new_token_is_written(
    kube: FakeKube, server: Server, clock: Clock, pki: TestPKI
) -> None:
    engine = _engine(kube, server, clock)
    engine.observe(_shaped(includeCertificate=True))
    await engine.reconcile(KEY)
    first_certificate = _transport(kube)
    assert _token_secret(kube)["tls.crt"] == first_certificate
    renewed = pki.client_certificate(
        "engine", not_before=clock.now - timedelta(days=1), not_after=clock.now + timedelta(days=60)
    )
    kube.put_tls_secret("transport", renewed.cert_pem, renewed.key_pem)
    engine.secret_changed(NS, "transport", "2")  # the watch delivers metadata only
    server.response = httpx.Response(503)
    clock.advance(2)  # one client's requests are at least 2 s apart

    await engine.reconcile(KEY)

    assert server.token_requests == 2
    failed = _token_secret(kube)
    assert (failed["access_token"], failed["tls.crt"]) == (b"token-1", first_certificate)

    server.response = None
    clock.advance(120)
    await engine.reconcile(KEY)

    written = _token_secret(kube)
    assert (written["access_token"], written["tls.crt"], written["tls.key"]) == (
        b"token-3",
        renewed.cert_pem,
        renewed.key_pem,
    )


async def test_switching_the_bundle_on_adds_the_pair_of_the_current_token_without_a_request(
    kube: FakeKube, server: Server, clock: Clock
) -> None:
    first = _engine(kube, server, clock)
    first.observe(BODY)
    await first.reconcile(KEY)

    restarted = _engine(kube, server, clock)  # holds the token only as the Secret does
    restarted.observe(_shaped(includeCertificate=True) | {"status": kube.statuses[-1]})
    await restarted.reconcile(KEY)

    assert server.token_requests == 1
    assert _token_secret(kube)["tls.crt"] == _transport(kube)


async def test_a_token_the_template_cannot_carry_is_dropped_and_the_old_one_kept(
    kube: FakeKube, server: Server, clock: Clock
) -> None:
    engine = _engine(kube, server, clock)
    engine.observe(_shaped(template={"data": {"scope.txt": "scope=${scope}"}}))
    await engine.reconcile(KEY)
    assert _token_secret(kube)["scope.txt"] == b"scope="
    server.response = httpx.Response(
        200, json={"access_token": "t2", "token_type": "Bearer", "scope": 'a"b', "expires_in": 300}
    )

    clock.advance(230)
    await engine.reconcile(KEY)

    assert _token_secret(kube)["access_token"] == b"token-1"
    assert kube.ready()["reason"] == "TemplateRenderFailed"
    assert "the token's scope contains a quote" in kube.ready()["message"]
    assert 'a"b' not in kube.ready()["message"]


async def test_the_status_names_the_secret_once_it_is_written(
    kube: FakeKube, server: Server, clock: Clock
) -> None:
    engine = _engine(kube, server, clock)
    engine.observe(_shaped(name="where-the-token-is"))

    await engine.reconcile(KEY)

    assert kube.statuses[-1]["tokenSecretName"] == "where-the-token-is"
    assert "where-the-token-is" in kube.secrets
