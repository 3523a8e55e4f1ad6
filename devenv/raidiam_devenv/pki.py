"""Throw-away PKI for tests: a CA, TLS server certificates, mTLS client
certificates and JWT signing keys.

Everything is generated with ``cryptography`` on the fly so that no key
material has to live in the repository. A second, untrusted CA is simply
another ``TestPKI`` in another directory.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress
import json
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "CertKeyType",
    "IssuedCertificate",
    "KeyFormat",
    "SigningKey",
    "SigningKeyType",
    "TestPKI",
    "self_signed_certificate",
]

CertKeyType = Literal[
    "rsa", "rsa1024", "rsa2048", "rsa3072", "rsa4096", "ec", "ec256", "ec384", "ed25519"
]
KeyFormat = Literal["pkcs8", "pkcs1", "sec1"]
SigningKeyType = Literal["rsa", "ec", "ed25519"]

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey

_RSA_SIZES = {"rsa": 2048, "rsa1024": 1024, "rsa2048": 2048, "rsa3072": 3072, "rsa4096": 4096}
_EC_CURVES: dict[str, ec.EllipticCurve] = {
    "ec": ec.SECP256R1(),
    "ec256": ec.SECP256R1(),
    "ec384": ec.SECP384R1(),
}


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_uint(value: int) -> str:
    return _b64url(value.to_bytes((value.bit_length() + 7) // 8 or 1, "big"))


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _generate_key(key_type: str) -> PrivateKey:
    if key_type in _RSA_SIZES:
        return rsa.generate_private_key(public_exponent=65537, key_size=_RSA_SIZES[key_type])
    if key_type in _EC_CURVES:
        return ec.generate_private_key(_EC_CURVES[key_type])
    if key_type == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    raise ValueError(f"unsupported key type {key_type!r}")


def _key_pem(key: PrivateKey, key_format: KeyFormat, password: bytes | None) -> bytes:
    if key_format == "pkcs8":
        fmt = serialization.PrivateFormat.PKCS8
    elif key_format == "pkcs1":
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError("pkcs1 key format is only valid for RSA keys")
        fmt = serialization.PrivateFormat.TraditionalOpenSSL
    elif key_format == "sec1":
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError("sec1 key format is only valid for EC keys")
        fmt = serialization.PrivateFormat.TraditionalOpenSSL
    else:
        raise ValueError(f"unsupported key format {key_format!r}")
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    return key.private_bytes(serialization.Encoding.PEM, fmt, encryption)


def _signature_hash(key: PrivateKey) -> hashes.SHA256 | None:
    # Ed25519 signs without a separate digest.
    return None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()


_OPEN_FINANCE_NAMES = {
    NameOID.COMMON_NAME,
    NameOID.COUNTRY_NAME,
    NameOID.LOCALITY_NAME,
    NameOID.STATE_OR_PROVINCE_NAME,
    NameOID.STREET_ADDRESS,
    NameOID.ORGANIZATION_NAME,
    NameOID.ORGANIZATIONAL_UNIT_NAME,
    NameOID.USER_ID,
    NameOID.DOMAIN_COMPONENT,
}


def _open_finance_attribute(attribute: x509.NameAttribute[Any]) -> str:
    if attribute.oid in _OPEN_FINANCE_NAMES:
        return attribute.rfc4514_string()
    # The value's DER: its string type's tag (how the certificate encodes it), length, bytes.
    tag = attribute._type.value  # the ASN.1 string type the certificate carries
    value = attribute.value if isinstance(attribute.value, bytes) else attribute.value.encode()
    if tag == 30:  # BMPString
        value = str(attribute.value).encode("utf-16-be")
    size = len(value)
    if size < 0x80:
        length = bytes([size])
    elif size <= 0xFF:
        length = bytes([0x81, size])
    else:
        length = bytes([0x82, size >> 8, size & 0xFF])
    return f"{attribute.oid.dotted_string}=#{(bytes([tag]) + length + value).hex()}"


@dataclass(frozen=True)
class IssuedCertificate:
    """A certificate with its private key, both PEM encoded."""

    cert_pem: bytes
    key_pem: bytes

    @cached_property
    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_pem)

    @property
    def subject_dn(self) -> str:
        """RFC 4514 subject string, as registered in ``tls_client_auth_subject_dn``.

        The test server compares DNs attribute by attribute (RDN order and
        attribute-name spelling are not significant), so this exact string
        matches, and so would the X.500-ordered form.
        """
        return self.certificate.subject.rfc4514_string()

    @property
    def open_finance_subject_dn(self) -> str:
        """The subject DN in the Open Finance Brasil DCR profile's format (clause 7.1.2), as a
        ``tls_client_auth_subject_dn`` registered at a bank must be: RDNs in reverse order
        joined by ``,``; ``CN``, ``L``, ``ST``, ``O``, ``OU``, ``C``, ``STREET``, ``DC`` and
        ``UID`` by name; every other attribute (``serialNumber``, ``businessCategory``,
        ``jurisdictionCountryName``, ``organizationIdentifier``, ...) as its dotted OID, ``=#``
        and the DER of its value in hex."""
        return ",".join(
            "+".join(_open_finance_attribute(attribute) for attribute in rdn)
            for rdn in reversed(self.certificate.subject.rdns)
        )

    @property
    def x5t_s256(self) -> str:
        """base64url (unpadded) SHA-256 of the DER certificate: ``cnf.x5t#S256``."""
        der = self.certificate.public_bytes(serialization.Encoding.DER)
        return _b64url(hashlib.sha256(der).digest())

    @property
    def not_valid_after(self) -> dt.datetime:
        return self.certificate.not_valid_after_utc

    def public_jwk(self, kid: str | None = None) -> dict[str, Any]:
        """The certificate's public key as a JWK carrying the certificate in ``x5c``: how a
        ``self_signed_tls_client_auth`` client registers its certificate (RFC 8705 §2.2)."""
        key = serialization.load_pem_private_key(self.key_pem, password=None)
        assert isinstance(
            key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
        )
        der = self.certificate.public_bytes(serialization.Encoding.DER)
        jwk = SigningKey(key).public_jwk(kid)
        jwk["x5c"] = [base64.b64encode(der).decode("ascii")]
        return jwk

    def write(self, directory: Path, stem: str) -> tuple[Path, Path]:
        """Write ``<stem>.crt`` and ``<stem>.key`` into ``directory``."""
        directory.mkdir(parents=True, exist_ok=True)
        cert_path = directory / f"{stem}.crt"
        key_path = directory / f"{stem}.key"
        cert_path.write_bytes(self.cert_pem)
        key_path.touch(mode=0o600)
        key_path.write_bytes(self.key_pem)
        return cert_path, key_path


