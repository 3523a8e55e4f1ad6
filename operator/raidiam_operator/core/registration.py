"""Client registration (RFC 7591, RFC 7592) as pure decisions. No I/O; `now` is passed in.

- `ClientMetadata`: the metadata to register, typed for what FAPI and Open Finance Brasil use,
  with a bounded map of server-specific `extra` fields; `check_metadata` says what is wrong in
  the names of whoever wrote it (the `register` command's flags, a RaidiamRegistration's spec).
- `SoftwareStatement`: the directory's SSA with the claims that matter, read without trusting it
  (we are not its audience; the data provider checks its signature).
- `registration_body`: what is sent to the registration endpoint or registration_client_uri.
- `RegisteredDigest`: what was registered, in three parts (metadata, subject DN, the SSA's
  lasting claims), so that a change can be named by its part.
- `next_step`: register, update, read or nothing, as a chain of small predicates whose first
  answer is the reason.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal
from urllib.parse import quote

from raidiam_operator.core import rules
from raidiam_operator.core.errors import ConfigurationError
from raidiam_operator.core.reasons import Reason
from raidiam_operator.core.rules import AuthMethod

#: the directory's own bound on an SSA (Raidiam Connect documents at most 4,000 characters)
MAX_SOFTWARE_STATEMENT_LENGTH = 4000
#: how old an SSA the Brasil DCR profile lets a data provider accept
SOFTWARE_STATEMENT_MAX_AGE = timedelta(minutes=5)
#: how often a registration is read back to see drift or deletion at the server
DEFAULT_CHECK_INTERVAL = timedelta(days=1)
#: `extra` fields: a handful of server-specific ones, never a second metadata document
MAX_EXTRA_FIELDS = 32
MAX_EXTRA_JSON_BYTES = 8192
#: entries of a metadata list (redirect URIs, grant types, ...)
MAX_LISTED = 32
MAX_URI_LENGTH = 2048

#: the fields `ClientMetadata` types, by their RFC 7591 names
TYPED_FIELDS = frozenset(
    {
        "token_endpoint_auth_method",
        "grant_types",
        "response_types",
        "redirect_uris",
        "scope",
        "jwks_uri",
        "id_token_signed_response_alg",
        "token_endpoint_auth_signing_alg",
        "tls_client_auth_subject_dn",
        "tls_client_certificate_bound_access_tokens",
    }
)
#: fields the server or this operator sets, which `extra` may not send: credentials and the SSA
RESERVED_FIELDS = frozenset(
    {
        "software_statement",
        "client_id",
        "client_secret",
        "client_id_issued_at",
        "client_secret_expires_at",
        "registration_access_token",
        "registration_client_uri",
        "jwks",
    }
)
# The SSA's claims that change with every issue: they say nothing about the software.
_VOLATILE_CLAIMS = frozenset({"iat", "exp", "nbf", "jti"})
_FIELD_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.:-]{0,63}")

Json = str | int | float | bool | None | list["Json"] | dict[str, "Json"]


@dataclass(frozen=True)
class MetadataFieldNames:
    """How one source of registration settings names them, for messages that say what to fix."""

    auth_method: str
    redirect_uris: str
    jwks_uri: str
    subject_dn: str
    signing_alg: str
    grant_types: str
    response_types: str
    extra: str


METADATA_FLAGS = MetadataFieldNames(
    auth_method="--auth-method",
    redirect_uris="--redirect-uri",
    jwks_uri="--jwks-uri",
    subject_dn="--subject-dn",
    signing_alg="--signing-alg",
    grant_types="--grant-type",
    response_types="--response-type",
    extra="--metadata",
)


@dataclass(frozen=True)
class ClientMetadata:
    """The client metadata to register. `jwks_uri` None: the SSA's software_jwks_uri;
    `tls_client_auth_subject_dn` None: derived from the transport certificate."""

    token_endpoint_auth_method: AuthMethod = "tls_client_auth"
    grant_types: tuple[str, ...] = ("client_credentials",)
    response_types: tuple[str, ...] = ()
    redirect_uris: tuple[str, ...] = ()
    scope: str | None = None
    jwks_uri: str | None = None
    id_token_signed_response_alg: str | None = None
    token_endpoint_auth_signing_alg: str | None = None
    tls_client_auth_subject_dn: str | None = None
    #: RFC 8705 §3.4; FAPI and the Brasil profile want every token bound to the certificate
    tls_client_certificate_bound_access_tokens: bool = True
    extra: Mapping[str, Json] = field(default_factory=dict)


def check_metadata(metadata: ClientMetadata, names: MetadataFieldNames) -> ClientMetadata:
    """`metadata` unchanged when it can be registered; else what to fix, in `names`."""
    method = metadata.token_endpoint_auth_method
    if not rules.is_auth_method(method):
        raise ConfigurationError(
            f"{names.auth_method} {method!r} is not supported; use one of "
            f"{', '.join(rules.AUTH_METHODS)}"
        )
    for uri in metadata.redirect_uris:
        _check_uri(uri, names.redirect_uris)
    if metadata.jwks_uri is not None:
        _check_uri(metadata.jwks_uri, names.jwks_uri)
    for values, name in (
        (metadata.redirect_uris, names.redirect_uris),
        (metadata.grant_types, names.grant_types),
        (metadata.response_types, names.response_types),
    ):
        _check_list(values, name)
    if metadata.tls_client_auth_subject_dn is not None and method != "tls_client_auth":
        raise ConfigurationError(f"{names.subject_dn} only applies to tls_client_auth")
    if metadata.token_endpoint_auth_signing_alg is not None and method != "private_key_jwt":
        raise ConfigurationError(f"{names.signing_alg} only applies to private_key_jwt")
    _check_extra(metadata.extra, names.extra)
    return metadata


def _check_uri(uri: str, name: str) -> None:
    rules.check_https(uri, field=name)
    if len(uri) > MAX_URI_LENGTH:
        raise ConfigurationError(
            f"{name}: a URI of {len(uri)} characters is longer than {MAX_URI_LENGTH}"
        )


def _check_list(values: tuple[str, ...], name: str) -> None:
    if len(values) > MAX_LISTED:
        raise ConfigurationError(
            f"{name}: {len(values)} values, more than the {MAX_LISTED} accepted"
        )
    repeated = sorted({v for v in values if values.count(v) > 1})
    if repeated:
        raise ConfigurationError(f"{name} {', '.join(repeated)} given more than once")


def _check_extra(extra: Mapping[str, Json], name: str) -> None:
    if len(extra) > MAX_EXTRA_FIELDS:
        raise ConfigurationError(
            f"{name}: {len(extra)} fields, more than the {MAX_EXTRA_FIELDS} accepted"
        )
    for key in extra:
        if not _FIELD_NAME.fullmatch(key):
            raise ConfigurationError(f"{name} {key[:70]!r} is not a metadata field name")
        if key in TYPED_FIELDS:
            raise ConfigurationError(f"{name} may not set {key}; use its own setting")
        if key in RESERVED_FIELDS:
            raise ConfigurationError(
                f"{name} may not set {key}: the server or the operator sets it"
            )
    if len(json.dumps(extra).encode()) > MAX_EXTRA_JSON_BYTES:
        raise ConfigurationError(f"{name}: more than {MAX_EXTRA_JSON_BYTES} bytes of JSON")


@dataclass(frozen=True)
class SoftwareStatement:
    """The directory's software statement assertion and its claims, read without verifying the
    signature: the data provider verifies it; we only learn what it says about the software."""

    assertion: str = field(repr=False)
    claims: Mapping[str, object] = field(repr=False)

    @property
    def software_jwks_uri(self) -> str | None:
        value = self.claims.get("software_jwks_uri")
        return value if isinstance(value, str) else None

    @property
    def software_id(self) -> str | None:
        value = self.claims.get("software_id")
        return value if isinstance(value, str) else None

    @property
    def issued_at(self) -> float | None:
        value = self.claims.get("iat")
        return (
            float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
        )

    def lasting_claims(self) -> dict[str, object]:
        """The claims about the software, without those that change with every issue."""
        return {k: v for k, v in self.claims.items() if k not in _VOLATILE_CLAIMS}


def stale_software_statement_hint(statement: SoftwareStatement, *, now: datetime) -> str | None:
    """What to say when a server refuses an SSA older than the Brasil profile allows (a file
    fetched a while ago, a clock that is off), or None when its age is no reason."""
    issued_at = statement.issued_at
    if issued_at is None:
        return None
    age = now.timestamp() - issued_at
    if age <= SOFTWARE_STATEMENT_MAX_AGE.total_seconds():
        return None
    return (
        f"The software statement was issued {age:.0f} s before this request, and the Brasil "
        f"profile takes one at most {SOFTWARE_STATEMENT_MAX_AGE.total_seconds():.0f} s old: "
        "fetch a fresh one from the directory just before registering."
    )


def assertion_url(directory_api: str, organisation_id: str, software_statement_id: str) -> str:
    """Raidiam Connect's `GET /organisations/{OrganisationId}/softwarestatements/{SoftwareStatementId}/assertion`."""
    organisation, software = quote(organisation_id, safe=""), quote(software_statement_id, safe="")
    return (
        f"{directory_api.rstrip('/')}/organisations/{organisation}"
        f"/softwarestatements/{software}/assertion"
    )


