"""Every reason the operator writes: condition reasons, Event reasons, the refresh and
registration steps its messages name, and the `error` metric label of a failure it owns.

A `Reason` is a `str`, so it reaches the API server, an Event and a Prometheus label as its plain
CamelCase word (`Reason.TOKEN_VALID == "TokenValid"`). Each member says what it means, what kind
of outcome it is (`Outcome`: a normal state, a failure that may pass, or one that needs a fix),
and on which objects it is written (`Carrier`).

OAuth error codes (`invalid_client`, `invalid_software_statement`, ...) are not here: they are
the server's words, not ours. A rejected token request's condition carries the server's code;
anything written that is not a `Reason` is such a code.
"""

from __future__ import annotations

from enum import Enum, Flag, StrEnum, auto


class Outcome(Enum):
    #: a normal state or step: nothing to do
    FINE = "fine"
    #: a failure that may go away by itself: retried with backoff
    TRANSIENT = "transient"
    #: a failure that stays until someone changes the spec, a Secret, the directory or the server
    FAILED = "failed"


class Carrier(Flag):
    """The objects whose conditions or Events carry a reason."""

    CLIENT = auto()
    ISSUER = auto()
    REGISTRATION = auto()
    #: not written on an object: a step or cause a message names, or a command-line error
    NONE = 0


FINE, TRANSIENT, FAILED = Outcome.FINE, Outcome.TRANSIENT, Outcome.FAILED
CLIENT, ISSUER, REGISTRATION = Carrier.CLIENT, Carrier.ISSUER, Carrier.REGISTRATION
ANY = CLIENT | ISSUER | REGISTRATION
NONE = Carrier.NONE


