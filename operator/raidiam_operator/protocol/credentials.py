"""Transport certificates and signing keys, loaded from PEM and checked before any request.

No I/O; the caller passes `now` so validity checks are testable. Not stateless: parsed private
keys are remembered process-wide, by digest of their PEM (`load_private_key`), because loading
an RSA key costs tens of milliseconds and every refresh reads the same Secret. That changes how
long a load takes, never what it returns.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, get_args

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from raidiam_operator.core.errors import CredentialError

SigningAlgorithm = Literal["PS256", "ES256", "EdDSA", "RS256"]
SIGNING_ALGORITHMS: tuple[str, ...] = get_args(SigningAlgorithm)
MINIMUM_RSA_BITS = 2048

UsableKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


def certificate_thumbprint(certificate: x509.Certificate) -> str:
    """RFC 8705 `x5t#S256`: base64url of the SHA-256 of the DER certificate, without padding."""
    digest = hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


@dataclass(frozen=True)
class TransportCertificate:
    """The client's mTLS certificate chain (leaf first) and its private key."""

    chain: tuple[x509.Certificate, ...]
    private_key: UsableKey = field(repr=False)

    @property
    def leaf(self) -> x509.Certificate:
        return self.chain[0]

    @property
    def thumbprint(self) -> str:
        return certificate_thumbprint(self.leaf)

    @property
    def not_after(self) -> datetime:
        return self.leaf.not_valid_after_utc

    @property
    def subject(self) -> str:
        return self.leaf.subject.rfc4514_string()

    def chain_pem(self) -> bytes:
        return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in self.chain)

    def private_key_pem(self) -> bytes:
        return self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


@dataclass(frozen=True)
class CertificateFiles:
    """The transport certificate as a workload mounts it: the PEM files of its Secret, unchanged."""

    #: `tls.crt`: the chain, leaf first
    certificate: bytes
    #: `tls.key`
    private_key: bytes = field(repr=False)
    #: `ca.crt`, when the certificate's Secret has one (cert-manager writes it)
    ca: bytes | None = None


@dataclass(frozen=True)
class SigningKey:
    """The private key that signs `private_key_jwt` client assertions, with its `kid` and `alg`."""

    private_key: UsableKey = field(repr=False)
    key_id: str
    algorithm: SigningAlgorithm

    def public_key_der(self) -> bytes:
        """The public half (SubjectPublicKeyInfo, DER): safe to digest, never secret."""
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )


@dataclass(frozen=True)
class CertificateFacts:
    """What a person may be shown about a certificate: whose, until when, its x5t#S256."""

    subject: str
    not_after: datetime
    thumbprint: str


def certificate_facts(pem: bytes, *, what: str = "the certificate") -> CertificateFacts:
    """The leaf's facts; raises `CredentialError` when `pem` holds no certificate."""
    leaf = load_certificate_chain(pem, what=what)[0]
    return CertificateFacts(
        leaf.subject.rfc4514_string(), leaf.not_valid_after_utc, certificate_thumbprint(leaf)
    )


def load_certificate_chain(
    pem: bytes, *, what: str = "the certificate"
) -> tuple[x509.Certificate, ...]:
    """Parse one or more PEM certificates, leaf first."""
    if b"-----BEGIN" not in pem:
        raise CredentialError(
            f"{what} is not PEM: expected '-----BEGIN CERTIFICATE-----'"
            + (
                " (it looks like DER; convert it with `openssl x509 -inform der`)"
                if _looks_like_der(pem)
                else ""
            )
        )
    try:
        chain = x509.load_pem_x509_certificates(pem)
    except ValueError:
        raise CredentialError(f"{what} holds no readable PEM certificate") from None
    return tuple(chain)


def certificate_expiry(pem: bytes) -> datetime | None:
    """When the first certificate in `pem` expires, or None if there is none to read."""
    try:
        return x509.load_pem_x509_certificate(pem).not_valid_after_utc
    except ValueError:
        return None


def load_private_key(pem: bytes, *, what: str = "the private key") -> UsableKey:
    """Parse an unencrypted PEM private key in PKCS#8, PKCS#1 or SEC1 form."""
    # Loading checks an RSA key's consistency, which takes tens of milliseconds, and every refresh
    # reads the same Secret again: remember what was read, by digest (failures are not kept).
    digest = hashlib.sha256(pem).digest()
    key = _loaded_keys.get(digest)
    if key is None:
        key = _load_private_key(pem, what=what)
        if len(_loaded_keys) >= MAX_REMEMBERED_KEYS:
            _loaded_keys.pop(next(iter(_loaded_keys)))  # the oldest
        _loaded_keys[digest] = key
    return key


#: parsed private keys kept; enough for one key per client of a large installation
MAX_REMEMBERED_KEYS = 10_000
_loaded_keys: dict[bytes, UsableKey] = {}


