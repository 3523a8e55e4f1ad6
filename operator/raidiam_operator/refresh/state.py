"""What the engine knows about one RaidiamClient between attempts, in parts by who changes them.

- `Observed`: what the watch delivered (the watch cache keeps it, parsing the spec once per
  generation);
- `TokenState`: the token we hold and what we know of its Secret (the reconciler);
- `Backoff`: the last failure and when the next request may go out (the policy; frozen, each
  decision returns a new one);
- `Notices`: certificate warnings and the last Warning Event, so they are not repeated too often.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from raidiam_operator.core.errors import ConfigurationError, RaidiamOperatorError
from raidiam_operator.core.spec import ClientSpec, Owner
from raidiam_operator.refresh.render import Problem, TokenRecord

#: (namespace, name) of a RaidiamClient or a Secret
Key = tuple[str, str]


@dataclass(slots=True)
class Observed:
    owner: Owner
    generation: int
    #: a digest of the spec as last seen: a change is known without keeping the spec's body
    spec_digest: bytes
    #: the spec's issuer URL, as written, even when the spec does not parse (`issuer_share`)
    issuer: str
    #: the spec parsed, or why it cannot be: parsed when the spec changes, not per attempt
    spec: ClientSpec | ConfigurationError
    refresh_requested_at: str | None
    #: the status as last seen or written; a status that would not change is not patched
    status: Mapping[str, Any] | None
    previous_conditions: list[dict[str, Any]] = field(default_factory=list)
    #: the Secrets the spec reads, and the token Secret it names: the watch cache's index keys
    referenced_secrets: frozenset[str] = frozenset()
    token_secret_name: str | None = None
    #: the CA bundle ConfigMap the spec reads, if any: the watch cache's third index
    ca_config_map_name: str | None = None
    #: the ClusterRaidiamIssuer the spec names: the watch cache's issuer index key
    issuer_ref: str | None = None
    #: the RaidiamRegistration the client id comes from (spec.clientIdFrom), in the client's
    #: namespace: the watch cache's registration index key
    registration_ref: str | None = None

    @property
    def key(self) -> Key:
        return (self.owner.namespace, self.owner.name)

    @property
    def issuer_share(self) -> str:
        """Whose share of the scheduler's slots this client's attempts take: its
        ClusterRaidiamIssuer's, or its inline issuer URL's. Every issuerRef client has an empty
        `issuer`, so that alone would put every ClusterRaidiamIssuer in one share."""
        if self.issuer_ref:
            return f"ClusterRaidiamIssuer/{self.issuer_ref}"
        if not self.issuer and self.registration_ref:
            # the registration's server: not known before the attempt reads it
            return f"RaidiamRegistration/{self.owner.namespace}/{self.registration_ref}"
        return self.issuer


@dataclass(slots=True)
class TokenState:
    record: TokenRecord | None = None
    next_refresh: datetime | None = None
    #: the token Secret must be read again: first sight, or someone touched it
    secret_unverified: bool = True
    written_secret_version: str | None = None
    #: the token Secret this client owns and last wrote or found in order, for the status
    secret_in_use: str | None = None
    #: resourceVersions of token Secret events that arrived while an attempt ran
    secret_events_while_running: list[str] = field(default_factory=list)
    #: when the last token request went out; the next waits renewal.MINIMUM_REQUEST_INTERVAL
    last_request_at: datetime | None = None
    #: the token is used, but lives shorter than renewal.MINIMUM_TOKEN_LIFETIME
    lifetime_warning: Problem | None = None
    #: a discovery that failed just before this attempt (outside the shared slots)
    discovery_failure: RaidiamOperatorError | None = None
    #: why the token Secret read back is not as the operator wrote it; a new token replaces it
    secret_doubt: str | None = None


@dataclass(frozen=True, slots=True)
class Backoff:
    #: the last failed token request, while it is the latest outcome
    failure: Problem | None = None
    failed_attempts: int = 0
    last_failure_time: datetime | None = None
    #: when our own backoff (or the 5-minute wait after a rejection) allows the next attempt
    retry_at: datetime | None = None
    #: the server's Retry-After, as a moment; no request goes out before it
    not_before: datetime | None = None
    #: the inputs and refresh request that failed; a change lifts our own backoff
    failed_inputs: tuple[str, str | None] | None = None
    #: after a transient failure while the token was valid: when to try again once it expired
    expired_retry_at: datetime | None = None


#: Event keys remembered per client: the operator's own reasons, a few dozen, fit with room
MAX_EVENT_KEYS = 64


@dataclass(slots=True)
class Notices:
    last_warning: tuple[str, datetime] | None = None
    #: when an Event of each key (`Problem.event_key`) was last posted for this client, oldest
    #: first
    last_events: dict[str, datetime] = field(default_factory=dict)
    certificate_warning: Problem | None = None
    certificate_not_after: datetime | None = None
    last_certificate_warning: datetime | None = None

    def event_due(self, key: str, *, now: datetime, every: timedelta) -> bool:
        """Whether an Event of `key` may be posted now (none went out within `every`), recording
        it if so. Past MAX_EVENT_KEYS keys the one posted longest ago is forgotten."""
        last = self.last_events.pop(key, None)
        if last is not None and now - last < every:
            self.last_events[key] = last
            return False
        self.last_events[key] = now
        if len(self.last_events) > MAX_EVENT_KEYS:
            del self.last_events[next(iter(self.last_events))]
        return True


@dataclass(slots=True)
class ClientState:
    observed: Observed
    token: TokenState = field(default_factory=TokenState)
    backoff: Backoff = field(default_factory=Backoff)
    notices: Notices = field(default_factory=Notices)
    #: a write the budget deferred: the client's next attempt comes no later, and makes it
    deferred_write: datetime | None = None
