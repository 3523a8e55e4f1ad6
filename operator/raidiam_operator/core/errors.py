"""Every failure the operator can report, from either outside system, as one small tree.

    RaidiamOperatorError
     ├── ConfigurationError ............ the user must change the spec, a Secret or the directory
     │    ├── CredentialError .......... bad PEM, key/certificate mismatch, expired certificate
     │    │    │                         (with its `not_after`), weak or oversized key
     │    │    └── KeyCheckDeferred .... the namespace spent its budget for key checks: try again
     │    │                              after `retry_after` seconds
     │    └── ServerMetadataError ...... issuer mismatch, auth method or alg not supported
     ├── AuthorizationServerRejection .. 400/401 with an OAuth `error` code (invalid_client, ...)
     ├── KubernetesError ............... the API server refused a call, and says why
     │    ├── ObjectNotFound ........... 404: the object is not there
     │    ├── Conflict ................. 409 (or 404 on a replace): it changed since it was read
     │    └── Forbidden ................ 403: the operator's RBAC does not allow the call
     └── TransientError ................ worth retrying with backoff; may carry `retry_after`
          ├── ServerUnavailable ........ the authorization server: 5xx, 429
          ├── ConnectionFailure ........ the authorization server: timeouts, refused connections,
          │                              TLS handshake failures
          ├── InvalidTokenResponse ..... a response we cannot use: not JSON, no token, too large
          └── KubernetesUnavailable .... the API server: 5xx, 429, timeouts, refused connections

`protocol.client` raises the OAuth side, `kube.gateway` the Kubernetes side: each translates its
library's exceptions once, so nothing above them catches httpx or kubernetes exceptions.

Each error has a `reason`, a CamelCase word used as the status condition reason, and a message
that says what to fix. Messages never include token, assertion or key material: they are built
only from metadata (URLs, client ids, codes, key sizes, object names, HTTP statuses), never from
request or response bodies beyond the OAuth `error` and `error_description` fields.
"""

from __future__ import annotations

import re
from datetime import datetime

from raidiam_operator.core.texts import EVENT_NOTE_LIMIT, cut_bytes, sentences


class RaidiamOperatorError(Exception):
    """Base of all errors raised by this package."""

    reason = "Error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def note(self, limit: int = EVENT_NOTE_LIMIT) -> str:
        """The message in at most `limit` bytes, for an Event."""
        return cut_bytes(self.message, limit)


class ConfigurationError(RaidiamOperatorError):
    """Input that cannot work until someone changes it. Retrying alone will not help."""

    reason = "InvalidConfiguration"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class CredentialError(ConfigurationError):
    """The transport certificate or the signing key cannot be used."""

    reason = "InvalidCredentials"

    def __init__(
        self, message: str, *, reason: str | None = None, not_after: datetime | None = None
    ) -> None:
        super().__init__(message, reason=reason)
        #: for an expired certificate, when it expired: still worth a metric and the status
        self.not_after = not_after


class KeyCheckDeferred(CredentialError):
    """A key is not checked now: its namespace has spent its budget of checking time."""

    reason = "KeyCheckDeferred"

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ServerMetadataError(ConfigurationError):
    """The authorization server's discovery document does not fit this client."""

    reason = "DiscoveryMismatch"


class AuthorizationServerRejection(RaidiamOperatorError):
    """The authorization server answered the token request with an OAuth error."""

    reason = "TokenRequestRejected"

    def __init__(self, error: str, description: str | None, *, status_code: int) -> None:
        self.error = error
        #: the server's error_description, already cleaned (see texts.server_text)
        self.description = description
        self.status_code = status_code
        self.hints = [_hint_for(error)]
        super().__init__(self._compose(description))

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
        summary = f"the authorization server rejected the token request with {self.error} (HTTP {self.status_code})"
        return sentences(f"{summary}: {description}" if description else summary, *self.hints)


class TransientError(RaidiamOperatorError):
    """A failure that may go away by itself; retry with backoff, honouring `retry_after`."""

    reason = "TransientFailure"
    #: a short class name for metrics and logs, e.g. "timeout", "http_503"
    kind = "transient"

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ServerUnavailable(TransientError):
    reason = "AuthorizationServerUnavailable"

    def __init__(self, message: str, *, status_code: int, retry_after: float | None = None) -> None:
        super().__init__(message, retry_after=retry_after)
        self.status_code = status_code
        self.kind = "rate_limited" if status_code == 429 else f"http_{status_code}"


class ConnectionFailure(TransientError):
    reason = "AuthorizationServerUnreachable"

    def __init__(self, message: str, *, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


class InvalidTokenResponse(TransientError):
    reason = "InvalidTokenResponse"
    kind = "invalid_response"


class KubernetesError(RaidiamOperatorError):
    """The API server answered a call with a refusal that retrying at once will not change."""

    reason = "KubernetesError"

    def __init__(self, message: str, *, status_code: int) -> None:
        super().__init__(message)
        self.status_code = status_code


class ObjectNotFound(KubernetesError):
    reason = "NotFound"


class Conflict(KubernetesError):
    """The object changed (or went away) since we read it: read it again and retry."""

    reason = "Conflict"


class Forbidden(KubernetesError):
    reason = "Forbidden"


class KubernetesUnavailable(TransientError):
    """The API server is down, overloaded (5xx, 429) or unreachable."""

    reason = "KubernetesUnavailable"
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
