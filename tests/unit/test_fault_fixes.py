"""The fixes the e2e fault and hostile-input suites led to, pinned at unit level."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest

from raidiam_operator.core.errors import (
    AuthorizationServerRejection,
    ConfigurationError,
    InvalidTokenResponse,
)
from raidiam_operator.core.spec import parse_spec
from raidiam_operator.core.times import MAX_RETRY_AFTER, parse_retry_after
from raidiam_operator.protocol.tokens import classify_error_response, parse_token_response

from .engine_fakes import BODY, KEY, NS, Clock, FakeKube, Server, _engine

NOW = datetime(2026, 11, 27, 12, 0, 0, tzinfo=UTC)
SPEC = {
    "issuer": "https://auth.example",
    "clientId": "c1",
    "transportCertificate": {"secretName": "transport"},
}


# -- Retry-After and error codes from a hostile server -------------------------------------------


@pytest.mark.parametrize(
    "value", ["999999999999", "99999999999999999999", "Fri, 31 Dec 9999 23:59:59 GMT"]
)
def test_an_absurd_retry_after_is_capped_at_an_hour(value: str) -> None:
    assert parse_retry_after(value, now=NOW) == MAX_RETRY_AFTER.total_seconds()


def test_an_error_code_that_is_not_a_word_is_garbage_not_a_rejection() -> None:
    body = b'{"error": "invalid_client\\u001b[31m\\nFAKE", "error_description": "x"}'

    error = classify_error_response(400, {}, body, now=NOW)

    assert isinstance(error, InvalidTokenResponse)
    assert "without an OAuth error code" in error.message
    with pytest.raises(InvalidTokenResponse, match="has no access_token"):
        parse_token_response(
            body, now=NOW, token_endpoint="https://auth.example/token", certificate_thumbprint=None
        )


def test_a_plain_error_code_is_still_a_rejection() -> None:
    error = classify_error_response(400, {}, b'{"error": "invalid_scope"}', now=NOW)

    assert isinstance(error, AuthorizationServerRejection)
    assert error.error == "invalid_scope"


# -- a token Secret the API server would refuse ------------------------------------------------


@pytest.mark.parametrize(
    ("token_secret", "name", "fragment"),
    [
        ({"labels": {"team": "payments and cards"}}, "c", "the value 'payments and cards'"),
        ({"labels": {"team": "x" * 64}}, "c", "is not a valid label value"),
        (
            {"labels": {"bad key": "v"}},
            "c",
            "spec.tokenSecret.labels: 'bad key' is not a valid key",
        ),
        ({"labels": {"Example.com/team": "v"}}, "c", "'Example.com/team' is not a valid key"),
        ({"annotations": {"owned by": "v"}}, "c", "spec.tokenSecret.annotations: 'owned by'"),
        ({"annotations": {"big": "x" * 300_000}}, "c", "larger than 256 KiB"),
        ({}, "n" * 250, "is longer than 253 characters; set spec.tokenSecret.name"),
    ],
)
def test_a_token_secret_the_api_server_would_refuse_is_a_configuration_error(
    token_secret: dict[str, Any], name: str, fragment: str
) -> None:
    with pytest.raises(ConfigurationError) as raised:
        parse_spec({**SPEC, "tokenSecret": token_secret}, name=name)

    assert raised.value.reason == "InvalidTokenSecret"
    assert fragment in raised.value.message


def test_valid_labels_and_annotations_pass() -> None:
    spec = parse_spec(
        {
            **SPEC,
            "tokenSecret": {
                "labels": {"app.kubernetes.io/part-of": "payments", "tier": "", "a_b": "x.y-z"},
                "annotations": {"example.com/owner": "team payments, room 4"},
            },
        },
        name="c",
    )

    assert spec.token_secret.labels["app.kubernetes.io/part-of"] == "payments"


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
    flaky.secrets = kube.secrets
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