def registration_body(
    metadata: ClientMetadata,
    *,
    software_statement: SoftwareStatement | None,
    subject_dn: str | None,
    client_id: str | None = None,
) -> dict[str, Json]:
    """The JSON to POST (RFC 7591 §3.1) or, with `client_id`, to PUT (RFC 7592 §2.2).
    `subject_dn`: `metadata`'s, or the one derived from the transport certificate."""
    body: dict[str, Json] = dict(metadata.extra)
    body.update(_typed_fields(metadata, software_statement, subject_dn))
    if software_statement is not None:
        body["software_statement"] = software_statement.assertion
    if client_id is not None:
        body["client_id"] = client_id
    return body


def _typed_fields(
    metadata: ClientMetadata, software_statement: SoftwareStatement | None, subject_dn: str | None
) -> dict[str, Json]:
    method = metadata.token_endpoint_auth_method
    jwks_uri = metadata.jwks_uri or (software_statement and software_statement.software_jwks_uri)
    fields: dict[str, Json] = {
        "token_endpoint_auth_method": method,
        "grant_types": list(metadata.grant_types),
        "response_types": list(metadata.response_types),
        "redirect_uris": list(metadata.redirect_uris) or None,
        "scope": metadata.scope,
        "jwks_uri": jwks_uri or None,
        "id_token_signed_response_alg": metadata.id_token_signed_response_alg,
        "token_endpoint_auth_signing_alg": metadata.token_endpoint_auth_signing_alg,
        "tls_client_auth_subject_dn": subject_dn if method == "tls_client_auth" else None,
        "tls_client_certificate_bound_access_tokens": metadata.tls_client_certificate_bound_access_tokens,
    }
    return {k: v for k, v in fields.items() if v is not None}


