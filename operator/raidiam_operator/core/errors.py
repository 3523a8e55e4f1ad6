"""Every failure the operator can report, from either outside system, as one small tree.

    RaidiamOperatorError
     ├── ConfigurationError ............ the user must change the spec, a Secret or the directory
     │    ├── CredentialError .......... bad PEM, key/certificate mismatch, expired certificate
     │    │    │                         (with its `not_after`), weak or oversized key
     │    │    └── KeyCheckDeferred .... the namespace spent its budget for key checks: try again
     │    │                              after `retry_after` seconds
     │    ├── ServerMetadataError ...... issuer mismatch, auth method or alg not supported
     │    │    └── RegistrationEndpointMissing  no registration_endpoint in discovery
     │    ├── InvalidSoftwareStatement . an SSA that is not a JWT of at most 4,000 characters
     │    ├── DirectoryTokenMissing .... no directory:software token to fetch an SSA with
     │    ├── RegistrationInDoubt ...... a registration POST may have made a client we hold no
     │    │                              credentials of: a person decides before another is sent
     │    └── RegistrationNotReady ..... waiting: spec.clientIdFrom's RaidiamRegistration has no
     │                                   client id for its current spec yet (or is not there)
     ├── AuthorizationServerRejection .. 400/401 with an OAuth `error` code (invalid_client, ...)
     │    ├── RegistrationRejected ..... RFC 7591/7592 refusal (invalid_client_metadata, ...)
     │    └── SoftwareStatementRefused . the directory refused the SSA request (invalid_token, ...)
     ├── RegistrationGone .............. 401/404 at registration_client_uri: deleted at the server
     ├── KubernetesError ............... the API server refused a call, and says why
     │    ├── ObjectNotFound ........... 404: the object is not there
     │    ├── Conflict ................. 409 (or 404 on a replace): it changed since it was read
     │    └── Forbidden ................ 403: the operator's RBAC does not allow the call
     └── TransientError ................ worth retrying with backoff; may carry `retry_after`
          ├── ServerUnavailable ........ the authorization server: 5xx, 429
          ├── ConnectionFailure ........ the authorization server: timeouts, refused connections,
          │    │                         TLS handshake failures
          │    └── RequestNotSent ...... no byte of the request left: no connection (DNS, refused,
          │                              TLS handshake, connect timeout), or none free in time
          ├── InvalidTokenResponse ..... a response we cannot use: not JSON, no token, too large
          ├── SoftwareStatementUnavailable  the directory: 5xx, 429, unreachable
          └── KubernetesUnavailable .... the API server: 5xx, 429, timeouts, refused connections

`protocol.client` raises the OAuth side, `kube.errors` the Kubernetes side: each translates its
library's exceptions once, so nothing above them catches httpx or kubernetes exceptions.

Each error has a `reason` (a `core.reasons.Reason`, used as the status condition reason, whose
outcome is transient under TransientError and failed elsewhere) and a message that says what to
fix. Messages never include token, assertion or key material: they are built
only from metadata (URLs, client ids, codes, key sizes, object names, HTTP statuses), never from
request or response bodies beyond the OAuth `error` and `error_description` fields.
"""

from __future__ import annotations

import re
from datetime import datetime

from raidiam_operator.core.reasons import Reason
from raidiam_operator.core.texts import EVENT_NOTE_LIMIT, cut_bytes, sentences


class RaidiamOperatorError(Exception):
    """Base of all errors raised by this package."""

    reason = Reason.ERROR

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def note(self, limit: int = EVENT_NOTE_LIMIT) -> str:
        """The message in at most `limit` bytes, for an Event."""
        return cut_bytes(self.message, limit)


