from __future__ import annotations

import pytest

from raidiam_operator.core.errors import ConfigurationError, ServerMetadataError
from raidiam_operator.protocol.metadata import (
    check_server_supports,
    parse_metadata,
    token_endpoint_for,
)

ISSUER = "https://auth.example"
DOCUMENT = {
    "issuer": ISSUER,
    "token_endpoint": "https://auth.example/token",
    "mtls_endpoint_aliases": {"token_endpoint": "https://matls-auth.example/token"},
    "token_endpoint_auth_methods_supported": ["private_key_jwt", "tls_client_auth"],
    "token_endpoint_auth_signing_alg_values_supported": ["PS256", "ES256"],
}


def test_metadata_naming_another_issuer_is_refused_with_both_values() -> None:
    with pytest.raises(ServerMetadataError) as caught:
        parse_metadata({**DOCUMENT, "issuer": "https://evil.example"}, expected_issuer=ISSUER)

    assert caught.value.reason == "IssuerMismatch"
    assert "https://evil.example" in caught.value.message
    assert ISSUER in caught.value.message


def test_a_client_with_a_certificate_uses_the_mtls_alias() -> None:
    metadata = parse_metadata(DOCUMENT, expected_issuer=ISSUER)

    assert token_endpoint_for(metadata, mutual_tls=True) == "https://matls-auth.example/token"
    assert token_endpoint_for(metadata, mutual_tls=False) == "https://auth.example/token"


def test_without_aliases_the_plain_token_endpoint_serves_mtls_too() -> None:
    document = {k: v for k, v in DOCUMENT.items() if k != "mtls_endpoint_aliases"}

    metadata = parse_metadata(document, expected_issuer=ISSUER)

    assert token_endpoint_for(metadata, mutual_tls=True) == "https://auth.example/token"


def test_an_unsupported_auth_method_names_both_sides() -> None:
    metadata = parse_metadata(
        {**DOCUMENT, "token_endpoint_auth_methods_supported": ["private_key_jwt"]},
        expected_issuer=ISSUER,
    )

    with pytest.raises(ServerMetadataError) as caught:
        check_server_supports(metadata, auth_method="tls_client_auth", signing_algorithm=None)

    assert caught.value.reason == "AuthMethodNotSupported"
    assert "tls_client_auth" in caught.value.message
    assert "private_key_jwt" in caught.value.message


def test_an_unsupported_signing_alg_names_both_sides() -> None:
    metadata = parse_metadata(DOCUMENT, expected_issuer=ISSUER)

    with pytest.raises(ServerMetadataError) as caught:
        check_server_supports(metadata, auth_method="private_key_jwt", signing_algorithm="EdDSA")

    assert caught.value.reason == "AlgorithmNotSupported"
    assert "EdDSA" in caught.value.message
    assert "PS256, ES256" in caught.value.message


def test_servers_that_list_nothing_are_not_second_guessed() -> None:
    metadata = parse_metadata(
        {"issuer": ISSUER, "token_endpoint": "https://auth.example/token"}, expected_issuer=ISSUER
    )

    check_server_supports(metadata, auth_method="private_key_jwt", signing_algorithm="EdDSA")


# -- endpoint URLs a server sends ----------------------------------------------------------------

NEL, RLO = "\u0085", "\u202e"


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("http://auth.example/token", "must be an https URL"),
        (42, "must be an https URL"),
        (f"https://auth.example/token{NEL}x", "may hold only printable ASCII characters"),
        (f"https://auth.example/{RLO}nekot", "may hold only printable ASCII characters"),
        ("https://auth.example/to ken", "may hold only printable ASCII characters"),
        ("https://auth.example:99999/token", "is not a URL (check the host and the port)"),
        ("https://[::1/token", "is not a URL (check the host and the port)"),
        ("https://user:pass@auth.example/token", "may not have a user part"),
        ("https:///token", "must name a host"),
        ("https://auth.example\\token", "may not hold a backslash"),
    ],
)
@pytest.mark.parametrize("field", ["token_endpoint", "mtls_endpoint_aliases.token_endpoint"])
def test_a_discovered_endpoint_that_is_no_printable_https_url_is_refused_naming_the_field(
    field: str, value: object, problem: str
) -> None:
    document = dict(DOCUMENT)
    if field == "token_endpoint":
        document["token_endpoint"] = value
    else:
        document["mtls_endpoint_aliases"] = {"token_endpoint": value}

    with pytest.raises(ServerMetadataError) as caught:
        parse_metadata(document, expected_issuer=ISSUER)

    message = caught.value.message
    assert message.startswith(f"the discovery document of {ISSUER} gives {field} ")
    assert problem in message
    assert "(or set spec.tokenEndpoint)" in message
    assert message.isprintable()