@dataclass(frozen=True)
class RegisteredDigest:
    """What was registered, in three parts; `software_statement` None when the SSA's claims are
    not known this time (no SSA was fetched), and so cannot count as changed."""

    metadata: str
    subject_dn: str
    software_statement: str | None

    def render(self) -> str:
        """One string for a status field; `parse_digest` reads it back."""
        return f"v1:{self.metadata}:{self.subject_dn}:{self.software_statement or '-'}"


def registered_digest(
    metadata: ClientMetadata,
    *,
    subject_dn: str | None,
    software_statement: SoftwareStatement | None,
    software_statement_known: bool = True,
) -> RegisteredDigest:
    """The digest of what `registration_body` sends, without the SSA itself (a fresh one each
    time) and with only its lasting claims. The metadata part is the metadata as configured (a
    jwks_uri taken from the SSA counts in the SSA's part), so that it is known without an SSA.
    `software_statement_known` False: the SSA's part is unknown (None), as when a check is
    decided before an SSA is fetched."""
    sent = _typed_fields(metadata, None, subject_dn)
    sent.pop("tls_client_auth_subject_dn", None)
    sent.update(metadata.extra)
    ssa_part = (
        _digest(software_statement.lasting_claims() if software_statement else None)
        if software_statement_known
        else None
    )
    return RegisteredDigest(_digest(sent), _digest(subject_dn), ssa_part)


def parse_digest(text: str | None) -> RegisteredDigest | None:
    """A rendered digest, or None for anything else (then every part counts as changed)."""
    parts = (text or "").split(":")
    if len(parts) != 4 or parts[0] != "v1":
        return None
    return RegisteredDigest(parts[1], parts[2], None if parts[3] == "-" else parts[3])


def _digest(value: object) -> str:
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


# -- what to do next ----------------------------------------------------------------------

RegistrationAction = Literal["register", "update", "read", "none"]


@dataclass(frozen=True)
class RecordedRegistration:
    """What the operator recorded of a registration (its Secret and status), before anything
    else is tried: a restart reads this and never registers twice."""

    client_id: str
    registration_client_uri: str
    digest: str | None
    checked_at: datetime | None = None


