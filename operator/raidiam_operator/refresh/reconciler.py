"""One attempt for one client: read what it needs, ask the policy, act, and say what happened.

Every attempt ends in exactly one of these outcomes, each a method below:

- `_blocked`: input only the user can fix (a bad spec, a missing Secret, a foreign token
  Secret, a token Secret template that cannot carry the token): Ready False, a Warning Event,
  no further request, the token Secret left as it is;
- `_suspended`: `spec.suspend`: the status says so, nothing is requested;
- `_kept`: the token we hold is current: its Secret is restored if someone touched it;
- `_held_back`: a new token is needed, but a backoff, the server's Retry-After or the
  write budget for its Secret and status holds;
- `_succeeded`: a new token: the Secret, the status, an Event unless it was a routine renewal;
- `_failed`: the token request failed: the status, a Warning Event, the next attempt per the
  policy. A failed refresh never touches a token Secret that still holds a valid token.

Each also plans the client's next attempt with the scheduler.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from raidiam_operator.core.errors import (
    AuthorizationServerRejection,
    ConfigurationError,
    CredentialError,
    RaidiamOperatorError,
    TransientError,
)
from raidiam_operator.core.issuers import IssuerPolicy
from raidiam_operator.core.reasons import Reason
from raidiam_operator.core.spec import ClientSpec
from raidiam_operator.core.times import Clock, rfc3339
from raidiam_operator.kube.gateway import ClientKube
from raidiam_operator.kube.leader import Fence, require_lease
from raidiam_operator.metrics import Metrics
from raidiam_operator.protocol.client import TokenClient
from raidiam_operator.protocol.tokens import IssuedToken
from raidiam_operator.refresh import policy
from raidiam_operator.refresh.budget import WriteBudget
from raidiam_operator.refresh.client_ids import RegistrationReader, resolve_client_id
from raidiam_operator.refresh.inputs import Inputs, PrivateKeys, read_inputs, resolve_issuer
from raidiam_operator.refresh.policy import ClientView, RefreshReason
from raidiam_operator.refresh.readback import record_from_secret
from raidiam_operator.refresh.render import (
    Problem,
    TokenRecord,
    is_owned_by,
    token_secret,
)
from raidiam_operator.refresh.renewal import short_lifetime
from raidiam_operator.refresh.scheduler import Scheduler
from raidiam_operator.refresh.state import ClientState
from raidiam_operator.refresh.watch import WatchCache
from raidiam_operator.refresh.writes import Writes

logger = logging.getLogger(__name__)


class Reconciler:
    def __init__(
        self,
        kube: ClientKube,
        tokens: TokenClient,
        watch: WatchCache,
        scheduler: Scheduler,
        metrics: Metrics,
        *,
        keys: PrivateKeys,
        registrations: RegistrationReader,
        certificate_expiry_warning: timedelta,
        issuer_policy: IssuerPolicy,
        cluster_resource_namespace: str,
        clock: Clock,
        rng: random.Random,
        fence: Fence,
        write_budget: WriteBudget,
    ) -> None:
        self._kube = kube
        self._tokens = tokens
        self._keys = keys
        self._registrations = registrations
        self._watch = watch
        self._scheduler = scheduler
        self._metrics = metrics
        self._writes = Writes(kube, metrics, write_budget)
        self._fence = fence
        self._certificate_expiry_warning = certificate_expiry_warning
        self._issuer_policy = issuer_policy
        self._cluster_resource_namespace = cluster_resource_namespace
        self._clock = clock
        self._rng = rng

    async def reconcile(self, state: ClientState) -> None:
        try:
            await self._reconcile(state)
        finally:
            deferred, state.deferred_write = state.deferred_write, None
            if deferred is not None:
                self._scheduler.schedule(state.observed.key, deferred)

    async def _reconcile(self, state: ClientState) -> None:
        now = self._clock()
        observed, token = state.observed, state.token
        namespace = observed.owner.namespace
        spec = observed.spec
        if isinstance(spec, ConfigurationError):
            await self._blocked(state, spec, now=now)
            return

        existing = None
        if token.secret_unverified and not self._surely_absent(state, spec):
            existing = await self._kube.read_secret(namespace, spec.token_secret.name)
            if existing is not None and not is_owned_by(existing, observed.owner):
                await self._blocked(
                    state, policy.conflict(namespace, spec.token_secret.name), now=now
                )
                return
            if existing is not None:
                token.secret_in_use = spec.token_secret.name
            if token.record is None and existing is not None:
                record = token.record = await self._read_back(state, existing, now=now)
                if record is not None and token.next_refresh is None:
                    token.next_refresh = policy.renewal_in_status(
                        observed.status, record
                    ) or policy.next_renewal(record, spec.refresh, rng=self._rng)

        try:
            # Which client and server, and whether it may use it, before its keys are read.
            spec = await self._resolve_server(spec, namespace)
            inputs = await read_inputs(
                spec, namespace=namespace, reader=self._watch, keys=self._keys, now=now
            )
        except ConfigurationError as error:
            await self._blocked(state, error, now=now)
            return

        await self._check_certificates(state, inputs, now=now)
        if spec.suspend:
            await self._suspended(state, inputs, now=now)
            return
        view = _view(state)
        reason = policy.refresh_reason(view, inputs, now=now)
        if reason is None:
            await self._kept(state, spec, inputs, existing, now=now)
            return
        wait_until = policy.later(
            policy.held_back_until(view, inputs, now=now),
            self._writes.issue_writes_at(state, now=now),
        )
        if wait_until is not None:
            await self._held_back(state, inputs, wait_until, now=now)
            return

        require_lease(self._fence)  # immediately before the request: nothing is sent without it
        started = self._clock()
        token.last_request_at = now
        failure, token.discovery_failure = token.discovery_failure, None
        try:
            if failure is not None:
                raise failure.with_traceback(None)
            issued = await self._tokens.fetch_token(inputs.request)
        except (TransientError, AuthorizationServerRejection, ConfigurationError) as error:
            await self._failed(state, inputs, error, reason=reason, started=started)
            return
        await self._succeeded(state, spec, inputs, issued, existing, reason=reason, started=started)

    async def _read_back(
        self, state: ClientState, secret: Mapping[str, Any], *, now: datetime
    ) -> TokenRecord | None:
        """The token in the client's own Secret as far as it proves itself (after a restart); a
        Secret that is not as the operator wrote it is to be replaced with a new token."""
        owner = state.observed.owner
        read = record_from_secret(secret, now=now)
        state.token.secret_doubt = read.doubt
        if read.doubt is None:
            return read.record
        name = secret["metadata"]["name"]
        problem = Problem(
            Reason.TOKEN_SECRET_EDITED,
            f"the token Secret {owner.namespace}/{name} is not as the operator wrote it: "
            f"{read.doubt}. A new token is requested to replace it; the operator owns this "
            "Secret, so change the RaidiamClient instead",
        )
        logger.warning(
            "%s/%s: %s: %s", owner.namespace, owner.name, problem.reason, problem.message
        )
        await self._writes.event(state, problem, warning=True, now=now)
        return read.record

    async def events_posted(self) -> None:
        await self._writes.events_posted()

    async def discover_first(self, state: ClientState) -> None:
        """Fetch the issuer's discovery document, if a token request is coming and it is not
        known yet, before the attempt takes a shared slot (the scheduler calls this): a slow
        issuer's discovery, or the wait for another client's, then holds only its own tenant's
        share. A failure is kept for the attempt that follows, which reports it without asking
        the server again."""
        spec = state.observed.spec
        if isinstance(spec, ConfigurationError) or spec.suspend:
            return
        now = self._clock()
        namespace = state.observed.owner.namespace
        try:
            spec = await self._resolve_server(spec, namespace)
            if spec.token_endpoint or self._tokens.knows_issuer(spec.issuer):
                return  # nothing to wait for; the inputs are built once, in the attempt
            inputs = await read_inputs(
                spec, namespace=namespace, reader=self._watch, keys=self._keys, now=now
            )
        except ConfigurationError:
            return
        view = _view(state)
        if (
            self._tokens.discovered(inputs.request)
            or policy.refresh_reason(view, inputs, now=now) is None
            or policy.held_back_until(view, inputs, now=now) is not None
            or not self._fence.holds_lease()
        ):
            return
        try:
            await self._tokens.prepare(inputs.request)
        except RaidiamOperatorError as error:
            state.token.discovery_failure = error

    async def _resolve_server(self, spec: ClientSpec, namespace: str) -> ClientSpec:
        spec = await resolve_client_id(
            spec,
            namespace=namespace,
            registrations=self._registrations,
            issuers=self._watch,
            cluster_resource_namespace=self._cluster_resource_namespace,
        )
        return await resolve_issuer(
            spec,
            namespace=namespace,
            reader=self._watch,
            policy=self._issuer_policy,
            cluster_resource_namespace=self._cluster_resource_namespace,
        )

    def _surely_absent(self, state: ClientState, spec: ClientSpec) -> bool:
        """The token Secret does not exist, by the Secret watch's complete list of names: no
        need to read it before creating it. (Should one appear meanwhile, the create answers 409
        and the next attempt reads it.)"""
        names, token = self._watch.secret_names, state.token
        return (
            token.record is None
            and token.written_secret_version is None
            and names is not None
            and names.synced
            and names.resource_version(state.observed.owner.namespace, spec.token_secret.name)
            is None
        )

    async def _check_certificates(
        self, state: ClientState, inputs: Inputs, *, now: datetime
    ) -> None:
        """Warn before a certificate expires: the token flow dies with it."""
        notices, owner = state.notices, state.observed.owner
        notices.certificate_not_after = min(
            (c.not_after for c in inputs.certificates), default=None
        )
        for certificate in inputs.certificates:
            self._metrics.certificate_expiration(
                owner.namespace, owner.name, certificate.secret_name, certificate.not_after
            )
        notices.certificate_warning = policy.certificate_warning(
            inputs, now=now, period=self._certificate_expiry_warning
        )
        if notices.certificate_warning is None:
            return
        if policy.certificate_event_due(notices.last_certificate_warning, now=now):
            notices.last_certificate_warning = now
            await self._kube.post_event(
                owner,
                warning=True,
                reason=Reason.CERTIFICATE_EXPIRING_SOON,
                message=notices.certificate_warning.message,
            )

    # -- the outcomes ----------------------------------------------------------------------

    async def _blocked(
        self, state: ClientState, error: ConfigurationError, *, now: datetime
    ) -> None:
        observed, notices = state.observed, state.notices
        key = observed.key
        problem = Problem(error.reason, error.message, error.note())
        state.backoff = policy.after_blocked(state.backoff)
        not_after = error.not_after if isinstance(error, CredentialError) else None
        if not_after is not None:
            notices.certificate_warning = problem
            notices.certificate_not_after = not_after
            if error.reason == Reason.CERTIFICATE_EXPIRED and isinstance(observed.spec, ClientSpec):
                ref = observed.spec.transport_certificate
                if ref is not None:
                    self._metrics.certificate_expiration(key[0], key[1], ref.secret_name, not_after)
        await self._writes.status(state, None, blocked=problem, now=now)
        retry = policy.blocked_retry(error)
        self._scheduler.replan(
            key, policy.earliest(now + retry, policy.expiry_if_valid(state.token.record, now))
        )
        if notices.last_warning is None or notices.last_warning[0] != problem.reason:
            logger.warning("%s/%s: %s: %s", key[0], key[1], problem.reason, problem.message)
        await self._writes.warn(state, problem, now=now)

    async def _suspended(self, state: ClientState, inputs: Inputs, *, now: datetime) -> None:
        key, record = state.observed.key, state.token.record
        await self._writes.status(state, inputs, blocked=None, suspended=True, now=now)
        self._scheduler.cancel(key)
        if record is not None and record.valid_at(now):
            self._scheduler.replan(key, record.expires_at)  # to report TokenExpired on time

    async def _kept(
        self,
        state: ClientState,
        spec: ClientSpec,
        inputs: Inputs,
        existing: Mapping[str, Any] | None,
        *,
        now: datetime,
    ) -> None:
        token = state.token
        assert token.record is not None
        token.record = policy.with_certificate(token.record, spec.token_secret, inputs)
        try:
            await self._writes.secret(state, spec, existing, renewed=False, now=now)
        except ConfigurationError as error:  # the Secret's template cannot carry this token
            await self._blocked(state, error, now=now)
            return
        await self._writes.status(state, inputs, blocked=None, now=now)
        assert state.token.next_refresh is not None
        self._scheduler.replan(state.observed.key, state.token.next_refresh)

    async def _held_back(
        self, state: ClientState, inputs: Inputs, wait_until: datetime, *, now: datetime
    ) -> None:
        await self._writes.status(state, inputs, blocked=None, now=now)
        self._scheduler.replan(
            state.observed.key,
            policy.earliest(wait_until, policy.expiry_if_valid(state.token.record, now)),
        )

    async def _succeeded(
        self,
        state: ClientState,
        spec: ClientSpec,
        inputs: Inputs,
        issued: IssuedToken,
        existing: Mapping[str, Any] | None,
        *,
        reason: RefreshReason,
        started: datetime,
    ) -> None:
        observed, token = state.observed, state.token
        owner = observed.owner
        duration = (self._clock() - started).total_seconds()
        record = TokenRecord.issued(
            issued,
            inputs_fingerprint=inputs.fingerprint,
            refresh_requested_at=observed.refresh_requested_at,
            certificate=inputs.certificate_files if spec.token_secret.include_certificate else None,
        )
        self._metrics.request_succeeded(
            owner.namespace, owner.name, auth_method=spec.auth_method, duration=duration
        )
        try:
            desired = token_secret(owner, spec.token_secret, record)
        except ConfigurationError as error:
            # A token the Secret's template cannot carry is dropped; the one in the Secret stays.
            await self._blocked(state, error, now=self._clock())
            return
        token.record, token.secret_doubt = record, None
        expires_at = record.expires_at
        recovered = state.backoff.failure is not None
        token.next_refresh = policy.next_renewal(token.record, spec.refresh, rng=self._rng)
        state.backoff = policy.after_success(state.backoff)
        too_short = short_lifetime(issued.lifetime)
        token.lifetime_warning = (
            Problem(Reason.SHORT_TOKEN_LIFETIME, too_short) if too_short else None
        )
        now = self._clock()
        await self._writes.secret(state, spec, existing, renewed=True, now=now, desired=desired)
        await self._writes.status(state, inputs, blocked=None, now=now)
        self._scheduler.replan(observed.key, token.next_refresh)
        logger.info(
            "%s/%s: issued token (%s), expires %s, next refresh %s, took %.0f ms",
            owner.namespace,
            owner.name,
            reason.reason,
            rfc3339(expires_at),
            rfc3339(token.next_refresh),
            duration * 1000,
        )
        # Routine renewals stay quiet: an Event per refresh would double the API writes.
        if reason.reason != Reason.RENEWAL_DUE or recovered:
            await self._writes.event(
                state,
                Problem(
                    Reason.TOKEN_ISSUED,
                    f"Issued a token for client {spec.client_id} ({reason.message}); "
                    f"it expires at {rfc3339(expires_at)}",
                    repeat_key=f"TokenIssued/{reason.reason}",
                ),
                warning=False,
                now=now,
            )
        if token.lifetime_warning is not None:
            await self._writes.event(state, token.lifetime_warning, warning=True, now=now)

    async def _failed(
        self,
        state: ClientState,
        inputs: Inputs,
        error: RaidiamOperatorError,
        *,
        reason: RefreshReason,
        started: datetime,
    ) -> None:
        now = self._clock()
        duration = (now - started).total_seconds()
        key = state.observed.key
        backoff = state.backoff = policy.after_failure(
            state.backoff,
            error,
            inputs=inputs,
            refresh_requested_at=state.observed.refresh_requested_at,
            record=state.token.record,
            now=now,
            rng=self._rng,
        )
        assert backoff.failure is not None
        assert backoff.retry_at is not None
        self._metrics.request_failed(
            key[0], key[1], error, auth_method=inputs.request.auth_method, duration=duration
        )
        await self._writes.status(state, inputs, blocked=None, now=now)
        self._scheduler.replan(
            key, policy.earliest(backoff.retry_at, policy.expiry_if_valid(state.token.record, now))
        )
        logger.warning(
            "%s/%s: token request failed (%s): %s: %s; attempt %d, retrying at %s, took %.0f ms",
            key[0],
            key[1],
            reason.reason,
            backoff.failure.reason,
            backoff.failure.message,
            backoff.failed_attempts,
            rfc3339(backoff.retry_at),
            duration * 1000,
        )
        await self._writes.warn(state, backoff.failure, now=now)


def _view(state: ClientState) -> ClientView:
    token = state.token
    return ClientView(
        record=token.record,
        next_refresh=token.next_refresh,
        refresh_requested_at=state.observed.refresh_requested_at,
        backoff=state.backoff,
        last_request_at=token.last_request_at,
        secret_doubt=token.secret_doubt,
    )
