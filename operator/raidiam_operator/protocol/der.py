"""What a private key's DER says about its cost, read before any library parses it.

Parsing a key is not cheap for every algorithm: OpenSSL derives a DSA or DH key's public half
while it decodes, which grows steeply with the modulus (docs/benchmarks.md), and an RSA key's
cost grows with its modulus. So the algorithm and the RSA modulus length are read here, from
the few DER structures a private key comes in (PKCS#8, PKCS#1, SEC1), and a key that the
operator would refuse anyway never reaches cryptography.

Pure: bytes in, a `KeyShape` out, `MalformedKey` for anything that is not one of those
structures.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

_SEQUENCE, _INTEGER, _OCTET_STRING, _OID = 0x30, 0x02, 0x04, 0x06
_EC_PARAMETERS = 0xA0  # SEC1's [0]

# Algorithm identifiers, as DER-encoded OIDs, and the names cryptography gives their keys.
_RSA = {bytes.fromhex("2a864886f70d010101"), bytes.fromhex("2a864886f70d01010a")}  # also PSS
_EC = bytes.fromhex("2a8648ce3d0201")
_ED25519 = bytes.fromhex("2b6570")
_OTHERS = {
    bytes.fromhex("2a8648ce380401"): "DSAPrivateKey",
    bytes.fromhex("2a864886f70d010301"): "DHPrivateKey",
    bytes.fromhex("2a8648ce3e0201"): "DHPrivateKey",
    bytes.fromhex("2b656e"): "X25519PrivateKey",
    bytes.fromhex("2b656f"): "X448PrivateKey",
    bytes.fromhex("2b6571"): "Ed448PrivateKey",
}

Algorithm = Literal["RSA", "EC", "Ed25519", "other"]


class MalformedKey(ValueError):
    """Not a PKCS#8, PKCS#1 or SEC1 private key."""


@dataclass(frozen=True, slots=True)
class KeyShape:
    algorithm: Algorithm
    #: for "other", the key's kind as cryptography names it (DSAPrivateKey, ...), else ""
    kind: str = ""
    #: the RSA modulus length in bits
    rsa_bits: int = 0
    #: an EC key that spells out its curve instead of naming it
    explicit_curve: bool = False


def key_shape(der: bytes, *, label: str) -> KeyShape:
    """The shape of the DER of a PEM block labelled `label` (PRIVATE KEY, RSA PRIVATE KEY or
    EC PRIVATE KEY)."""
    tag, start, end = _header(der, 0)
    if tag != _SEQUENCE or end != len(der):
        raise MalformedKey("not one DER SEQUENCE")
    if label == "RSA PRIVATE KEY":
        return _rsa_shape(der, start, end)
    if label == "EC PRIVATE KEY":
        return _sec1_shape(der, start, end)
    return _pkcs8_shape(der, start, end)


def _pkcs8_shape(der: bytes, start: int, end: int) -> KeyShape:
    fields = _children(der, start, end)
    if len(fields) < 3 or [f[0] for f in fields[:3]] != [_INTEGER, _SEQUENCE, _OCTET_STRING]:
        raise MalformedKey("not a PKCS#8 PrivateKeyInfo")
    algorithm = _children(der, fields[1][1], fields[1][2])
    if not algorithm or algorithm[0][0] != _OID:
        raise MalformedKey("no algorithm identifier")
    oid = der[algorithm[0][1] : algorithm[0][2]]
    _, key_start, key_end = fields[2]
    if oid in _RSA:
        tag, inner_start, inner_end = _header(der, key_start)
        if tag != _SEQUENCE or inner_end != key_end:
            raise MalformedKey("not a PKCS#1 RSAPrivateKey")
        return _rsa_shape(der, inner_start, inner_end)
    if oid == _EC:
        named = len(algorithm) > 1 and algorithm[1][0] == _OID
        tag, inner_start, inner_end = _header(der, key_start)
        if tag != _SEQUENCE or inner_end != key_end:
            raise MalformedKey("not a SEC1 ECPrivateKey")
        inner = _sec1_shape(der, inner_start, inner_end)
        return KeyShape("EC", explicit_curve=not named or inner.explicit_curve)
    if oid == _ED25519:
        return KeyShape("Ed25519")
    return KeyShape("other", kind=_OTHERS.get(oid, "key of an unknown algorithm"))


def _rsa_shape(der: bytes, start: int, end: int) -> KeyShape:
    # version, n, e, d, p, q, dP, dQ, qInv: two-prime keys only (version 0)
    fields = _children(der, start, end)
    if len(fields) != 9 or any(tag != _INTEGER for tag, _, _ in fields):
        raise MalformedKey("not a two-prime PKCS#1 RSAPrivateKey")
    _, n_start, n_end = fields[1]
    modulus = der[n_start:n_end].lstrip(b"\x00")
    bits = (len(modulus) - 1) * 8 + modulus[0].bit_length() if modulus else 0
    # In a key whose parts fit together none is longer than the modulus; a longer one would
    # only make the consistency check cost more.
    if any(e - s > n_end - n_start for _, s, e in fields[2:]):
        raise MalformedKey("a part of the RSA key is longer than its modulus")
    return KeyShape("RSA", rsa_bits=bits)


def _sec1_shape(der: bytes, start: int, end: int) -> KeyShape:
    # version 1, the private key, then [0] the curve and [1] the public key, both optional
    fields = _children(der, start, end)
    tags = [tag for tag, _, _ in fields]
    if tags[:2] != [_INTEGER, _OCTET_STRING] or not set(tags[2:]) <= {_EC_PARAMETERS, 0xA1}:
        raise MalformedKey("not a SEC1 ECPrivateKey")
    for tag, s, e in fields[2:]:
        if tag == _EC_PARAMETERS:
            curve = _children(der, s, e)
            return KeyShape("EC", explicit_curve=not curve or curve[0][0] != _OID)
    return KeyShape("EC")


def _children(der: bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    """(tag, start, end) of each element inside a constructed value."""
    found = []
    while start < end:
        tag, content_start, content_end = _header(der, start)
        if content_end > end:
            raise MalformedKey("an element runs past its parent")
        found.append((tag, content_start, content_end))
        start = content_end
    return found


def _header(der: bytes, offset: int) -> tuple[int, int, int]:
    """The tag at `offset`, and where its content starts and ends."""
    if offset + 2 > len(der):
        raise MalformedKey("truncated")
    tag, length = der[offset], der[offset + 1]
    offset += 2
    if length & 0x80:
        count = length & 0x7F
        if not 0 < count <= 4 or offset + count > len(der):
            raise MalformedKey("bad length")
        length = int.from_bytes(der[offset : offset + count], "big")
        offset += count
    if offset + length > len(der):
        raise MalformedKey("truncated")
    return tag, offset, offset + length
