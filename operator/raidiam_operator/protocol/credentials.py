"""Transport certificates and signing keys, loaded from PEM and checked before any request.

No I/O and no state; the caller passes `now` so validity checks are testable. A private key is
read in two steps: `read_private_key` is cheap and bounded (it refuses RSA moduli over 4096 bits
before any library parses the key), and `rsa_key_is_consistent` is the costly check of an RSA
key's parts, which the operator runs in a worker process (`keychecks`). `load_private_key` does
both here and now, for the command line.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, get_args

from cryptography import x509
from cryptography.exceptions import InternalError, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from raidiam_operator.core.errors import CredentialError
from raidiam_operator.core.reasons import Reason
from raidiam_operator.protocol.der import KeyShape, MalformedKey, key_shape

SigningAlgorithm = Literal["PS256", "ES256", "EdDSA", "RS256"]
SIGNING_ALGORITHMS: tuple[str, ...] = get_args(SigningAlgorithm)
MINIMUM_RSA_BITS = 2048
#: Open Finance and FAPI use 2048-bit keys; a larger one only makes the check costlier
MAXIMUM_RSA_BITS = 4096
TRANSPORT_KEY = "the transport certificate's private key"
SIGNING_KEY = "the signing key"

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


@dataclass(frozen=True)
class ReadKey:
    """A private key read cheaply: an RSA key's parts are not known to fit together yet."""

    key: UsableKey = field(repr=False)
    #: the key's DER, exactly as read: what the consistency check is given
    der: bytes = field(repr=False)

    @property
    def needs_check(self) -> bool:
        return isinstance(self.key, rsa.RSAPrivateKey)


def load_private_key(pem: bytes, *, what: str = "the private key") -> UsableKey:
    """Read and check an unencrypted PEM private key (PKCS#8, PKCS#1 or SEC1) here and now."""
    read = read_private_key(pem, what=what)
    if read.needs_check and not rsa_key_is_consistent(read.der):
        raise inconsistent_key(what)
    return read.key


