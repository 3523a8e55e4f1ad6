from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from raidiam_devenv.pki import TestPKI
from raidiam_operator.core.errors import CredentialError
from raidiam_operator.protocol.credentials import (
    certificate_thumbprint,
    load_signing_key,
    load_transport_certificate,
)


def _now() -> datetime:
    # At call time: the session's certificates are issued when first needed, which may be long
    # after this module is imported.
    return datetime.now(UTC)


@pytest.mark.parametrize(
    ("key_type", "key_format"),
    [("rsa", "pkcs8"), ("rsa", "pkcs1"), ("ec", "pkcs8"), ("ec", "sec1")],
)
def test_transport_certificate_loads_every_supported_key_form(
    pki: TestPKI, key_type: str, key_format: str
) -> None:
    issued = pki.client_certificate(
        f"client-{key_type}-{key_format}", key_type=key_type, key_format=key_format
    )

    transport = load_transport_certificate(issued.cert_pem, issued.key_pem, now=_now())

    assert transport.thumbprint == issued.x5t_s256
    assert "client-" in transport.subject


def test_intermediates_after_the_leaf_are_kept_in_order(pki: TestPKI) -> None:
    issued = pki.client_certificate("client-with-chain")

    transport = load_transport_certificate(issued.cert_pem + pki.ca_pem, issued.key_pem, now=_now())

    assert len(transport.chain) == 2
    assert transport.thumbprint == issued.x5t_s256


def test_thumbprint_is_unpadded_base64url_sha256_of_the_der_certificate(pki: TestPKI) -> None:
    issued = pki.client_certificate("thumbprint")
    certificate = x509.load_pem_x509_certificate(issued.cert_pem)
    der = certificate.public_bytes(serialization.Encoding.DER)

    expected = base64.urlsafe_b64encode(hashlib.sha256(der).digest()).decode().rstrip("=")

    assert certificate_thumbprint(certificate) == expected
    assert "=" not in expected


def test_key_of_another_certificate_is_refused_before_any_request(pki: TestPKI) -> None:
    one, other = pki.client_certificate("one"), pki.client_certificate("other")

    with pytest.raises(CredentialError) as caught:
        load_transport_certificate(one.cert_pem, other.key_pem, now=_now())

    assert caught.value.reason == "KeyCertificateMismatch"
    assert "does not belong to the certificate" in caught.value.message


def test_expired_certificate_is_refused_with_its_expiry(pki: TestPKI) -> None:
    issued = pki.client_certificate(
        "expired", not_before=_now() - timedelta(days=10), not_after=_now() - timedelta(days=1)
    )

    with pytest.raises(CredentialError) as caught:
        load_transport_certificate(issued.cert_pem, issued.key_pem, now=_now())

    assert caught.value.reason == "CertificateExpired"
    assert "renew it" in caught.value.message


def test_not_yet_valid_certificate_is_refused(pki: TestPKI) -> None:
    issued = pki.client_certificate(
        "future", not_before=_now() + timedelta(days=1), not_after=_now() + timedelta(days=10)
    )

    with pytest.raises(CredentialError) as caught:
        load_transport_certificate(issued.cert_pem, issued.key_pem, now=_now())

    assert caught.value.reason == "CertificateNotYetValid"


def test_rsa_keys_under_2048_bits_are_refused(pki: TestPKI) -> None:
    issued = pki.client_certificate("weak", key_type="rsa1024")

    with pytest.raises(CredentialError) as caught:
        load_transport_certificate(issued.cert_pem, issued.key_pem, now=_now())

    assert caught.value.reason == "WeakKey"
    assert "1024 bits" in caught.value.message


def test_der_where_pem_is_expected_says_how_to_convert(pki: TestPKI) -> None:
    issued = pki.client_certificate("der")
    der = x509.load_pem_x509_certificate(issued.cert_pem).public_bytes(serialization.Encoding.DER)

    with pytest.raises(CredentialError) as caught:
        load_transport_certificate(der, issued.key_pem, now=_now())

    assert "looks like DER" in caught.value.message


def test_encrypted_private_key_asks_for_an_unencrypted_one(pki: TestPKI) -> None:
    issued = pki.client_certificate("encrypted")
    key = serialization.load_pem_private_key(issued.key_pem, password=None)
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )

    with pytest.raises(CredentialError) as caught:
        load_transport_certificate(issued.cert_pem, encrypted, now=_now())

    assert caught.value.reason == "EncryptedPrivateKey"


def test_garbage_key_message_does_not_echo_the_input(pki: TestPKI) -> None:
    issued = pki.client_certificate("garbage")
    garbage = b"-----BEGIN PRIVATE KEY-----\nTOPSECRETBYTES\n-----END PRIVATE KEY-----\n"

    with pytest.raises(CredentialError) as caught:
        load_transport_certificate(issued.cert_pem, garbage, now=_now())

    assert "TOPSECRETBYTES" not in str(caught.value)
    assert "could not be read" in caught.value.message


@pytest.mark.parametrize(("key_type", "expected"), [("rsa", "PS256"), ("ec", "ES256")])
def test_signing_algorithm_defaults_from_the_key_type(
    pki: TestPKI, key_type: str, expected: str
) -> None:
    key = pki.signing_key(key_type=key_type)

    assert load_signing_key(key.private_pem, key_id="k1", algorithm=None).algorithm == expected


def test_ed25519_and_rs256_only_when_asked_for(pki: TestPKI) -> None:
    ed = pki.signing_key(key_type="ed25519")
    rsa_key = pki.signing_key(key_type="rsa")

    with pytest.raises(CredentialError, match="EdDSA explicitly"):
        load_signing_key(ed.private_pem, key_id="k", algorithm=None)
    assert load_signing_key(ed.private_pem, key_id="k", algorithm="EdDSA").algorithm == "EdDSA"
    assert load_signing_key(rsa_key.private_pem, key_id="k", algorithm="RS256").algorithm == "RS256"


def test_algorithm_that_does_not_fit_the_key_is_refused(pki: TestPKI) -> None:
    ec_key = pki.signing_key(key_type="ec")

    with pytest.raises(CredentialError) as caught:
        load_signing_key(ec_key.private_pem, key_id="k", algorithm="PS256")

    assert caught.value.reason == "AlgorithmKeyMismatch"
    assert "EC secp256r1" in caught.value.message


def test_signing_key_without_key_id_is_refused(pki: TestPKI) -> None:
    with pytest.raises(CredentialError, match="key id"):
        load_signing_key(pki.signing_key(key_type="rsa").private_pem, key_id="", algorithm=None)