class SigningKey:
    """Asymmetric key for ``private_key_jwt`` client assertions."""

    def __init__(self, key: PrivateKey) -> None:
        self.private_key = key

    @property
    def default_alg(self) -> str:
        if isinstance(self.private_key, rsa.RSAPrivateKey):
            return "PS256"
        if isinstance(self.private_key, ec.EllipticCurvePrivateKey):
            return "ES256"
        return "EdDSA"

    @cached_property
    def private_pem(self) -> bytes:
        return _key_pem(self.private_key, "pkcs8", None)

    @cached_property
    def public_pem(self) -> bytes:
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def public_jwk(self, kid: str | None = None, *, alg: str | None = None) -> dict[str, Any]:
        """Public JWK for the client's registered ``jwks``.

        ``alg`` is only included when asked for, because a JWK with ``alg``
        restricts the key to that algorithm on the server side.
        """
        key = self.private_key
        jwk: dict[str, Any]
        if isinstance(key, rsa.RSAPrivateKey):
            numbers = key.public_key().public_numbers()
            jwk = {"kty": "RSA", "n": _b64url_uint(numbers.n), "e": _b64url_uint(numbers.e)}
        elif isinstance(key, ec.EllipticCurvePrivateKey):
            pub = key.public_key().public_numbers()
            size = (key.curve.key_size + 7) // 8
            crv = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}[key.curve.name]
            jwk = {
                "kty": "EC",
                "crv": crv,
                "x": _b64url(pub.x.to_bytes(size, "big")),
                "y": _b64url(pub.y.to_bytes(size, "big")),
            }
        else:
            raw = key.public_key().public_bytes(
                serialization.Encoding.Raw, serialization.PublicFormat.Raw
            )
            jwk = {"kty": "OKP", "crv": "Ed25519", "x": _b64url(raw)}
        jwk["use"] = "sig"
        jwk["kid"] = kid if kid is not None else self.thumbprint
        if alg is not None:
            jwk["alg"] = alg
        return jwk

    @cached_property
    def thumbprint(self) -> str:
        """RFC 7638 JWK thumbprint (used as the default ``kid``)."""
        jwk = self.public_jwk(kid="")
        members = {k: jwk[k] for k in ("crv", "e", "kty", "n", "x", "y") if k in jwk}
        canonical = json.dumps(members, separators=(",", ":"), sort_keys=True)
        return _b64url(hashlib.sha256(canonical.encode()).digest())

    def client_assertion(
        self,
        client_id: str,
        audience: str | Sequence[str],
        *,
        alg: str | None = None,
        kid: str | None = None,
        lifetime: int = 60,
        extra_claims: Mapping[str, Any] | None = None,
    ) -> str:
        """Sign an RFC 7523 client assertion (iss = sub = client_id, fresh jti)."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": client_id,
            "sub": client_id,
            "aud": audience if isinstance(audience, str) else list(audience),
            "jti": uuid.uuid4().hex,
            "iat": now,
            "nbf": now,
            "exp": now + lifetime,
        }
        claims.update(extra_claims or {})
        headers = {"kid": kid if kid is not None else self.thumbprint}
        return jwt.encode(
            claims, self.private_key, algorithm=alg or self.default_alg, headers=headers
        )


class TestPKI:
    """A CA in ``directory`` (``ca.crt``/``ca.key``) that issues certificates."""

    # Not a test class, despite the name.
    __test__ = False

    def __init__(
        self, directory: Path, *, common_name: str = "raidiam-devenv test CA", key_type: str = "ec"
    ) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._ca_key = _generate_key(key_type)
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "raidiam-token-operator tests"),
                x509.NameAttribute(NameOID.COMMON_NAME, f"{common_name} {uuid.uuid4().hex[:8]}"),
            ]
        )
        now = _now()
        ski = x509.SubjectKeyIdentifier.from_public_key(self._ca_key.public_key())
        self._ca_cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(ski, critical=False)
            .sign(self._ca_key, _signature_hash(self._ca_key))
        )
        self.ca_pem = self._ca_cert.public_bytes(serialization.Encoding.PEM)
        self.ca_path = directory / "ca.crt"
        self.ca_path.write_bytes(self.ca_pem)
        key_path = directory / "ca.key"
        key_path.touch(mode=0o600)
        key_path.write_bytes(_key_pem(self._ca_key, "pkcs8", None))

    @property
    def ca_certificate(self) -> x509.Certificate:
        return self._ca_cert

    def _issue(
        self,
        subject: x509.Name,
        key: PrivateKey,
        *,
        eku: Sequence[x509.ObjectIdentifier],
        sans: Iterable[x509.GeneralName],
        not_before: dt.datetime | None,
        not_after: dt.datetime | None,
    ) -> x509.Certificate:
        now = _now()
        start = not_before or now - dt.timedelta(minutes=5)
        end = not_after or now + dt.timedelta(days=30)
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self._ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._ca_key.public_key()),
                critical=False,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
        )
        san_list = list(sans)
        if san_list:
            builder = builder.add_extension(x509.SubjectAlternativeName(san_list), critical=False)
        return builder.sign(self._ca_key, _signature_hash(self._ca_key))

    def server_certificate(
        self, hostnames: Sequence[str] = ("localhost", "127.0.0.1")
    ) -> IssuedCertificate:
        """TLS server certificate; IP literals become iPAddress SANs."""
        key = _generate_key("ec")
        sans: list[x509.GeneralName] = []
        for host in hostnames:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                sans.append(x509.DNSName(host))
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostnames[0])])
        cert = self._issue(
            subject,
            key,
            eku=[ExtendedKeyUsageOID.SERVER_AUTH],
            sans=sans,
            not_before=None,
            not_after=None,
        )
        return IssuedCertificate(
            cert.public_bytes(serialization.Encoding.PEM), _key_pem(key, "pkcs8", None)
        )

    def client_certificate(
        self,
        common_name: str,
        *,
        key_type: CertKeyType | str = "rsa",
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
        organization: str | None = None,
        organizational_unit: str | None = None,
        country: str | None = None,
        extra_attributes: Sequence[tuple[x509.ObjectIdentifier, str]] = (),
        key_format: KeyFormat = "pkcs8",
        key_password: bytes | None = None,
        dns_names: Sequence[str] = (),
    ) -> IssuedCertificate:
        """mTLS client certificate (clientAuth EKU).

        Pass past ``not_after`` / future ``not_before`` for expired or
        not-yet-valid certificates. ``extra_attributes`` adds subject
        attributes (e.g. Open Finance style ``UID`` or organizationIdentifier).
        """
        key = _generate_key(key_type)
        attributes: list[x509.NameAttribute[str]] = []
        if country:
            attributes.append(x509.NameAttribute(NameOID.COUNTRY_NAME, country))
        if organization:
            attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
        if organizational_unit:
            attributes.append(
                x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, organizational_unit)
            )
        attributes.extend(x509.NameAttribute(oid, value) for oid, value in extra_attributes)
        attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
        cert = self._issue(
            x509.Name(attributes),
            key,
            eku=[ExtendedKeyUsageOID.CLIENT_AUTH],
            sans=[x509.DNSName(name) for name in dns_names],
            not_before=not_before,
            not_after=not_after,
        )
        return IssuedCertificate(
            cert.public_bytes(serialization.Encoding.PEM), _key_pem(key, key_format, key_password)
        )

    def signing_key(self, key_type: SigningKeyType | str = "rsa", bits: int = 2048) -> SigningKey:
        """Key for private_key_jwt (PS256/RS256 for RSA, ES256 for EC, EdDSA)."""
        if key_type == "rsa":
            return SigningKey(rsa.generate_private_key(public_exponent=65537, key_size=bits))
        if key_type == "ec":
            return SigningKey(ec.generate_private_key(ec.SECP256R1()))
        if key_type == "ed25519":
            return SigningKey(ed25519.Ed25519PrivateKey.generate())
        raise ValueError(f"unsupported signing key type {key_type!r}")


def self_signed_certificate(
    common_name: str,
    *,
    key_type: CertKeyType | str = "rsa",
    not_after: dt.datetime | None = None,
) -> IssuedCertificate:
    """A self-signed mTLS client certificate, chaining to no CA: what a
    ``self_signed_tls_client_auth`` client presents."""
    key = _generate_key(key_type)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(not_after or now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(key, _signature_hash(key))
    )
    return IssuedCertificate(
        cert.public_bytes(serialization.Encoding.PEM), _key_pem(key, "pkcs8", None)
    )