def read_private_key(pem: bytes, *, what: str) -> ReadKey:
    """Everything about a private key that is cheap to learn: its form, its algorithm and size.

    Bounded in time by the PEM's size: the algorithm and the RSA modulus are read from the DER
    before cryptography parses the key, and an RSA key is parsed without its consistency check
    (see `rsa_key_is_consistent`). EC keys (named curves only) and Ed25519 keys are checked
    whole: a point on a named curve takes at most a few milliseconds.
    """
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
            reason=Reason.ENCRYPTED_PRIVATE_KEY,
        )
    unreadable = CredentialError(
        f"{what} could not be read: expected an RSA, EC or Ed25519 key in PKCS#8, PKCS#1 or SEC1 PEM"
    )
    block = _private_key_block(pem)
    if block is None:
        raise unreadable
    label, der = block
    if label not in _KEY_LABELS:
        raise CredentialError(
            f"{what} is a {_KEY_LABELS_OF_OTHERS.get(label, label)}; use an RSA, EC or Ed25519 key"
        )
    try:
        shape = key_shape(der, label=label)
    except MalformedKey:
        raise unreadable from None
    if shape.algorithm == "other":
        raise CredentialError(f"{what} is a {shape.kind}; use an RSA, EC or Ed25519 key")
    if shape.explicit_curve:
        raise CredentialError(
            f"{what} is an EC key that spells out its curve's parameters; use a named curve "
            "(P-256: `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256`)"
        )
    if shape.rsa_bits > MAXIMUM_RSA_BITS:
        raise CredentialError(
            f"{what} is an RSA key of {shape.rsa_bits} bits; at most {MAXIMUM_RSA_BITS} bits are "
            "accepted, because checking a larger key costs the operator seconds of CPU, and "
            "Open Finance and FAPI use 2048-bit keys: use a 2048-bit key",
            reason=Reason.KEY_TOO_LARGE,
        )
    try:
        parsed = serialization.load_der_private_key(
            der, password=None, unsafe_skip_rsa_key_validation=True
        )
    except TypeError:
        raise CredentialError(
            f"{what} is encrypted; store it unencrypted in the Secret",
            reason=Reason.ENCRYPTED_PRIVATE_KEY,
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        # The library's own message may quote parts of the input; say nothing about the bytes.
        raise unreadable from None
    usable = _as_read(parsed, shape)
    if usable is None:
        raise unreadable  # not the key its DER was read as: nothing about it can be trusted
    if isinstance(usable, rsa.RSAPrivateKey) and usable.key_size < MINIMUM_RSA_BITS:
        raise CredentialError(
            f"{what} is an RSA key of {usable.key_size} bits; at least {MINIMUM_RSA_BITS} bits are required",
            reason=Reason.WEAK_KEY,
        )
    return ReadKey(usable, der)


def _as_read(key: PrivateKeyTypes, shape: KeyShape) -> UsableKey | None:
    """`key` if cryptography parsed the key that `shape` read from the DER, else None."""
    if isinstance(key, rsa.RSAPrivateKey):
        return key if shape.algorithm == "RSA" and key.key_size == shape.rsa_bits else None
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key if shape.algorithm == "EC" else None
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key if shape.algorithm == "Ed25519" else None
    return None


def rsa_key_is_consistent(der: bytes) -> bool:
    """Whether an RSA key's parts fit together (primes, exponents): cryptography's full check.

    Costly: tens of milliseconds for a 2048-bit key, and seconds for some malformed keys within
    the size bound, all of it holding the GIL. The operator runs it in a worker process.
    """
    try:
        serialization.load_der_private_key(der, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm, InternalError):
        return False
    return True


def inconsistent_key(what: str) -> CredentialError:
    return CredentialError(
        f"{what} is not a consistent RSA key (its primes and exponents do not fit together); "
        "generate the key again"
    )


#: the PEM labels of the private keys read (PKCS#8, PKCS#1, SEC1)
_KEY_LABELS = frozenset({"PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY"})
_KEY_LABELS_OF_OTHERS = {
    "DSA PRIVATE KEY": "DSAPrivateKey",
    "OPENSSH PRIVATE KEY": "key in OpenSSH's own format",
}


@dataclass(frozen=True, slots=True)
class PemBlock:
    label: str
    #: the whole block, from -----BEGIN to the end of its -----END line's dashes
    text: bytes = field(repr=False)

    @property
    def body(self) -> bytes:
        """What lies between the BEGIN and the END line (base64, with any headers)."""
        return self.text[len(self.label) + 16 : -(len(self.label) + 14)]


def pem_blocks(data: bytes, *, wanted: Callable[[str], bool]) -> Iterator[PemBlock]:
    """The PEM blocks in `data` whose label is `wanted`, in order; a block without its END line
    ends them. Linear in the size of `data`, however it is arranged (a regular expression for
    blocks takes quadratic time over a run of BEGIN lines without their END)."""
    position = 0
    while (start := data.find(b"-----BEGIN ", position)) >= 0:
        label_start = start + len(b"-----BEGIN ")
        label_end = data.find(b"-----", label_start)
        if label_end < 0:
            return
        position = label_end + 5
        label = data[label_start:label_end]
        if not _PEM_LABEL.fullmatch(label) or not wanted(label.decode("ascii")):
            continue
        footer = b"-----END " + label + b"-----"
        end = data.find(footer, position)
        if end < 0:
            return
        position = end + len(footer)
        yield PemBlock(label.decode("ascii"), data[start:position])


_PEM_LABEL = re.compile(rb"[A-Z0-9 ]{1,40}")


def _private_key_block(pem: bytes) -> tuple[str, bytes] | None:
    """The first PEM block that holds a private key (others, such as EC PARAMETERS, are
    skipped), as its label and its DER."""
    block = next(pem_blocks(pem, wanted=lambda label: label.endswith("PRIVATE KEY")), None)
    if block is None:
        return None
    try:
        return block.label, base64.b64decode(b"".join(block.body.split()), validate=True)
    except (binascii.Error, ValueError):
        return None


def load_transport_certificate(
    cert_pem: bytes, key_pem: bytes, *, now: datetime
) -> TransportCertificate:
    """Load the mTLS certificate and key here and now (see `transport_certificate`)."""
    chain = load_certificate_chain(cert_pem, what="the transport certificate")
    return transport_certificate(chain, load_private_key(key_pem, what=TRANSPORT_KEY), now=now)


def transport_certificate(
    chain: tuple[x509.Certificate, ...], key: UsableKey, *, now: datetime
) -> TransportCertificate:
    """The mTLS certificate chain with its (loaded) key: checked that they belong together and
    are valid at `now`."""
    leaf = chain[0]
    try:
        public = leaf.public_key()
    except (ValueError, UnsupportedAlgorithm):
        raise CredentialError(
            f"the transport certificate (subject {leaf.subject.rfc4514_string()}) holds a "
            "public key that cannot be read; use a certificate for an RSA, EC or Ed25519 key"
        ) from None
    if isinstance(public, rsa.RSAPublicKey) and public.key_size > MAXIMUM_RSA_BITS:
        raise CredentialError(
            f"the transport certificate (subject {leaf.subject.rfc4514_string()}) holds an RSA "
            f"key of {public.key_size} bits; at most {MAXIMUM_RSA_BITS} bits are accepted, and "
            "Open Finance and FAPI use 2048-bit keys",
            reason=Reason.KEY_TOO_LARGE,
        )
    if not _public_keys_equal(public, key.public_key()):
        raise CredentialError(
            "the transport certificate's private key does not belong to the certificate "
            f"(subject {leaf.subject.rfc4514_string()}); put the matching key in the Secret",
            reason=Reason.KEY_CERTIFICATE_MISMATCH,
        )
    check_validity(leaf, now=now, what="the transport certificate")
    return TransportCertificate(chain=chain, private_key=key)


def check_validity(certificate: x509.Certificate, *, now: datetime, what: str) -> None:
    subject = certificate.subject.rfc4514_string()
    if now < certificate.not_valid_before_utc:
        raise CredentialError(
            f"{what} ({subject}) is not valid before "
            f"{certificate.not_valid_before_utc.isoformat()}; check the clock or the certificate",
            reason=Reason.CERTIFICATE_NOT_YET_VALID,
        )
    if now > certificate.not_valid_after_utc:
        raise CredentialError(
            f"{what} ({subject}) expired at {certificate.not_valid_after_utc.isoformat()}; "
            "renew it and update the Secret",
            reason=Reason.CERTIFICATE_EXPIRED,
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
            reason=Reason.UNSUPPORTED_ALGORITHM,
        )
    raise CredentialError(
        f"the signing key is an EC key on {key.curve.name}; only P-256 (ES256) is supported",
        reason=Reason.UNSUPPORTED_ALGORITHM,
    )


def load_signing_key(key_pem: bytes, *, key_id: str, algorithm: str | None) -> SigningKey:
    """Load the assertion signing key here and now (see `signing_key`)."""
    if not key_id:
        raise _no_key_id()
    return signing_key(
        load_private_key(key_pem, what=SIGNING_KEY), key_id=key_id, algorithm=algorithm
    )


def signing_key(key: UsableKey, *, key_id: str, algorithm: str | None) -> SigningKey:
    """The (loaded) assertion signing key with its algorithm settled (PS256 for RSA, ES256 for
    P-256)."""
    if not key_id:
        raise _no_key_id()
    if algorithm is None:
        return SigningKey(private_key=key, key_id=key_id, algorithm=default_algorithm(key))
    if algorithm not in SIGNING_ALGORITHMS:
        raise CredentialError(
            f"signing algorithm {algorithm!r} is not supported; use one of {', '.join(SIGNING_ALGORITHMS)}",
            reason=Reason.UNSUPPORTED_ALGORITHM,
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
            reason=Reason.ALGORITHM_KEY_MISMATCH,
        )
    return SigningKey(private_key=key, key_id=key_id, algorithm=algorithm)  # type: ignore[arg-type]


def _no_key_id() -> CredentialError:
    return CredentialError("the signing key needs a key id (kid) as registered in the directory")


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
