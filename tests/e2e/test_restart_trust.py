"""A restart trusts only what it can verify (issue 22, point 8).

The operator keeps no state of its own: after a restart it reads each token back from its token
Secret, which anyone who may edit Secrets in the namespace may edit. Here someone does, while
the operator is down, to make an unbound token look bound and live forever; the restarted
operator believes only what the token proves, says what did not add up, and replaces it.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from raidiam_operator.core.spec import Owner, TokenSecretTemplate
from raidiam_operator.refresh.readback import record_from_secret
from raidiam_operator.refresh.render import token_secret

from .conftest import World, wait_for
from .fault_helpers import assert_nothing_leaked, client_id_of, token_exp, tokens_by_client

pytestmark = [pytest.mark.kube, pytest.mark.authserver]

FOREVER = "2099-01-01T00:00:00Z"


def _warnings(world: World, name: str) -> list[str]:
    return [
        e.message or e.note or ""
        for e in world.events(name)
        if e.type == "Warning" and e.reason == "TokenSecretEdited"
    ]


def _restarted_with(world: World, name: str, edit: Any) -> str:
    """Stop the operator, edit the token Secret, start it again; return the token edited."""
    token = world.token(name)
    assert token is not None
    world.operator.stop()
    edit(world.secret(f"{name}-token"))
    world.operator.start()
    return token


def test_a_token_secret_edited_to_look_bound_and_live_forever_is_replaced_after_a_restart(
    world: World,
) -> None:
    # The server issues JWTs without cnf to this client: binding none.
    thumbprint = world.tls_client("edited", bound=False).x5t_s256
    world.wait_ready("edited")
    client_id = client_id_of(world, "edited")
    assert world.client("edited")["status"]["binding"] == "none"
    requests = world.requests_for(client_id)

    # kubectl annotate, while the operator is down.
    def annotate(secret: Any) -> None:
        world.core.patch_namespaced_secret(
            "edited-token",
            world.namespace,
            {
                "metadata": {
                    "annotations": {
                        "raidiam.io/expires-at": FOREVER,
                        "raidiam.io/binding": "verified",
                        "raidiam.io/certificate-thumbprint": thumbprint,
                    }
                }
            },
        )

    edited = _restarted_with(world, "edited", annotate)

    wait_for(
        lambda: world.token("edited") not in (None, edited),
        timeout=20,
        what="a new token in place of the edited Secret",
    )
    warnings = wait_for(lambda: _warnings(world, "edited"), timeout=10, what="the Warning")
    assert warnings[0].startswith(
        f"the token Secret {world.namespace}/edited-token is not as the operator wrote it: its "
        f"raidiam.io/expires-at annotation says {FOREVER}, its expires_at key '"
    )
    assert "A new token is requested to replace it" in warnings[0]
    status = world.client("edited")["status"]
    new = world.token("edited")
    assert new is not None
    assert status["binding"] == "none"
    assert status.get("certificateThumbprint") is None
    assert status["expiresAt"] != FOREVER
    secret = world.secret("edited-token")
    assert secret.metadata.annotations["raidiam.io/binding"] == "none"
    assert "raidiam.io/certificate-thumbprint" not in secret.metadata.annotations
    expires_at = datetime.fromisoformat(secret.metadata.annotations["raidiam.io/expires-at"])
    assert abs(expires_at - token_exp(new)) <= timedelta(seconds=5)
    assert world.requests_for(client_id) == requests + 1
    assert world.condition("edited")["status"] == "True"

    # Rewritten with care, digest and all, to outlive the JWT's exp by months: the exp holds.
    def rewrite(secret: Any) -> None:
        body = world.core.api_client.sanitize_for_serialization(secret)
        record = record_from_secret(body, now=datetime.now(UTC)).record
        assert record is not None
        later = replace(record, expires_at=record.issued_at + timedelta(days=200))
        owner = Owner(world.namespace, "edited", secret.metadata.owner_references[0].uid)
        forged = token_secret(owner, TokenSecretTemplate("edited-token"), later)
        forged["metadata"]["resourceVersion"] = secret.metadata.resource_version
        world.core.replace_namespaced_secret("edited-token", world.namespace, forged)

    rewritten = _restarted_with(world, "edited", rewrite)

    wait_for(
        lambda: world.token("edited") not in (None, rewritten),
        timeout=20,
        what="a new token in place of the rewritten Secret",
    )
    warnings = wait_for(
        lambda: [w for w in _warnings(world, "edited") if "exp claim" in w],
        timeout=10,
        what="the Warning about exp",
    )
    assert "annotation, " in warnings[0]
    assert "is later than the token's exp claim" in warnings[0]
    assert world.requests_for(client_id) == requests + 2
    assert_nothing_leaked(world, tokens=tokens_by_client(world).values())
