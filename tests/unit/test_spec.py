from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from raidiam_operator.core.errors import ConfigurationError
from raidiam_operator.core.spec import parse_duration, parse_spec

BASE = {
    "issuer": "https://auth.example",
    "clientId": "c1",
    "authMethod": "tls_client_auth",
    "transportCertificate": {"secretName": "transport"},
}


def test_defaults_match_the_crd() -> None:
    spec = parse_spec(BASE, name="directory")

    assert spec.token_secret.name == "directory-token"
    assert spec.transport_certificate is not None
    assert spec.transport_certificate.certificate_key == "tls.crt"
    assert spec.transport_certificate.private_key_key == "tls.key"
    assert spec.refresh.renew_before_percentage == 33
    assert spec.assertion_audience == "issuer"
    assert not spec.suspend


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90), ("2m", 120), ("1h30m", 5400), ("1.5h", 5400), ("500ms", 0.5)]
)
def test_go_style_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "2", "2 minutes", "m2", "-1s"])
def test_bad_durations_say_how_to_write_one(text: str) -> None:
    with pytest.raises(ConfigurationError, match="write it like 90s"):
        parse_duration(text)


def test_both_renew_options_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="exclude each other"):
        parse_spec(
            {**BASE, "refresh": {"renewBefore": "2m", "renewBeforePercentage": 20}}, name="x"
        )


@pytest.mark.parametrize("method", ["tls_client_auth", "self_signed_tls_client_auth"])
def test_mutual_tls_methods_need_a_transport_certificate(method: str) -> None:
    spec = {**BASE, "authMethod": method}
    assert parse_spec(spec, name="x").auth_method == method

    del spec["transportCertificate"]
    with pytest.raises(
        ConfigurationError, match=rf"spec\.transportCertificate is required for {method}"
    ):
        parse_spec(spec, name="x")


def test_private_key_jwt_needs_a_signing_key() -> None:
    with pytest.raises(ConfigurationError, match=r"spec\.signingKey is required"):
        parse_spec({**BASE, "authMethod": "private_key_jwt"}, name="x")


def test_the_fingerprint_changes_with_what_the_token_depends_on_only() -> None:
    base = parse_spec(BASE, name="x").token_fingerprint()

    assert parse_spec({**BASE, "scope": "openid"}, name="x").token_fingerprint() != base
    assert (
        parse_spec({**BASE, "refresh": {"renewBefore": "1m"}}, name="x").token_fingerprint() == base
    )
    assert parse_spec({**BASE, "suspend": True}, name="x").token_fingerprint() == base


def test_an_assertion_for_the_issuer_is_never_sent_to_a_foreign_token_endpoint() -> None:
    spec = {
        **BASE,
        "authMethod": "private_key_jwt",
        "signingKey": {"secretName": "signing", "keyId": "k"},
        "tokenEndpoint": "https://elsewhere.example/token",
    }

    with pytest.raises(ConfigurationError, match=r"set spec\.assertionAudience to tokenEndpoint"):
        parse_spec(spec, name="x")
    assert parse_spec({**spec, "assertionAudience": "tokenEndpoint"}, name="x").token_endpoint
    assert parse_spec({**spec, "tokenEndpoint": "https://auth.example/token"}, name="x")


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
        parse_spec({**BASE, "tokenSecret": token_secret}, name=name)

    assert raised.value.reason == "InvalidTokenSecret"
    assert fragment in raised.value.message


def test_valid_labels_and_annotations_pass() -> None:
    spec = parse_spec(
        {
            **BASE,
            "tokenSecret": {
                "labels": {"app.kubernetes.io/part-of": "payments", "tier": "", "a_b": "x.y-z"},
                "annotations": {"example.com/owner": "team payments, room 4"},
            },
        },
        name="c",
    )

    assert spec.token_secret.labels["app.kubernetes.io/part-of"] == "payments"


def test_the_token_secret_shape_is_read_from_the_spec() -> None:
    spec = parse_spec(
        BASE
        | {
            "tokenSecret": {
                "includeCertificate": True,
                "template": {"data": {"authorization": "Bearer ${access_token}"}},
            }
        },
        name="directory",
    )

    assert spec.token_secret.include_certificate
    assert spec.token_secret.templates == {"authorization": "Bearer ${access_token}"}


def test_include_certificate_without_a_transport_certificate_is_refused() -> None:
    spec = BASE | {
        "authMethod": "private_key_jwt",
        "signingKey": {"secretName": "signing", "keyId": "k1"},
        "tokenSecret": {"includeCertificate": True},
    }
    del spec["transportCertificate"]

    with pytest.raises(ConfigurationError, match=r"includeCertificate needs spec\.transportCertif"):
        parse_spec(spec, name="directory")


def test_a_bad_template_written_before_the_crd_checked_it_is_a_configuration_error() -> None:
    spec = BASE | {"tokenSecret": {"template": {"data": {"header": "Bearer $token"}}}}

    with pytest.raises(ConfigurationError) as caught:
        parse_spec(spec, name="directory")

    assert caught.value.reason == "InvalidTokenSecret"
    assert "template.data[header]" in caught.value.message


def test_the_token_secret_shape_does_not_change_the_token() -> None:
    shaped = BASE | {"tokenSecret": {"includeCertificate": True, "template": {"data": {"a": "b"}}}}

    assert (
        parse_spec(shaped, name="d").token_fingerprint()
        == parse_spec(BASE, name="d").token_fingerprint()
    )


@pytest.mark.parametrize("field", ["issuer", "tokenEndpoint"])
@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "https://auth.example/\u0085x",
            "'https://auth.example/\\x85x' may hold only printable ASCII characters, without "
            "spaces (percent-encode others)",
        ),
        ("https://auth.example/\u202etoken", "'https://auth.example/\\u202etoken' may hold only"),
        ("https://auth example", "'https://auth example' may hold only printable ASCII"),
        ("https://auth.example:70000", "'https://auth.example:70000' is not a URL"),
        ("https://me@auth.example", "'https://me@auth.example' may not have a user part"),
        ("https://", "'https://' must name a host"),
        ("http://auth.example", "'http://auth.example' must be an https URL"),
    ],
)
def test_an_issuer_or_token_endpoint_that_is_no_printable_https_url_is_refused(
    field: str, url: str, message: str
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        parse_spec({**BASE, field: url}, name="directory")

    assert caught.value.message.startswith(f"spec.{field} {message}")


def test_a_long_bad_url_is_cut_in_the_message() -> None:
    with pytest.raises(ConfigurationError) as caught:
        parse_spec({**BASE, "issuer": "https://" + "a" * 3000 + " x"}, name="directory")

    assert caught.value.message.startswith("spec.issuer 'https://aaa")
    assert "'… may hold only printable ASCII" in caught.value.message
    assert len(caught.value.message) < 300