def test_a_discovery_document_without_a_token_endpoint_says_so() -> None:
    document = {k: v for k, v in DOCUMENT.items() if k != "token_endpoint"}

    with pytest.raises(ServerMetadataError, match="has no token_endpoint"):
        parse_metadata(document, expected_issuer=ISSUER)


def test_a_huge_discovered_endpoint_is_refused_by_its_length_without_quoting_it() -> None:
    document = {**DOCUMENT, "token_endpoint": "https://auth.example/" + "a" * 5000}

    with pytest.raises(ServerMetadataError) as caught:
        parse_metadata(document, expected_issuer=ISSUER)

    assert "has a token_endpoint of 5021 characters, more than the 2048" in caught.value.message
    assert "aaaa" not in caught.value.message


# -- the allowlist over discovered endpoints -----------------------------------------------------


@pytest.mark.parametrize(
    ("mutual_tls", "allowlist", "endpoint"),
    [
        (
            True,
            ("https://auth.example", "https://matls-auth.example"),
            "https://matls-auth.example/token",
        ),
        (False, ("https://auth.example",), "https://auth.example/token"),
        # only the endpoint the request goes to matters
        (False, ("https://auth.example/token",), "https://auth.example/token"),
        (True, None, "https://matls-auth.example/token"),
    ],
)
def test_a_discovered_endpoint_under_the_allowlist_is_used(
    mutual_tls: bool, allowlist: tuple[str, ...] | None, endpoint: str
) -> None:
    metadata = parse_metadata(DOCUMENT, expected_issuer=ISSUER)

    assert token_endpoint_for(metadata, mutual_tls=mutual_tls, allowlist=allowlist) == endpoint


@pytest.mark.parametrize(
    ("mutual_tls", "document", "field", "shown"),
    [
        # the usual escape: an allowed issuer whose alias names another host
        (
            True,
            DOCUMENT,
            "mtls_endpoint_aliases.token_endpoint",
            "https://matls-auth.example/token",
        ),
        (
            False,
            {**DOCUMENT, "token_endpoint": "https://10.0.0.5:53/token"},
            "token_endpoint",
            "https://10.0.0.5:53/token",
        ),
        (
            True,
            {
                **DOCUMENT,
                "mtls_endpoint_aliases": {"token_endpoint": "https://auth.example/..;/admin"},
            },
            "mtls_endpoint_aliases.token_endpoint",
            "https://auth.example/..;/admin",
        ),
        (
            True,
            {
                **DOCUMENT,
                "mtls_endpoint_aliases": {
                    "token_endpoint": "https://auth.example/%252e%252e/admin"
                },
            },
            "mtls_endpoint_aliases.token_endpoint",
            "https://auth.example/%252e%252e/admin",
        ),
    ],
)
def test_a_discovered_endpoint_outside_the_allowlist_is_refused_naming_the_field(
    mutual_tls: bool, document: dict[str, object], field: str, shown: str
) -> None:
    metadata = parse_metadata(document, expected_issuer=ISSUER)

    with pytest.raises(ConfigurationError) as caught:
        token_endpoint_for(metadata, mutual_tls=mutual_tls, allowlist=("https://auth.example",))

    assert caught.value.reason == "DiscoveredEndpointNotAllowed"
    assert caught.value.message.startswith(
        f"the discovery document of {ISSUER} gives {field} '{shown}', which is not under an "
        "issuer the operator's policy allows (--issuer-policy allowlist), so no token request "
        "was sent to it."
    )
    # The allowlist is the platform team's; the tenant is told whom to ask.
    assert caught.value.message.endswith(
        "Ask the platform team to allow that endpoint too (--allowed-issuer), or use a "
        "ClusterRaidiamIssuer in spec.issuerRef (kubectl get clusterraidiamissuers lists them)"
    )
    assert "https://auth.example," not in caught.value.message  # the allowlist is not listed
