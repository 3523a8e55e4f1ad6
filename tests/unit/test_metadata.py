from __future__ import annotations

import pytest

from raidiam_operator.core.errors import ServerMetadataError
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
