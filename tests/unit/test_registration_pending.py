"""The pending record of a registration POST: how it reads back, which failures may have made
a client (so no POST goes out again by itself), and what the person who decides is told."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from raidiam_operator.core.errors import (
    AuthorizationServerRejection,
    ConfigurationError,
    ConnectionFailure,
    InvalidTokenResponse,
    RegistrationRejected,
    RequestNotSent,
    ServerUnavailable,
)
from raidiam_operator.core.registration_pending import (
    PENDING_ANNOTATION,
    PendingRegistration,
    in_doubt,
    may_have_registered,
    pending_registration,
    recording,
    removal,
)
from raidiam_operator.core.texts import EVENT_NOTE_LIMIT

SENT = datetime(2026, 12, 8, 12, 0, 5, 123456, tzinfo=UTC)
ENDPOINT = "https://matls-bank.example/reg"


def test_the_record_reads_back_as_written_to_the_second() -> None:
    mark = PendingRegistration.at(SENT, ENDPOINT)
    annotations = recording(mark)["metadata"]["annotations"]  # type: ignore[index]

    assert annotations == {PENDING_ANNOTATION: f"2026-12-08T12:00:05Z {ENDPOINT}"}
    assert pending_registration(annotations) == mark
    assert removal() == {"metadata": {"annotations": {PENDING_ANNOTATION: None}}}


@pytest.mark.parametrize(
    "value", ["", "yesterday", "2026-12-08T12:00:05Z", "2026-12-08T12:00:05Z ftp://x", "x" * 5000]
)
def test_a_record_someone_edited_still_holds_the_registration_back(value: str) -> None:
    pending = pending_registration({PENDING_ANNOTATION: value})

    assert pending == PendingRegistration(None, None)
    assert not pending.known


def test_no_record_is_nothing_pending() -> None:
    assert pending_registration({"other": "x"}) is None
    assert pending_registration(None) is None


@pytest.mark.parametrize(
    ("error", "maybe"),
    [
        pytest.param(RequestNotSent("no connection", kind="connect"), False, id="connect-error"),
        pytest.param(RequestNotSent("no free connection", kind="timeout"), False, id="pool"),
        pytest.param(ConfigurationError("not a URL", reason="InvalidURL"), False, id="bad-url"),
        pytest.param(
            RegistrationRejected("invalid_redirect_uri", None, status_code=400),
            False,
            id="rejected",
        ),
        pytest.param(
            AuthorizationServerRejection("invalid_client", None, status_code=401),
            False,
            id="unauthorised",
        ),
        pytest.param(ServerUnavailable("slow down", status_code=429), False, id="rate-limited"),
        pytest.param(ConnectionFailure("read timed out", kind="timeout"), True, id="read-timeout"),
        pytest.param(ConnectionFailure("reset", kind="connection"), True, id="reset"),
        pytest.param(InvalidTokenResponse("not JSON"), True, id="unreadable-answer"),
        pytest.param(ServerUnavailable("gateway", status_code=504), True, id="gateway-timeout"),
        pytest.param(ServerUnavailable("unavailable", status_code=503), False, id="unavailable"),
        pytest.param(ServerUnavailable("error", status_code=500), True, id="server-error"),
        pytest.param(asyncio.CancelledError(), True, id="operator-stopping"),
    ],
)
def test_only_a_post_that_certainly_made_nothing_may_be_sent_again(
    error: BaseException, maybe: bool
) -> None:
    assert may_have_registered(error) is maybe


def test_the_person_is_told_when_where_and_the_command_that_registers_again() -> None:
    cause = "the registration request to https://matls-bank.example/reg timed out after 10 s"

    message = in_doubt(
        PendingRegistration.at(SENT, ENDPOINT), namespace="tpp", name="bank", cause=cause
    ).message

    assert f"sent to {ENDPOINT} at 2026-12-08T12:00:05Z" in message
    assert "timed out after 10 s" in message
    assert "the bank may hold a client whose credentials are not here" in message
    assert message.endswith(
        f"kubectl annotate raidiamregistration bank -n tpp {PENDING_ANNOTATION}-"
    )


def test_the_instruction_survives_in_an_event_with_a_long_endpoint_and_cause() -> None:
    long_endpoint = "https://bank.example/" + "a" * 2000

    error = in_doubt(
        PendingRegistration.at(SENT, long_endpoint),
        namespace="n" * 63,
        name="r" * 63,
        cause="x " * 1000,
    )

    assert error.reason == "RegistrationInDoubt"
    assert len(error.message.encode()) <= EVENT_NOTE_LIMIT
    assert error.note().endswith(f"{PENDING_ANNOTATION}-")


def test_a_record_of_unknown_time_and_place_says_so() -> None:
    message = in_doubt(PendingRegistration(None, None), namespace="tpp", name="bank").message

    assert "sent to the registration endpoint at an unknown time" in message