def _load_private_key(pem: bytes, *, what: str) -> UsableKey:
    if b"-----BEGIN" not in pem:
        raise CredentialError(
            f"{what} is not PEM: expected '-----BEGIN PRIVATE KEY-----'"
            + (
                " (it looks like DER; convert it with `openssl pkey -inform der`)"
                if _looks_like_der(pem)
                else ""
            )
        )
    if b"ENCRYPTED" in pem:
        raise CredentialError(
            f"{what} is encrypted; store it unencrypted in the Secret "
            "(e.g. `openssl pkey -in key.pem -out plain.pem`)",
            reason="EncryptedPrivateKey",
        )
    try:
        key: PrivateKeyTypes = serialization.load_pem_private_key(pem, password=None)
    except TypeError:
        raise CredentialError(
            f"{what} is encrypted; store it unencrypted in the Secret", reason="EncryptedPrivateKey"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        # The library's own message may quote parts of the input; say nothing about the bytes.
        raise CredentialError(
            f"{what} could not be read: expected an RSA, EC or Ed25519 key in PKCS#8, PKCS#1 or SEC1 PEM"
        ) from None
    if not isinstance(
        key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
    ):
        raise CredentialError(f"{what} is a {type(key).__name__}; use an RSA, EC or Ed25519 key")
    if isinstance(key, rsa.RSAPrivateKey) and key.key_size < MINIMUM_RSA_BITS:
        raise CredentialError(
            f"{what} is an RSA key of {key.key_size} bits; at least {MINIMUM_RSA_BITS} bits are required",
            reason="WeakKey",
        )
    return key


def load_transport_certificate(
    cert_pem: bytes, key_pem: bytes, *, now: datetime
) -> TransportCertificate:
    """Load the mTLS certificate and key, and check they belong together and are valid at `now`."""
    chain = load_certificate_chain(cert_pem, what="the transport certificate")
    key = load_private_key(key_pem, what="the transport certificate's private key")
    leaf = chain[0]
    if not _public_keys_equal(leaf.public_key(), key.public_key()):
        raise CredentialError(
            "the transport certificate's private key does not belong to the certificate "
            f"(subject {leaf.subject.rfc4514_string()}); put the matching key in the Secret",
            reason="KeyCertificateMismatch",
        )
    check_validity(leaf, now=now, what="the transport certificate")
    return TransportCertificate(chain=chain, private_key=key)


def check_validity(certificate: x509.Certificate, *, now: datetime, what: str) -> None:
    subject = certificate.subject.rfc4514_string()
    if now < certificate.not_valid_before_utc:
        raise CredentialError(
            f"{what} ({subject}) is not valid before "
            f"{certificate.not_valid_before_utc.isoformat()}; check the clock or the certificate",
            reason="CertificateNotYetValid",
        )
    if now > certificate.not_valid_after_utc:
        raise CredentialError(
            f"{what} ({subject}) expired at {certificate.not_valid_after_utc.isoformat()}; "
            "renew it and update the Secret",
            reason="CertificateExpired",
            not_after=certificate.not_valid_after_utc,
        )


def default_algorithm(key: UsableKey) -> SigningAlgorithm:
    if isinstance(key, rsa.RSAPrivateKey):
        return "PS256"
    if isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1):
        return "ES256"
    if isinstance(key, ed25519.Ed25519PrivateKey):
        raise CredentialError(
            "the signing key is an Ed25519 key; set the algorithm to EdDSA explicitly",
            reason="UnsupportedAlgorithm",
        )
    raise CredentialError(
        f"the signing key is an EC key on {key.curve.name}; only P-256 (ES256) is supported",
        reason="UnsupportedAlgorithm",
    )


def load_signing_key(key_pem: bytes, *, key_id: str, algorithm: str | None) -> SigningKey:
    """Load the assertion signing key and settle its algorithm (PS256 for RSA, ES256 for P-256)."""
    if not key_id:
        raise CredentialError("the signing key needs a key id (kid) as registered in the directory")
    key = load_private_key(key_pem, what="the signing key")
    if algorithm is None:
        return SigningKey(private_key=key, key_id=key_id, algorithm=default_algorithm(key))
    if algorithm not in SIGNING_ALGORITHMS:
        raise CredentialError(
            f"signing algorithm {algorithm!r} is not supported; use one of {', '.join(SIGNING_ALGORITHMS)}",
            reason="UnsupportedAlgorithm",
        )
    fits = {
        "PS256": isinstance(key, rsa.RSAPrivateKey),
        "RS256": isinstance(key, rsa.RSAPrivateKey),
        "ES256": isinstance(key, ec.EllipticCurvePrivateKey)
        and isinstance(key.curve, ec.SECP256R1),
        "EdDSA": isinstance(key, ed25519.Ed25519PrivateKey),
    }[algorithm]
    if not fits:
        raise CredentialError(
            f"signing algorithm {algorithm} does not fit the signing key ({_describe(key)}); "
            "use PS256 or RS256 for RSA, ES256 for EC P-256, EdDSA for Ed25519",
            reason="AlgorithmKeyMismatch",
        )
    return SigningKey(private_key=key, key_id=key_id, algorithm=algorithm)  # type: ignore[arg-type]


def _describe(key: UsableKey) -> str:
    if isinstance(key, rsa.RSAPrivateKey):
        return f"RSA {key.key_size} bits"
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return f"EC {key.curve.name}"
    return "Ed25519"


def _public_keys_equal(a: object, b: object) -> bool:
    def der(k: object) -> bytes:
        return k.public_bytes(  # type: ignore[attr-defined,no-any-return]
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    try:
        return der(a) == der(b)
    except (AttributeError, ValueError):
        return False


def _looks_like_der(data: bytes) -> bool:
    # DER certificates and keys start with a SEQUENCE tag.
    return data[:1] == b"\x30"
