from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import jwt
import pytest

from raidiam_operator.core.errors import (
    AuthorizationServerRejection,
    InvalidTokenResponse,
    ServerUnavailable,
)
from raidiam_operator.core.times import MAX_RETRY_AFTER, parse_retry_after
from raidiam_operator.protocol.tokens import (
    MAX_ACCESS_TOKEN_BYTES,
    MAX_RESPONSE_BYTES,
    classify_error_response,
    parse_token_response,
)

NOW = datetime(2026, 11, 27, 12, 0, 0, tzinfo=UTC)
ENDPOINT = "https://matls.example/token"
THUMBPRINT = "abc123"


def _jwt(claims: dict[str, object]) -> str:
    return jwt.encode(claims, "k" * 32, algorithm="HS256")


def _parse(  # type: ignore[no-untyped-def]
    document: object,
    *,
    thumbprint: str | None = THUMBPRINT,
    raw: bytes | None = None,
    server_binds: bool = False,
):
    body = raw if raw is not None else json.dumps(document).encode()
    return parse_token_response(
        body,
        now=NOW,
        token_endpoint=ENDPOINT,
        certificate_thumbprint=thumbprint,
        server_binds_certificates=server_binds,
    )


def test_a_good_response_becomes_a_token_with_expiry_and_granted_scope() -> None:
    token = _parse(
        {
            "access_token": "opaque",
            "token_type": "bearer",
            "expires_in": 300,
            "scope": "directory:software",
        }
    )

    assert token.token_type == "Bearer"
    assert token.expires_at == NOW + timedelta(seconds=300)
    assert token.scope == "directory:software"
    assert "opaque" not in repr(token)


def test_expires_in_may_be_a_numeric_string() -> None:
    assert (
        _parse({"access_token": "t", "token_type": "Bearer", "expires_in": "120"}).expires_in == 120
    )


def test_without_expires_in_the_jwt_exp_gives_the_lifetime() -> None:
    token = _jwt({"exp": int(NOW.timestamp()) + 900})

    assert _parse({"access_token": token, "token_type": "Bearer"}).expires_in == 900


def test_without_any_lifetime_the_default_applies() -> None:
    assert _parse({"access_token": "opaque", "token_type": "Bearer"}).expires_in == 300


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"token_type": "Bearer"}, "no access_token"),
        ({"access_token": "", "token_type": "Bearer"}, "no access_token"),
        ({"access_token": "t", "token_type": "mac"}, "only Bearer"),
        ({"access_token": "t", "token_type": "Bearer", "expires_in": -5}, "must be positive"),
        ({"access_token": "t", "token_type": "Bearer", "expires_in": "abc"}, "expected a number"),
        ({"access_token": "t", "token_type": "Bearer", "expires_in": 1e12}, "not believable"),
        ([1, 2], "not a JSON object"),
    ],
)
def test_unusable_responses_are_refused_with_the_reason(document: object, message: str) -> None:
    with pytest.raises(InvalidTokenResponse, match=message):
        _parse(document)


def test_non_json_is_refused() -> None:
    with pytest.raises(InvalidTokenResponse, match="not JSON"):
        _parse(None, raw=b"<html>oops</html>")


def test_a_body_over_one_mebibyte_is_refused() -> None:
    with pytest.raises(InvalidTokenResponse, match="larger than"):
        _parse(None, raw=b" " * (MAX_RESPONSE_BYTES + 1))


def test_an_access_token_over_16_kib_is_refused_with_its_size() -> None:
    huge = "t" * 200 * 1024

    with pytest.raises(InvalidTokenResponse) as caught:
        _parse({"access_token": huge, "token_type": "Bearer", "expires_in": 300})

    assert caught.value.message == (
        "the access token is 200 KiB, more than the 16 KiB accepted; no workload could send it "
        "in an Authorization header; check the token format the authorization server is "
        "configured to issue"
    )


def test_an_access_token_of_16_kib_is_accepted() -> None:
    token = _parse(
        {"access_token": "t" * MAX_ACCESS_TOKEN_BYTES, "token_type": "Bearer", "expires_in": 300}
    )

    assert len(token.access_token) == MAX_ACCESS_TOKEN_BYTES


def test_a_token_is_measured_in_bytes_not_characters() -> None:
    with pytest.raises(InvalidTokenResponse, match="the access token is 16 KiB, more than"):
        _parse({"access_token": "é" * 8193, "token_type": "Bearer", "expires_in": 300})


def test_a_granted_scope_over_4_kib_is_refused_with_its_size() -> None:
    with pytest.raises(InvalidTokenResponse) as caught:
        _parse({"access_token": "t", "token_type": "Bearer", "scope": "openid " * 1000})

    assert caught.value.message.startswith(
        "the granted scope is 7 KiB, more than the 4 KiB accepted"
    )


def test_a_200_carrying_an_oauth_error_is_a_rejection() -> None:
    with pytest.raises(AuthorizationServerRejection) as caught:
        _parse({"error": "invalid_client", "error_description": "unknown client"})

    assert caught.value.error == "invalid_client"
    assert "unknown client" in caught.value.message


def test_a_token_bound_to_another_certificate_is_never_handed_out() -> None:
    token = _jwt({"cnf": {"x5t#S256": "someone-else"}})

    with pytest.raises(InvalidTokenResponse, match="bound to another certificate") as caught:
        _parse({"access_token": token, "token_type": "Bearer", "expires_in": 60})

    assert token not in str(caught.value)


def test_a_token_bound_to_our_certificate_is_accepted() -> None:
    token = _jwt({"cnf": {"x5t#S256": THUMBPRINT}})

    assert (
        _parse({"access_token": token, "token_type": "Bearer", "expires_in": 60}).expires_in == 60
    )