class Reason(StrEnum):
    outcome: Outcome
    carriers: Carrier
    meaning: str

    def __new__(cls, word: str, outcome: Outcome, carriers: Carrier, meaning: str) -> Reason:
        member = str.__new__(cls, word)
        member._value_ = word
        member.outcome = outcome
        member.carriers = carriers
        member.meaning = meaning
        return member

    # -- normal states ---------------------------------------------------------------------
    TOKEN_VALID = "TokenValid", FINE, CLIENT, "the Secret holds a token valid for the current spec"
    ISSUING = "Issuing", FINE, CLIENT, "no token yet and no failure: the first request is sent"
    SUSPENDED = "Suspended", FINE, CLIENT, "spec.suspend is true: nothing is requested"
    AS_EXPECTED = "AsExpected", FINE, CLIENT | REGISTRATION, "the last attempt succeeded"
    CERTIFICATES_VALID = "CertificatesValid", FINE, CLIENT, "no certificate expires soon"
    TOKEN_ISSUED = "TokenIssued", FINE, CLIENT, "a new token was written (an Event)"
    DISCOVERED = "Discovered", FINE, ISSUER, "the discovery document names this issuer"
    TOKEN_ENDPOINT_REACHABLE = (
        "TokenEndpointReachable",
        FINE,
        ISSUER,
        "the fixed token endpoint answered over verified TLS",
    )
    PENDING = "Pending", FINE, REGISTRATION, "the registration has not been attempted yet"
    REGISTERED = "Registered", FINE, REGISTRATION, "the server registered the client"
    UPDATED = "Updated", FINE, REGISTRATION, "the server took the changed metadata (RFC 7592 PUT)"
    CHECKED = "Checked", FINE, REGISTRATION, "the registration read back as recorded (RFC 7592)"
    REGISTRATION_UPDATED = (
        "RegistrationUpdated",
        FINE,
        REGISTRATION,
        "the server took the changed metadata (an Event)",
    )
    UP_TO_DATE = "UpToDate", FINE, REGISTRATION, "nothing to send: the registration is current"
    REGISTRATION_DELETED = (
        "RegistrationDeleted",
        FINE,
        REGISTRATION,
        "the client was deleted at the server (deletionPolicy Delete)",
    )
    REGISTRATION_RETAINED = (
        "RegistrationRetained",
        FINE,
        REGISTRATION,
        "the client stays at the server (deletionPolicy Retain)",
    )

    # -- why a token is requested, or a registration sent (named in messages and Events) -----
    SECRET_EDITED = "SecretEdited", FINE, NONE, "the token Secret was not as the operator wrote it"
    SPEC_CHANGED = "SpecChanged", FINE, NONE, "the spec or signing key changed"
    CERTIFICATE_CHANGED = "CertificateChanged", FINE, NONE, "the transport certificate changed"
    REFRESH_REQUESTED = "RefreshRequested", FINE, NONE, "refresh requested through the annotation"
    RENEWAL_DUE = "RenewalDue", FINE, NONE, "the scheduled renewal, or a retry after a failure"
    NOT_REGISTERED = "NotRegistered", FINE, NONE, "no client registered yet"
    METADATA_CHANGED = "MetadataChanged", FINE, NONE, "the client metadata changed"
    SUBJECT_DN_CHANGED = (
        "SubjectDNChanged",
        FINE,
        NONE,
        "the transport certificate's subject changed",
    )
    SOFTWARE_STATEMENT_CHANGED = (
        "SoftwareStatementChanged",
        FINE,
        NONE,
        "the software statement changed",
    )
    CHECK_DUE = "CheckDue", FINE, NONE, "the scheduled read-back (RFC 7592 GET)"

    # -- warnings: still working, but not for long ------------------------------------------
    TOKEN_EXPIRED = (
        "TokenExpired",
        FAILED,
        CLIENT,
        "the token in the Secret has expired: refreshing fails, or the client is suspended",
    )
    CERTIFICATE_EXPIRING_SOON = (
        "CertificateExpiringSoon",
        FAILED,
        CLIENT,
        "a certificate the client uses expires within the warning period: renew it",
    )
    SHORT_TOKEN_LIFETIME = (
        "ShortTokenLifetime",
        FAILED,
        CLIENT,
        "the server issues tokens too short-lived to renew in time",
    )
    TOKEN_SECRET_EDITED = (
        "TokenSecretEdited",
        FAILED,
        CLIENT,
        "someone edited the operator's token Secret: it is replaced (an Event)",
    )

    # -- issuers ---------------------------------------------------------------------------
    ISSUER_NOT_ALLOWED = (
        "IssuerNotAllowed",
        FAILED,
        CLIENT | REGISTRATION,
        "the issuer policy or the ClusterRaidiamIssuer refuses this issuer for this object",
    )
    ISSUER_NOT_FOUND = (
        "IssuerNotFound",
        FAILED,
        CLIENT | REGISTRATION,
        "spec.issuerRef names no ClusterRaidiamIssuer",
    )
    INVALID_ISSUER = "InvalidIssuer", FAILED, ANY, "a ClusterRaidiamIssuer the operator cannot use"
    DISCOVERED_ENDPOINT_NOT_ALLOWED = (
        "DiscoveredEndpointNotAllowed",
        FAILED,
        CLIENT | REGISTRATION,
        "the discovery document sends the request outside the allowlist",
    )

    # -- inputs ----------------------------------------------------------------------------
    SECRET_NOT_FOUND = (
        "SecretNotFound",
        FAILED,
        CLIENT | REGISTRATION,
        "a referenced Secret or key is missing",
    )
    CONFIG_MAP_NOT_FOUND = (
        "ConfigMapNotFound",
        FAILED,
        CLIENT | REGISTRATION,
        "the CA bundle's ConfigMap or key is missing",
    )
    INPUT_TOO_LARGE = (
        "InputTooLarge",
        FAILED,
        CLIENT | REGISTRATION,
        "a referenced Secret or ConfigMap value is larger than the operator reads",
    )
    SECRET_CONFLICT = (
        "SecretConflict",
        FAILED,
        CLIENT | REGISTRATION,
        "the Secret to write exists and belongs to someone else",
    )
    INVALID_TOKEN_SECRET = (
        "InvalidTokenSecret",
        FAILED,
        CLIENT,
        "spec.tokenSecret cannot be written",
    )
    TEMPLATE_RENDER_FAILED = (
        "TemplateRenderFailed",
        FAILED,
        CLIENT,
        "spec.tokenSecret.template does not render",
    )
    INVALID_CONFIGURATION = (
        "InvalidConfiguration",
        FAILED,
        CLIENT | REGISTRATION,
        "the spec cannot work as written",
    )
    REGISTRATION_NOT_READY = (
        "RegistrationNotReady",
        FAILED,
        CLIENT,
        "spec.clientIdFrom's RaidiamRegistration has no client id for its current spec yet",
    )
    REGISTRATION_ISSUER_MISMATCH = (
        "RegistrationIssuerMismatch",
        FAILED,
        CLIENT,
        "spec.clientIdFrom's RaidiamRegistration registered at another issuer",
    )

    # -- certificates and keys -------------------------------------------------------------
    INVALID_CREDENTIALS = (
        "InvalidCredentials",
        FAILED,
        CLIENT | REGISTRATION,
        "the transport certificate or signing key cannot be used",
    )
    ENCRYPTED_PRIVATE_KEY = (
        "EncryptedPrivateKey",
        FAILED,
        CLIENT | REGISTRATION,
        "a private key is encrypted",
    )
    WEAK_KEY = "WeakKey", FAILED, CLIENT | REGISTRATION, "a key is too small"
    KEY_TOO_LARGE = "KeyTooLarge", FAILED, CLIENT | REGISTRATION, "a key is larger than accepted"
    KEY_CHECK_TOO_SLOW = (
        "KeyCheckTooSlow",
        FAILED,
        CLIENT | REGISTRATION,
        "checking a key took longer than allowed",
    )
    KEY_CHECK_DEFERRED = (
        "KeyCheckDeferred",
        FAILED,
        CLIENT | REGISTRATION,
        "the namespace spent its budget of key checking time: checked again later",
    )
    KEY_CERTIFICATE_MISMATCH = (
        "KeyCertificateMismatch",
        FAILED,
        CLIENT | REGISTRATION,
        "the private key is not the certificate's",
    )
    CERTIFICATE_EXPIRED = (
        "CertificateExpired",
        FAILED,
        CLIENT | REGISTRATION,
        "a certificate has expired",
    )
    CERTIFICATE_NOT_YET_VALID = (
        "CertificateNotYetValid",
        FAILED,
        CLIENT | REGISTRATION,
        "a certificate is not valid yet",
    )
    UNSUPPORTED_ALGORITHM = (
        "UnsupportedAlgorithm",
        FAILED,
        CLIENT | REGISTRATION,
        "a key or signing algorithm the operator does not support",
    )
    ALGORITHM_KEY_MISMATCH = (
        "AlgorithmKeyMismatch",
        FAILED,
        CLIENT | REGISTRATION,
        "the signing algorithm does not fit the key",
    )

    # -- the server ------------------------------------------------------------------------
    UNTRUSTED_SERVER = (
        "UntrustedServer",
        FAILED,
        ANY,
        "the server's TLS certificate is not trusted",
    )
    INVALID_CA_BUNDLE = "InvalidCABundle", FAILED, ANY, "the CA bundle is not PEM certificates"
    INVALID_URL = "InvalidURL", FAILED, ANY, "a URL the operator cannot use"
    DISCOVERY_NOT_FOUND = (
        "DiscoveryNotFound",
        FAILED,
        ANY,
        "the issuer serves no discovery document",
    )
    DISCOVERY_MISMATCH = (
        "DiscoveryMismatch",
        FAILED,
        ANY,
        "the discovery document does not fit this client",
    )
    ISSUER_MISMATCH = "IssuerMismatch", FAILED, ANY, "the discovery document names another issuer"
    AUTH_METHOD_NOT_SUPPORTED = (
        "AuthMethodNotSupported",
        FAILED,
        ANY,
        "the server does not support the client's auth method",
    )
    ALGORITHM_NOT_SUPPORTED = (
        "AlgorithmNotSupported",
        FAILED,
        ANY,
        "the server does not support the signing algorithm",
    )
    TOKEN_REQUEST_REJECTED = (
        "TokenRequestRejected",
        FAILED,
        NONE,
        "the server rejected the token request: the condition carries its OAuth code",
    )

    # -- transient -------------------------------------------------------------------------
    AUTHORIZATION_SERVER_UNAVAILABLE = (
        "AuthorizationServerUnavailable",
        TRANSIENT,
        ANY,
        "the authorization server answered 5xx or 429",
    )
    AUTHORIZATION_SERVER_UNREACHABLE = (
        "AuthorizationServerUnreachable",
        TRANSIENT,
        ANY,
        "the authorization server could not be reached: timeouts, refused connections, TLS",
    )
    INVALID_TOKEN_RESPONSE = (
        "InvalidTokenResponse",
        TRANSIENT,
        ANY,
        "an answer the operator cannot use: not JSON, no token, too large",
    )
    TRANSIENT_FAILURE = "TransientFailure", TRANSIENT, CLIENT, "a failure worth retrying"

    # -- registration ----------------------------------------------------------------------
    REGISTRATION_ENDPOINT_MISSING = (
        "RegistrationEndpointMissing",
        FAILED,
        REGISTRATION,
        "the discovery document names no registration_endpoint",
    )
    INVALID_SOFTWARE_STATEMENT = (
        "InvalidSoftwareStatement",
        FAILED,
        REGISTRATION,
        "the software statement is not one the directory issues",
    )
    DIRECTORY_TOKEN_MISSING = (
        "DirectoryTokenMissing",
        FAILED,
        REGISTRATION,
        "no directory:software token to fetch a software statement with",
    )
    REGISTRATION_IN_DOUBT = (
        "RegistrationInDoubt",
        FAILED,
        REGISTRATION,
        "a registration POST may have made a client: a person decides before another is sent",
    )
    REGISTRATION_NOT_MANAGEABLE = (
        "RegistrationNotManageable",
        FAILED,
        REGISTRATION,
        "the server's answer lacks what RFC 7592 needs to manage the client",
    )
    REGISTRATION_CREDENTIALS_LOST = (
        "RegistrationCredentialsLost",
        FAILED,
        REGISTRATION,
        "the registration's credentials Secret is gone or changed",
    )
    REGISTRATION_REJECTED = (
        "RegistrationRejected",
        FAILED,
        REGISTRATION,
        "the server refused the registration request",
    )
    SOFTWARE_STATEMENT_REFUSED = (
        "SoftwareStatementRefused",
        FAILED,
        REGISTRATION,
        "the directory refused the software statement request",
    )
    REGISTRATION_GONE = (
        "RegistrationGone",
        FAILED,
        REGISTRATION,
        "the registration no longer exists at the server",
    )
    REGISTRATION_NOT_DELETED = (
        "RegistrationNotDeleted",
        FAILED,
        REGISTRATION,
        "the client could not be deleted at the server: the object goes anyway (an Event)",
    )
    SOFTWARE_STATEMENT_UNAVAILABLE = (
        "SoftwareStatementUnavailable",
        TRANSIENT,
        REGISTRATION,
        "the directory did not answer the software statement request",
    )

    # -- the Kubernetes API server ---------------------------------------------------------
    KUBERNETES_ERROR = (
        "KubernetesError",
        FAILED,
        REGISTRATION,
        "the API server refused a call",
    )
    NOT_FOUND = "NotFound", FAILED, REGISTRATION, "the API server has no such object"
    CONFLICT = "Conflict", FAILED, REGISTRATION, "the object changed since it was read"
    FORBIDDEN = "Forbidden", FAILED, REGISTRATION, "the operator's RBAC does not allow the call"
    KUBERNETES_UNAVAILABLE = (
        "KubernetesUnavailable",
        TRANSIENT,
        REGISTRATION,
        "the API server is down, overloaded or unreachable",
    )
    NO_KUBECONFIG = "NoKubeconfig", FAILED, NONE, "the command line finds no kubeconfig"

    #: the base of all errors: every error class names its own
    ERROR = "Error", FAILED, NONE, "a failure without a reason of its own"


def reason_named(word: str) -> Reason | None:
    """The operator's reason spelled `word`, or None for a word that is not ours (an OAuth
    error code the server sent)."""
    return _BY_WORD.get(word)


_BY_WORD = {reason.value: reason for reason in Reason}


#: the failures retrying may cure
TRANSIENT_REASONS = frozenset(r for r in Reason if r.outcome is Outcome.TRANSIENT)
