"""The registration side of the OAuth protocol, without HTTP: the software statement read and
bounded, the subject DN in the Open Finance Brasil profile's format, which registration
endpoint to use, and what a registration server's or the directory's answer means. Pure.

Nothing here puts a software statement or a registration access token into a message: both
are credentials (the SSA lets its holder register the software at any bank for 5 minutes).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.x509.oid import NameOID

from raidiam_operator.core.errors import (
    AuthorizationServerRejection,
    InvalidSoftwareStatement,
    InvalidTokenResponse,
    RaidiamOperatorError,
    RegistrationEndpointMissing,
    RegistrationGone,
    RegistrationRejected,
    ServerUnavailable,
    SoftwareStatementRefused,
    SoftwareStatementUnavailable,
)
from raidiam_operator.core.registration import (
    MAX_SOFTWARE_STATEMENT_LENGTH,
    MAX_URI_LENGTH,
    ClientMetadata,
    Registration,
    SoftwareStatement,
)
from raidiam_operator.core.rules import url_problem
from raidiam_operator.core.texts import SERVER_VALUE_LIMIT, quoted_server_text
from raidiam_operator.protocol.credentials import TransportCertificate
from raidiam_operator.protocol.metadata import ServerMetadata
from raidiam_operator.protocol.tokens import classify_error_response, unverified_claims

# A signed compact JWS: three base64url parts, the signature not empty (an unsigned SSA is
# no SSA).
_COMPACT_JWS = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
#: a client_id longer than this is not one a server means
MAX_CLIENT_ID_LENGTH = 256
# RFC 7591 leaves client_id a string; RFC 6749 appendix A gives it VSCHARs (printable ASCII).
_CLIENT_ID = re.compile(r"[\x20-\x7e]+")
MAX_REGISTRATION_TOKEN_LENGTH = 4096
# Fields of a registration answer never shown: credentials, and the SSA sent back (RFC 7591
# §3.2.1 lets a server return it).
SECRET_FIELDS = frozenset({"registration_access_token", "software_statement", "client_secret"})

# The attributes the profile writes by name (clause 7.1.2); every other one as its dotted OID,
# "=#" and the DER of its value in hex.
_NAMED_ATTRIBUTES = frozenset(
    {
        NameOID.COMMON_NAME,
        NameOID.LOCALITY_NAME,
        NameOID.STATE_OR_PROVINCE_NAME,
        NameOID.ORGANIZATION_NAME,
        NameOID.ORGANIZATIONAL_UNIT_NAME,
        NameOID.COUNTRY_NAME,
        NameOID.STREET_ADDRESS,
        NameOID.DOMAIN_COMPONENT,
        NameOID.USER_ID,
    }
)


def read_software_statement(text: str | bytes, *, source: str) -> SoftwareStatement:
    """The SSA in `text` (a file's content or the directory's answer, named by `source` in
    messages), bounded and shaped as a signed JWT, with its claims read unverified."""
    if isinstance(text, bytes):
        try:
            text = text.decode("ascii")
        except UnicodeDecodeError:
            raise InvalidSoftwareStatement(
                f"the software statement from {source} is not ASCII text; it must be a JWT"
            ) from None
    assertion = text.strip()
    if len(assertion) > MAX_SOFTWARE_STATEMENT_LENGTH:
        raise InvalidSoftwareStatement(
            f"the software statement from {source} has {len(assertion)} characters, more than "
            f"the {MAX_SOFTWARE_STATEMENT_LENGTH} a directory issues"
        )
    claims = unverified_claims(assertion) if _COMPACT_JWS.fullmatch(assertion) else None
    if claims is None:
        raise InvalidSoftwareStatement(
            f"the software statement from {source} is not a signed JWT (header.payload.signature "
            "in base64url with a JSON payload); give the assertion the directory issued"
        )
    return SoftwareStatement(assertion, claims)


def open_finance_subject_dn(certificate: x509.Certificate) -> str:
    """`tls_client_auth_subject_dn` as the Open Finance Brasil DCR profile writes it: the RDNs
    in reverse order joined by ",", CN, L, ST, O, OU, C, STREET, DC and UID by name (RFC 4514),
    every other attribute as `<dotted OID>=#<DER of its value in hex>`, the DER as the
    certificate carries it."""
    values = _attribute_values(certificate.subject.public_bytes())
    rdns = []
    for rdn, ders in zip(certificate.subject.rdns, values, strict=True):
        rdns.append(
            "+".join(
                attribute.rfc4514_string()
                if attribute.oid in _NAMED_ATTRIBUTES
                else f"{attribute.oid.dotted_string}=#{der.hex()}"
                for attribute, der in zip(rdn, ders, strict=True)
            )
        )
    return ",".join(reversed(rdns))


def subject_dn_for(metadata: ClientMetadata, transport: TransportCertificate | None) -> str | None:
    """The `tls_client_auth_subject_dn` to register: the one given, else for tls_client_auth the
    transport certificate's subject in the profile's format (so a renewed certificate with a new
    subject changes what is registered); None for the other methods."""
    if metadata.tls_client_auth_subject_dn is not None:
        return metadata.tls_client_auth_subject_dn
    if metadata.token_endpoint_auth_method == "tls_client_auth" and transport is not None:
        return open_finance_subject_dn(transport.leaf)
    return None


def _attribute_values(name_der: bytes) -> list[list[bytes]]:
    """Each attribute's value TLV, per RDN, in the order of the Name's DER: SEQUENCE OF SET OF
    SEQUENCE {type OID, value}."""
    _, start, end = _tlv(name_der, 0)
    rdns: list[list[bytes]] = []
    offset = start
    while offset < end:
        _, set_start, set_end = _tlv(name_der, offset)
        values: list[bytes] = []
        inner = set_start
        while inner < set_end:
            _, pair_start, pair_end = _tlv(name_der, inner)
            _, _, oid_end = _tlv(name_der, pair_start)
            values.append(name_der[oid_end:pair_end])
            inner = pair_end
        rdns.append(values)
        offset = set_end
    return rdns


def _tlv(der: bytes, offset: int) -> tuple[int, int, int]:
    """(tag, where the content starts, where it ends) of the DER element at `offset`."""
    tag, length = der[offset], der[offset + 1]
    start = offset + 2
    if length & 0x80:
        size = length & 0x7F
        length = int.from_bytes(der[start : start + size], "big")
        start += size
    return tag, start, start + length


def registration_endpoint_for(metadata: ServerMetadata, *, mutual_tls: bool) -> str:
    """RFC 8705 §5: with a certificate, the mTLS alias when the server has one (the Brasil
    profile registers over mTLS only)."""
    if mutual_tls and metadata.mtls_registration_endpoint:
        return metadata.mtls_registration_endpoint
    if metadata.registration_endpoint:
        return metadata.registration_endpoint
    if metadata.mtls_registration_endpoint:
        return metadata.mtls_registration_endpoint
    raise RegistrationEndpointMissing(
        f"the discovery document of {metadata.issuer} has no registration_endpoint (nor "
        "mtls_endpoint_aliases.registration_endpoint): this server takes no dynamic client "
        "registration; register the client by hand, or check the issuer URL",
    )


def _origin(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    return parts.scheme, (parts.hostname or "").lower(), parts.port or 443


def server_urls(metadata: ServerMetadata) -> tuple[str, ...]:
    """The URLs whose origins a registration answer may send the registration access token to:
    the issuer's and its registration endpoints', which discovery holds to the issuer policy."""
    return tuple(
        url
        for url in (
            metadata.issuer,
            metadata.registration_endpoint,
            metadata.mtls_registration_endpoint,
        )
        if url
    )


def parse_registration(body: bytes, *, url: str, server: tuple[str, ...]) -> Registration:
    """A 200/201 registration answer (RFC 7591 §3.2.1, RFC 7592 §2.1) to a request at `url`.

    The registration access token goes wherever `registration_client_uri` says, so it must be
    an https URL at the origin of `url` or of one of the `server`'s URLs (`server_urls`): a
    bank's answer may not send the token elsewhere. The client id goes into the status and
    Events: printable ASCII only."""
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise InvalidTokenResponse(f"the registration answer from {url} is not JSON") from None
    if not isinstance(document, dict):
        raise InvalidTokenResponse(f"the registration answer from {url} is not a JSON object")
    client_id = document.get("client_id")
    if (
        not isinstance(client_id, str)
        or not _CLIENT_ID.fullmatch(client_id)
        or len(client_id) > MAX_CLIENT_ID_LENGTH
    ):
        raise InvalidTokenResponse(
            f"the registration answer from {url} has client_id "
            f"{quoted_server_text(client_id, limit=40)}; expected a string of at most "
            f"{MAX_CLIENT_ID_LENGTH} printable ASCII characters"
        )
    uri = document.get("registration_client_uri")
    if uri is not None:
        problem = (
            "is not a string"
            if not isinstance(uri, str)
            else f"is longer than {MAX_URI_LENGTH} characters"
            if len(uri) > MAX_URI_LENGTH
            else url_problem(uri)
        )
        if problem is None and _origin(uri) not in {_origin(u) for u in (url, *server)}:
            problem = (
                "is on another server than the issuer and its registration endpoints, and the "
                "registration access token would be sent there"
            )
        if problem is not None:
            raise InvalidTokenResponse(
                f"the registration answer from {url} has a registration_client_uri that {problem}"
            )
    token = document.get("registration_access_token")
    if token is not None and not (
        isinstance(token, str) and token and len(token) <= MAX_REGISTRATION_TOKEN_LENGTH
    ):
        raise InvalidTokenResponse(
            f"the registration answer from {url} has a registration_access_token that is not a "
            f"string of at most {MAX_REGISTRATION_TOKEN_LENGTH} characters"
        )
    return Registration(
        client_id=client_id,
        registration_client_uri=uri,
        registration_access_token=token,
        client_id_issued_at=_issued_at(document.get("client_id_issued_at")),
        document={k: v for k, v in document.items() if k not in SECRET_FIELDS},
    )


def _issued_at(value: object) -> datetime | None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 253402300800:
        return None
    return datetime.fromtimestamp(value, UTC)


def registration_error(
    status_code: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: datetime,
    at_client_uri: bool,
) -> RaidiamOperatorError:
    """What a refused registration request means. At the registration_client_uri (RFC 7592
    §2), 401 and 404 say the registration is gone, and 405 that the server does not support the
    operation; 5xx and 429 are transient, as for tokens."""
    if at_client_uri and status_code in (401, 404):
        return RegistrationGone(
            f"the registration is gone at the server (HTTP {status_code} at its "
            "registration_client_uri): it was deleted there, or its registration access token "
            "was revoked; register the client again",
            status_code=status_code,
        )
    if at_client_uri and status_code == 405:
        # RFC 7592 §2.3: a server may not support deletion (or an update) at all.
        return RegistrationRejected("method_not_allowed", None, status_code=405)
    error = classify_error_response(status_code, headers, body, now=now)
    if isinstance(error, AuthorizationServerRejection):
        return RegistrationRejected(error.error, error.description, status_code=status_code)
    return error


def software_statement_error(
    status_code: int, headers: Mapping[str, str], body: bytes, *, now: datetime, url: str
) -> RaidiamOperatorError:
    """What the directory's refusal of the SSA request means: an outage (transient), or a
    refusal that names what to fix (the token, the ids)."""
    error = classify_error_response(status_code, headers, body, now=now)
    if isinstance(error, ServerUnavailable):
        return SoftwareStatementUnavailable(
            f"the directory answered HTTP {status_code} to the software statement request at "
            f"{url}"
            + (f"; it asked to retry after {error.retry_after:.0f} s" if error.retry_after else ""),
            kind=error.kind,
            retry_after=error.retry_after,
        )
    if isinstance(error, AuthorizationServerRejection):
        return SoftwareStatementRefused(error.error, error.description, status_code=status_code)
    if status_code == 404:
        return SoftwareStatementRefused("not_found", None, status_code=404)
    return SoftwareStatementUnavailable(
        f"the directory answered HTTP {status_code} without an error code to the software "
        f"statement request at {quoted_server_text(url, limit=SERVER_VALUE_LIMIT * 4)}; check "
        "the directory API URL",
        kind=f"http_{status_code}",
    )