class ConfigurationError(RaidiamOperatorError):
    """Input that cannot work until someone changes it. Retrying alone will not help."""

    reason = Reason.INVALID_CONFIGURATION

    def __init__(self, message: str, *, reason: Reason | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class CredentialError(ConfigurationError):
    """The transport certificate or the signing key cannot be used."""

    reason = Reason.INVALID_CREDENTIALS

    def __init__(
        self, message: str, *, reason: Reason | None = None, not_after: datetime | None = None
    ) -> None:
        super().__init__(message, reason=reason)
        #: for an expired certificate, when it expired: still worth a metric and the status
        self.not_after = not_after


class KeyCheckDeferred(CredentialError):
    """A key is not checked now: its namespace has spent its budget of checking time."""

    reason = Reason.KEY_CHECK_DEFERRED

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ServerMetadataError(ConfigurationError):
    """The authorization server's discovery document does not fit this client."""

    reason = Reason.DISCOVERY_MISMATCH


class AuthorizationServerRejection(RaidiamOperatorError):
    """The authorization server answered the token request with an OAuth error."""

    reason = Reason.TOKEN_REQUEST_REJECTED
    #: what was rejected, as the message begins
    summary = "the authorization server rejected the token request"

    def __init__(self, error: str, description: str | None, *, status_code: int) -> None:
        self.error = error
        #: the server's error_description, already cleaned (see texts.server_text)
        self.description = description
        self.status_code = status_code
        self.hints = [self._hint(error)]
        super().__init__(self._compose(description))

    def _hint(self, error: str) -> str:
        return _hint_for(error)

    def add_hint(self, hint: str, *, first: bool = False) -> None:
        """Say more about the likely cause, from what the client knows about the request and the
        server; `first` when the server's own words point at this cause."""
        if first:
            self.hints.insert(0, hint)
        else:
            self.hints.append(hint)
        self.message = self._compose(self.description)
        self.args = (self.message,)

    def mentions(self, pattern: re.Pattern[str]) -> bool:
        """Whether the server's description says something matching `pattern`."""
        return bool(self.description and pattern.search(self.description))

    def note(self, limit: int = EVENT_NOTE_LIMIT) -> str:
        """The message in at most `limit` bytes: the server's description gives way, the hints
        that say what to fix stay whole."""
        if len(self.message.encode()) <= limit or not self.description:
            return super().note(limit)
        room = limit - len(self._compose("").encode()) - len(b": ")
        return cut_bytes(self._compose(cut_bytes(self.description, max(room, 0))), limit)

    def _compose(self, description: str | None) -> str:
        summary = f"{self.summary} with {self.error} (HTTP {self.status_code})"
        return sentences(f"{summary}: {description}" if description else summary, *self.hints)


class TransientError(RaidiamOperatorError):
    """A failure that may go away by itself; retry with backoff, honouring `retry_after`."""

    reason = Reason.TRANSIENT_FAILURE
    #: a short class name for metrics and logs, e.g. "timeout", "http_503"
    kind = "transient"

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ServerUnavailable(TransientError):
    reason = Reason.AUTHORIZATION_SERVER_UNAVAILABLE

    def __init__(self, message: str, *, status_code: int, retry_after: float | None = None) -> None:
        super().__init__(message, retry_after=retry_after)
        self.status_code = status_code
        self.kind = "rate_limited" if status_code == 429 else f"http_{status_code}"


class ConnectionFailure(TransientError):
    reason = Reason.AUTHORIZATION_SERVER_UNREACHABLE

    def __init__(self, message: str, *, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


class RequestNotSent(ConnectionFailure):
    """A failure before the request was written: resolving the host, connecting, the TLS
    handshake, or waiting for a free connection. The server cannot have acted on it."""


class InvalidTokenResponse(TransientError):
    reason = Reason.INVALID_TOKEN_RESPONSE
    kind = "invalid_response"


class KubernetesError(RaidiamOperatorError):
    """The API server answered a call with a refusal that retrying at once will not change."""

    reason = Reason.KUBERNETES_ERROR

    def __init__(self, message: str, *, status_code: int) -> None:
        super().__init__(message)
        self.status_code = status_code


class ObjectNotFound(KubernetesError):
    reason = Reason.NOT_FOUND


class Conflict(KubernetesError):
    """The object changed (or went away) since we read it: read it again and retry."""

    reason = Reason.CONFLICT


class Forbidden(KubernetesError):
    reason = Reason.FORBIDDEN


class KubernetesUnavailable(TransientError):
    """The API server is down, overloaded (5xx, 429) or unreachable."""

    reason = Reason.KUBERNETES_UNAVAILABLE
    kind = "kubernetes_unavailable"


_HINTS = {
    "invalid_client": (
        "Check that the client id is registered with this authorization server, that its "
        "registered auth method matches, and that the transport certificate or signing key is "
        "the one registered for it in the directory."
    ),
    "invalid_scope": "Request only scopes that the client is registered for.",
    "unauthorized_client": (
        "The client is not allowed to use the client_credentials grant; enable it in the directory."
    ),
    "invalid_grant": "The server refused the grant; check the client's registration.",
    "invalid_request": "The server found the request malformed; check the extra parameters.",
    "invalid_target": "The requested resource indicator is not known to the server.",
}


def _hint_for(error: str) -> str:
    return _HINTS.get(error, "See the authorization server's documentation for this error code.")


# -- client registration (RFC 7591 / 7592) and the software statement ----------------------


class RegistrationEndpointMissing(ServerMetadataError):
    reason = Reason.REGISTRATION_ENDPOINT_MISSING


class InvalidSoftwareStatement(ConfigurationError):
    """A software statement that cannot be what the directory issues: never sent anywhere."""

    reason = Reason.INVALID_SOFTWARE_STATEMENT


class DirectoryTokenMissing(ConfigurationError):
    reason = Reason.DIRECTORY_TOKEN_MISSING


class RegistrationInDoubt(ConfigurationError):
    """A registration POST went out and no usable answer came back (or the operator stopped
    before recording one): the server may hold a client we have no credentials for, so no
    other POST is sent until a person has looked."""

    reason = Reason.REGISTRATION_IN_DOUBT


class RegistrationNotReady(ConfigurationError):
    """A RaidiamClient waits for the RaidiamRegistration its client id comes from: nothing is
    sent, a token still valid stays, and the registration's next change wakes the client."""

    reason = Reason.REGISTRATION_NOT_READY


class RegistrationRejected(AuthorizationServerRejection):
    """The registration endpoint (or registration_client_uri) refused what we sent."""

    reason = Reason.REGISTRATION_REJECTED
    summary = "the authorization server rejected the registration request"

    def _hint(self, error: str) -> str:
        return _REGISTRATION_HINTS.get(error, _hint_for(error))


class SoftwareStatementRefused(AuthorizationServerRejection):
    """The directory refused to issue a software statement for this token and certificate."""

    reason = Reason.SOFTWARE_STATEMENT_REFUSED
    summary = "the directory refused the software statement request"

    def _hint(self, error: str) -> str:
        return _REGISTRATION_HINTS.get(error, _hint_for(error))


class RegistrationGone(RaidiamOperatorError):
    """The registration no longer exists at the server (RFC 7592 §2: 401 or 404): deleted there,
    or its registration access token revoked. Register again."""

    reason = Reason.REGISTRATION_GONE

    def __init__(self, message: str, *, status_code: int) -> None:
        super().__init__(message)
        self.status_code = status_code


class SoftwareStatementUnavailable(TransientError):
    """The directory did not answer the software statement request: an outage, not a refusal."""

    reason = Reason.SOFTWARE_STATEMENT_UNAVAILABLE

    def __init__(self, message: str, *, kind: str, retry_after: float | None = None) -> None:
        super().__init__(message, retry_after=retry_after)
        self.kind = kind


# What to fix, by the server's error: RFC 7591 §3.2.2, RFC 7592, RFC 6750 §3.1 (the directory).
_REGISTRATION_HINTS = {
    "invalid_software_statement": (
        "The server does not accept the software statement: it must be signed by the directory "
        "the server trusts, issued less than 5 minutes before the request (fetch a fresh one), "
        "and be of the organisation the transport certificate names."
    ),
    "unapproved_software_statement": (
        "The server does not approve this software statement; ask the data provider to allow "
        "the software."
    ),
    "invalid_client_metadata": (
        "Change the client metadata the server names: jwks_uri must be the software statement's "
        "software_jwks_uri, the scope within the software's roles, and tls_client_auth_subject_dn "
        "the transport certificate's subject in the profile's format."
    ),
    "invalid_redirect_uri": (
        "Register only redirect URIs listed in the software statement's software_redirect_uris "
        "(change them in the directory, or the --redirect-uri given)."
    ),
    "invalid_client": (
        "The server did not accept the TLS client: register over mutual TLS with a transport "
        "certificate it trusts, at mtls_endpoint_aliases.registration_endpoint."
    ),
    "invalid_token": (
        "The bearer token was refused: for the registration endpoint, the initial access token; "
        "for the directory, a directory:software token bound to this transport certificate and "
        "not expired."
    ),
    "method_not_allowed": (
        "The server does not support this RFC 7592 operation (it may refuse DELETE); remove "
        "the client at the data provider by other means, or keep it."
    ),
    "insufficient_scope": "The directory token lacks the directory:software scope.",
    "access_denied": (
        "The directory token's client belongs to another organisation than the one asked for."
    ),
    "not_found": "Check the organisation id and the software statement id.",
}