@dataclass(frozen=True)
class NextStep:
    action: RegistrationAction
    #: why: NotRegistered, MetadataChanged, SubjectDNChanged, SoftwareStatementChanged,
    #: RefreshRequested, CheckDue, UpToDate
    reason: Reason
    #: when to decide again, for "none": the scheduled check
    due: datetime | None = None


@dataclass(frozen=True)
class _Facts:
    recorded: RecordedRegistration
    registered: RegisteredDigest | None
    desired: RegisteredDigest
    now: datetime
    check_interval: timedelta
    refresh_requested: bool


def _metadata_changed(facts: _Facts) -> NextStep | None:
    registered = facts.registered
    if registered is None or registered.metadata != facts.desired.metadata:
        return NextStep("update", Reason.METADATA_CHANGED)
    return None


def _subject_dn_changed(facts: _Facts) -> NextStep | None:
    assert facts.registered is not None  # _metadata_changed answered otherwise
    if facts.registered.subject_dn != facts.desired.subject_dn:
        return NextStep("update", Reason.SUBJECT_DN_CHANGED)
    return None


def _software_statement_changed(facts: _Facts) -> NextStep | None:
    assert facts.registered is not None
    desired = facts.desired.software_statement
    if desired is not None and desired != facts.registered.software_statement:
        return NextStep("update", Reason.SOFTWARE_STATEMENT_CHANGED)
    return None


def _refresh_requested(facts: _Facts) -> NextStep | None:
    return NextStep("read", Reason.REFRESH_REQUESTED) if facts.refresh_requested else None


def _check_due(facts: _Facts) -> NextStep | None:
    checked_at = facts.recorded.checked_at
    if checked_at is None or facts.now >= checked_at + facts.check_interval:
        return NextStep("read", Reason.CHECK_DUE)
    return None


# Asked in this order; the first answer is the step and its reason.
_PREDICATES: tuple[Callable[[_Facts], NextStep | None], ...] = (
    _metadata_changed,
    _subject_dn_changed,
    _software_statement_changed,
    _refresh_requested,
    _check_due,
)


def next_step(
    recorded: RecordedRegistration | None,
    *,
    desired: RegisteredDigest,
    now: datetime,
    check_interval: timedelta = DEFAULT_CHECK_INTERVAL,
    refresh_requested: bool = False,
) -> NextStep:
    """What to do with a registration now. Nothing recorded: register. A change to what would
    be sent: update (RFC 7592 PUT with a fresh SSA). A refresh asked for, or the scheduled check
    due: read (GET). Else nothing until the next check."""
    if recorded is None:
        return NextStep("register", Reason.NOT_REGISTERED)
    facts = _Facts(
        recorded, parse_digest(recorded.digest), desired, now, check_interval, refresh_requested
    )
    for predicate in _PREDICATES:
        step = predicate(facts)
        if step is not None:
            return step
    assert recorded.checked_at is not None  # _check_due answered otherwise
    return NextStep("none", Reason.UP_TO_DATE, due=recorded.checked_at + check_interval)


# -- the server's answer -----------------------------------------------------------------


@dataclass(frozen=True)
class RegistrationHandle:
    """What RFC 7592 management needs: where the registration is, and the token to reach it."""

    registration_client_uri: str
    registration_access_token: str = field(repr=False)


@dataclass(frozen=True)
class Registration:
    """A registration as the server answered it. `document` is its JSON without the
    registration access token and the software statement (neither is ever shown)."""

    client_id: str
    registration_client_uri: str | None
    registration_access_token: str | None = field(repr=False)
    client_id_issued_at: datetime | None
    document: Mapping[str, object] = field(repr=False)

    def handle(self) -> RegistrationHandle | None:
        if self.registration_client_uri is None or self.registration_access_token is None:
            return None
        return RegistrationHandle(self.registration_client_uri, self.registration_access_token)

    def keeping_token_of(self, handle: RegistrationHandle) -> Registration:
        """RFC 7592 §2.2: a server may rotate the registration access token on update; when it
        returns none, the one we hold stays valid."""
        if self.registration_access_token is not None:
            return self
        return Registration(
            self.client_id,
            self.registration_client_uri or handle.registration_client_uri,
            handle.registration_access_token,
            self.client_id_issued_at,
            self.document,
        )