def test_retry_after_as_seconds_and_as_http_date() -> None:
    assert parse_retry_after("7", now=NOW) == 7.0
    assert parse_retry_after("Fri, 27 Nov 2026 12:00:30 GMT", now=NOW) == 30.0
    assert parse_retry_after("Fri, 27 Nov 2026 11:00:00 GMT", now=NOW) == 0.0
    assert parse_retry_after("soon", now=NOW) is None
    assert parse_retry_after(None, now=NOW) is None


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_5xx_and_429_are_transient_and_carry_retry_after(status: int) -> None:
    error = classify_error_response(
        status, {"retry-after": "12"}, b"<html>Bad gateway</html>", now=NOW
    )

    assert isinstance(error, ServerUnavailable)
    assert error.retry_after == 12.0


@pytest.mark.parametrize("status", [400, 401])
def test_400_and_401_with_an_oauth_error_are_rejections(status: int) -> None:
    body = json.dumps({"error": "invalid_scope", "error_description": "scope not allowed"}).encode()

    error = classify_error_response(status, {}, body, now=NOW)

    assert isinstance(error, AuthorizationServerRejection)
    assert error.error == "invalid_scope"
    assert "Request only scopes" in error.message


def test_a_4xx_without_an_oauth_error_points_at_the_endpoint() -> None:
    error = classify_error_response(404, {}, b"not found", now=NOW)

    assert isinstance(error, InvalidTokenResponse)
    assert "check the token endpoint URL" in error.message


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


def test_a_jwt_bound_to_our_certificate_is_verified_and_reports_the_thumbprint() -> None:
    token = _parse(
        {"access_token": _jwt({"cnf": {"x5t#S256": THUMBPRINT}}), "token_type": "Bearer"},
        server_binds=False,
    )

    assert (token.binding, token.certificate_thumbprint) == ("verified", THUMBPRINT)


def test_a_jwt_without_cnf_is_unbound_whatever_discovery_says() -> None:
    token = _parse({"access_token": _jwt({"sub": "c"}), "token_type": "Bearer"}, server_binds=True)

    assert (token.binding, token.certificate_thumbprint) == ("none", None)


@pytest.mark.parametrize(
    ("server_binds", "thumbprint", "binding"),
    [
        (True, THUMBPRINT, "advertised"),
        (False, THUMBPRINT, "none"),
        (True, None, "none"),
    ],
)
def test_an_opaque_token_is_bound_only_as_far_as_the_server_says_and_a_certificate_went(
    server_binds: bool, thumbprint: str | None, binding: str
) -> None:
    token = _parse(
        {"access_token": "2YotnFZFEjr1zCsicMWpAA", "token_type": "Bearer"},
        thumbprint=thumbprint,
        server_binds=server_binds,
    )

    assert token.binding == binding
    assert token.certificate_thumbprint == (thumbprint if binding != "none" else None)


@pytest.mark.parametrize("opaque", ["a.b.c", "x" * 4000, "abc.def.ghi.jkl.mno", "not.a.jwt", "..."])
def test_opaque_tokens_never_fail_for_being_opaque(opaque: str) -> None:
    token = _parse({"access_token": opaque, "token_type": "Bearer"}, server_binds=True)

    assert token.binding == "advertised"
    assert token.expires_in == 300


LONG_DESCRIPTION = (
    "The client assertion was refused because its audience does not match. "
    + "This server accepts only the URL of its token endpoint as the audience of a client assertion. "
    * 10
    + "Set the aud claim to https://auth.example.com/oauth2/token and try again."
)


def _rejection(description: str) -> AuthorizationServerRejection:
    body = json.dumps({"error": "invalid_client", "error_description": description}).encode()
    error = classify_error_response(401, {}, body, now=NOW)
    assert isinstance(error, AuthorizationServerRejection)
    return error


def test_a_long_error_description_is_kept_whole_with_the_url_it_names() -> None:
    assert len(LONG_DESCRIPTION) > 1000

    error = _rejection(LONG_DESCRIPTION)

    assert LONG_DESCRIPTION in error.message
    assert "https://auth.example.com/oauth2/token" in error.message


def test_a_description_ending_in_a_full_stop_is_not_doubled_before_the_hint() -> None:
    error = _rejection("client authentication failed.")

    assert "client authentication failed. Check that the client id" in error.message
    assert ".." not in error.message


def test_control_characters_in_a_description_are_removed() -> None:
    error = _rejection("bad\x1b[31m client\r\nInjected: line\u202e\x00 here")

    assert error.description == "bad [31m client Injected: line here"
    assert "\x1b" not in error.message
    assert "\n" not in error.message


def test_an_endless_description_is_cut_at_a_word_boundary() -> None:
    error = _rejection("word " * 2000)

    assert error.description is not None
    assert 1000 <= len(error.description) <= 1200
    assert error.description.endswith("word…")


def test_an_event_note_fits_one_kib_by_cutting_the_server_text_never_the_hint() -> None:
    error = _rejection(LONG_DESCRIPTION)
    error.add_hint("Note: set spec.assertionAudience to tokenEndpoint.")

    note = error.note()

    assert len(note.encode()) <= 1024
    assert note.startswith(
        "the authorization server rejected the token request with invalid_client"
    )
    assert note.endswith("Note: set spec.assertionAudience to tokenEndpoint.")
    assert "Check that the client id is registered" in note
    assert "…" in note


def test_a_short_message_is_its_own_note() -> None:
    error = _rejection("unknown client")

    assert error.note() == error.message
