"""Private keys that cost the operator time to check, for tests of its bounds.

Built from their parts (DER written here), so that none takes seconds to generate: the one
prime they need is the 4096-bit prime of RFC 3526's group 16 (public, and a prime, so that
OpenSSL's primality test runs every round on it). These are test keys, useless for anything
else.
"""

from __future__ import annotations

import base64
import random

#: RFC 3526, 4096-bit MODP group (group 16): a 4096-bit prime
RFC3526_PRIME_4096 = int(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74"
    "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437"
    "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05"
    "98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB"
    "9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B"
    "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF695581718"
    "3995497CEA956AE515D2261898FA051015728E5A8AAAC42DAD33170D04507A33"
    "A85521ABDF1CBA64ECFB850458DBEF0A8AEA71575D060C7DB3970F85A6E1E4C7"
    "ABF5AE8CDB0933D71E8C94E04A25619DCEE3D2261AD2EE6BF12FFA06D98A0864"
    "D87602733EC86A64521F2B18177B200CBBE117577A615D6C770988C0BAD946E2"
    "08E24FA074E5AB3143DB5BFCE0FD108E4B82D120A92108011A723C12A787E6D7"
    "88719A10BDBA5B2699C327186AF4E23C1A946834B6150BDA2583E9CA2AD44CE8"
    "DBBBC2DB04DE8EF92E8EFC141FBECAA6287C59474E6BC05D99B2964FA090C3A2"
    "233BA186515BE7ED1F612970CEE2D7AFB81BDD762170481CD0069127D5B05AA9"
    "93B4EA988D8FDDC186FFB7DC90A6C08F4DF435C934063199FFFFFFFFFFFFFFFF",
    16,
)


def slow_rsa_key_pem(seed: int = 0) -> bytes:
    """A malformed 4096-bit RSA key (PKCS#1 PEM) whose consistency check takes seconds of CPU:
    both its primes are 4096 bits long, and its modulus is not their product. `seed` makes
    byte-different keys."""
    rng = random.Random(seed)
    p = RFC3526_PRIME_4096
    modulus = rng.getrandbits(4096) | (1 << 4095) | 1
    return _pkcs1_pem(modulus, 65537, rng.getrandbits(4000), p, p, 3, 5, 7)


def oversized_rsa_key_pem() -> bytes:
    """A malformed 8192-bit RSA key (PKCS#1 PEM): its modulus is the square of a 4096-bit
    prime, and its check would take seconds were it ever run."""
    p = RFC3526_PRIME_4096
    return _pkcs1_pem(p * p, 65537, random.Random(1).getrandbits(8000), p, p, 3, 5, 7)


def dsa_key_pem(bits: int) -> bytes:
    """A DSA key (OpenSSL's traditional PEM) with a `bits`-bit modulus: OpenSSL derives its
    public half while it parses it, which takes minutes at 60,000 bits."""
    rng = random.Random(bits)
    p = rng.getrandbits(bits) | (1 << (bits - 1)) | 1
    q, g, x = rng.getrandbits(256) | 1, rng.getrandbits(bits - 8), rng.getrandbits(bits - 8)
    return _pem("DSA PRIVATE KEY", _sequence(*map(_integer, (0, p, q, g, pow(g, 3, p), x))))


def _pkcs1_pem(*parts: int) -> bytes:
    return _pem("RSA PRIVATE KEY", _sequence(_integer(0), *(_integer(part) for part in parts)))


def _pem(label: str, der: bytes) -> bytes:
    text = base64.b64encode(der)
    lines = b"\n".join(text[i : i + 64] for i in range(0, len(text), 64))
    return f"-----BEGIN {label}-----\n".encode() + lines + f"\n-----END {label}-----\n".encode()


def _integer(value: int) -> bytes:
    content = value.to_bytes(value.bit_length() // 8 + 1, "big")  # a leading 0: positive
    return b"\x02" + _length(len(content)) + content


def _sequence(*items: bytes) -> bytes:
    content = b"".join(items)
    return b"\x30" + _length(len(content)) + content


def _length(size: int) -> bytes:
    if size < 0x80:
        return bytes([size])
    encoded = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(encoded)]) + encoded
