"""RaidiamRegistrations: one attempt at one registration (`RegistrationReconciler`), and the
worker per registration that decides when the next attempt is (`RegistrationController`).

An attempt reads everything afresh (the spec, the transport certificate, the credentials
Secret), asks `core.registration.next_step` what to do, does it, and writes the credentials
Secret before the status: a restart reads the Secret and never registers twice. The POST
itself is recorded on the object as pending just before it goes out
(`core.registration_pending`): an answer lost on the way, or a restart before the Secret is
written, leaves the registration in doubt for a person to settle, never registered twice. A
check (daily, or asked for) of a registration whose SSA comes from the directory fetches the
SSA too, and sends an RFC 7592 PUT when its lasting claims changed. A worker wakes
on a change that matters (the spec, the refresh annotation, deletion, a Secret the registration
reads), when the scheduled check is due, and after a transient failure's backoff. A rejection
waits for a change: retrying it would only be refused again.

Why a worker per registration and not kopf timers: a registration costs one asyncio task that
sleeps until its next check (daily by default), the leader election already gates the engine
and gates these the same way, and kopf's change handlers and timers would add kopf's own
finalizer and progress annotations to each object. Registrations are few (one per data
provider), so one task each is cheap.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Protocol

from raidiam_operator.core.errors import (
    AuthorizationServerRejection,
    ConfigurationError,
    DirectoryTokenMissing,
    KubernetesError,
    RaidiamOperatorError,
    RegistrationGone,
    TransientError,
)
from raidiam_operator.core.issuers import IssuerPolicy
from raidiam_operator.core.options import OperatorOptions
from raidiam_operator.core.reasons import Reason
from raidiam_operator.core.registration import (
    DEFAULT_CHECK_INTERVAL,
    NextStep,
    Registration,
    SoftwareStatement,
    next_step,
    registered_digest,
)
from raidiam_operator.core.registration_pending import (
    PENDING_ANNOTATION,
    PendingRegistration,
    deleted_in_doubt,
    in_doubt,
    may_have_registered,
    pending_registration,
    recording,
    removal,
)
from raidiam_operator.core.registration_spec import (
    REGISTRATION_FINALIZER,
    REGISTRATION_KIND,
    FromDirectory,
    RegistrationSpec,
    SecretKeyRef,
    check_directory_url,
    parse_registration_spec,
)
from raidiam_operator.core.spec import REFRESH_REQUESTED_AT, Owner, parse_spec
from raidiam_operator.core.times import Clock, utc_now
from raidiam_operator.kube.leader import UNFENCED, Fence, LeaseNotHeld, require_lease
from raidiam_operator.protocol.client import TokenClient
from raidiam_operator.protocol.registrar import (
    Registrar,
    RegistrationServer,
    SoftwareStatementSource,
    Submitted,
)
from raidiam_operator.protocol.registration import read_software_statement, subject_dn_for
from raidiam_operator.refresh.inputs import (
    InputReader,
    IssuerReader,
    PrivateKeys,
    read_inputs,
    resolve_issuer,
    secret_value,
)
from raidiam_operator.refresh.registration_status import (
    Recorded,
    RegistrationView,
    adopted,
    credentials_secret,
    emptied,
    last_check,
    recorded_in,
    registration_status,
    retained,
)
from raidiam_operator.refresh.render import Condition, is_owned_by, status_differs
from raidiam_operator.refresh.renewal import CONFIGURATION_RETRY, retry_delay

logger = logging.getLogger(__name__)

JSON = dict[str, Any]
DIRECTORY_SCOPE = "directory:software"
#: tries at RFC 7592 DELETE before the finalizer lets the object go (with a Warning Event)
DELETE_ATTEMPTS = 5
#: registrations reconciled at once: each holds a connection to a bank or the directory
CONCURRENT_ATTEMPTS = 4
#: a POST may have made a client (its answer was lost, or lacks what RFC 7592 needs to manage
#: it): trying again could make a second one, so a person decides
NEVER_RETRIED = frozenset({Reason.REGISTRATION_IN_DOUBT, Reason.REGISTRATION_NOT_MANAGEABLE})
#: after a finalizer write that met a newer version of the object
FINALIZER_RETRY = timedelta(seconds=1)
Key = tuple[str, str]


class RegistrationKube(InputReader, IssuerReader, Protocol):
    async def read_client(self, namespace: str, name: str) -> JSON | None: ...
    async def create_secret(self, namespace: str, body: JSON) -> JSON: ...
    async def replace_secret(self, namespace: str, name: str, body: JSON) -> JSON: ...
    async def patch_registration(self, namespace: str, name: str, patch: JSON) -> None: ...
    async def patch_registration_status(self, owner: Owner, status: JSON) -> None: ...
    async def post_event(
        self, owner: Owner, *, warning: bool, reason: str, message: str
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class RegistrationSettings:
    issuer_policy: IssuerPolicy = field(default_factory=IssuerPolicy)
    #: where ClusterRaidiamIssuers' CA bundles live
    cluster_resource_namespace: str = "raidiam-system"
    #: how often a registration is read back (RFC 7592 GET)
    check_interval: timedelta = DEFAULT_CHECK_INTERVAL


@dataclass(slots=True)
class _Memory:
    """What the reconciler remembers of one registration between attempts."""

    uid: str
    #: the status last written: the truth while we run, since only we write it
    status: JSON | None = None
    #: a registration the server made whose Secret is not written yet: written before anything
    #: else is tried, so that it is never registered again
    unsaved: tuple[Submitted, str, NextStep] | None = None
    failed_attempts: int = 0
    #: the Secrets the last attempt read, whose changes wake the registration
    secrets: frozenset[str] = frozenset()
    #: the last attempt ended on a reason in NEVER_RETRIED: a person decides
    held_back: bool = False
    #: the pending record of the POST this replica sent last, until it is settled
    marked: PendingRegistration | None = None
    #: a Warning that the object was deleted with its POST in doubt went out
    told_deleted_in_doubt: bool = False
    #: pending records that hold nothing back (their POST never left, or its answer is in the
    #: credentials Secret), should a body that still shows one arrive after they are removed
    settled: tuple[PendingRegistration, ...] = ()

    def remember_settled(self, pending: PendingRegistration) -> None:
        if pending.known and pending not in self.settled:
            self.settled = (*self.settled, pending)[-_SETTLED_KEPT:]

    def forget_settled(self, pending: PendingRegistration) -> None:
        self.settled = tuple(p for p in self.settled if p != pending)


#: settled pending records remembered per registration: a body lags behind by one or two
_SETTLED_KEPT = 8


@dataclass(frozen=True, slots=True)
class _Asked:
    """What the object's annotations ask of an attempt."""

    #: `raidiam.io/refresh-requested-at`: read the registration back now
    refresh: str | None
    #: a POST that may have made a client: register nothing until a person removes it
    pending: PendingRegistration | None


class RegistrationReconciler:
    def __init__(
        self,
        kube: RegistrationKube,
        registrar: Registrar,
        keys: PrivateKeys,
        settings: RegistrationSettings,
        *,
        fence: Fence = UNFENCED,
        rng: random.Random | None = None,
    ) -> None:
        self._kube = kube
        self._fence = fence
        self._registrar = registrar
        self._keys = keys
        self._settings = settings
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not secrecy
        self._memory: dict[Key, _Memory] = {}

    def forget(self, key: Key) -> None:
        self._memory.pop(key, None)

    def held_back(self, key: Key) -> bool:
        """Whether the last attempt ended waiting for a person (RegistrationInDoubt,
        RegistrationNotManageable): removing the pending record then lets it go ahead."""
        memory = self._memory.get(key)
        return memory is not None and memory.held_back

    def reads_secret(self, key: Key, name: str) -> bool:
        memory = self._memory.get(key)
        return memory is not None and name in memory.secrets

    async def reconcile(self, body: Mapping[str, Any], *, now: datetime) -> timedelta | None:
        """One attempt; when to try again (None: on the next change). A replica that does not
        hold the Lease sends and writes nothing: the leader does the work, and this one is
        woken when it leads."""
        try:
            return await self._reconcile(body, now=now)
        except LeaseNotHeld:
            return None

    async def _reconcile(self, body: Mapping[str, Any], *, now: datetime) -> timedelta | None:
        require_lease(self._fence)
        meta = body["metadata"]
        owner = Owner(meta["namespace"], meta["name"], meta["uid"], kind=REGISTRATION_KIND)
        key = (owner.namespace, owner.name)
        memory = self._memory.get(key)
        if memory is None or memory.uid != owner.uid:
            memory = self._memory[key] = _Memory(owner.uid)
        status = memory.status if memory.status is not None else dict(body.get("status") or {})
        finalizers = list(meta.get("finalizers") or [])
        if meta.get("deletionTimestamp"):
            if REGISTRATION_FINALIZER not in finalizers:
                return None
            return await self._finalize(body, owner, memory, status, now=now)
        generation = int(meta.get("generation") or 0)
        annotations = meta.get("annotations") or {}
        refresh = annotations.get(REFRESH_REQUESTED_AT)
        asked = _Asked(refresh, pending_registration(annotations))
        spec_name = (body.get("spec") or {}).get("credentialsSecret", {}).get("name")
        view = RegistrationView(
            ready=_condition("Ready", False, Reason.PENDING, ""),
            degraded=_condition("Degraded", False, Reason.AS_EXPECTED, ""),
            generation=generation,
            previous=status,
            credentials_secret=spec_name or f"{owner.name}-registration",
        )
        try:
            if REGISTRATION_FINALIZER not in finalizers:
                await self._set_finalizers(body, [*finalizers, REGISTRATION_FINALIZER])
            spec = parse_registration_spec(body.get("spec") or {}, name=owner.name)
            done, wait = await self._attempt(owner, spec, memory, status, asked, now=now)
            memory.failed_attempts = 0
            memory.held_back = False
            view = _succeeded(view, done, refresh)
            if done.step.action in _EVENT_REASONS:
                await self._kube.post_event(
                    owner,
                    warning=False,
                    reason=_EVENT_REASONS[done.step.action],
                    message=view.ready.message,
                )
        except (AuthorizationServerRejection, RegistrationGone, ConfigurationError) as error:
            # Reported. A refusal waits for a change (it would only be refused again); input
            # someone may fix without touching the object (a Secret, the directory client's
            # token) is looked at again after a while.
            view = _failed(view, error, ready=False)
            wait = CONFIGURATION_RETRY if _soon_fixed(error) else None
            memory.held_back = error.reason in NEVER_RETRIED
            await self._warn(owner, status, error)
        except (TransientError, KubernetesError) as error:
            memory.failed_attempts += 1
            view = _failed(view, error, ready=_was_ready(status))
            retry_after = error.retry_after if isinstance(error, TransientError) else None
            wait = retry_delay(memory.failed_attempts, retry_after=retry_after, rng=self._rng)
            logger.warning(
                "%s/%s: registration attempt failed (%s), retrying in %.0f s: %s",
                owner.namespace,
                owner.name,
                error.reason,
                wait.total_seconds(),
                error.message,
            )
        await self._write_status(owner, memory, registration_status(view, now=now))
        return wait

    async def _attempt(
        self,
        owner: Owner,
        spec: RegistrationSpec,
        memory: _Memory,
        status: Mapping[str, Any],
        asked: _Asked,
        *,
        now: datetime,
    ) -> tuple[_Done, timedelta | None]:
        namespace = owner.namespace
        if memory.unsaved is not None:
            # The server made or changed the registration; only its record is missing.
            submitted, digest, made = memory.unsaved
            await self._save(owner, spec, submitted.registration, digest, existing=None)
            memory.unsaved = None
            await self._settle(owner, memory, memory.marked or asked.pending)
            done = _Done(made, submitted.registration, digest, checked_at=now)
            return done, self._settings.check_interval
        server_spec = await resolve_issuer(
            spec.server,
            namespace=namespace,
            reader=self._kube,
            policy=self._settings.issuer_policy,
            cluster_resource_namespace=self._settings.cluster_resource_namespace,
        )
        memory.secrets = spec.referenced_secrets()
        inputs = await read_inputs(
            server_spec, namespace=namespace, reader=self._kube, keys=self._keys, now=now
        )
        server = RegistrationServer(
            server_spec.issuer, inputs.request.transport, inputs.request.ca_bundle
        )
        existing, recorded = await self._record(owner, spec, status)
        if asked.pending is not None and asked.pending not in memory.settled:
            if recorded is None:
                raise in_doubt(asked.pending, namespace=namespace, name=owner.name)
            # The Secret was written and the record's removal lost: it holds the registration.
            await self._settle(owner, memory, asked.pending)
        local_statement = await self._statement_from_secret(namespace, spec)
        subject_dn = subject_dn_for(spec.metadata, server.transport)

        def decide(statement: SoftwareStatement | None, *, known: bool) -> NextStep:
            desired = registered_digest(
                spec.metadata,
                subject_dn=subject_dn,
                software_statement=statement,
                software_statement_known=known,
            )
            return next_step(
                recorded.registration if recorded else None,
                desired=desired,
                now=now,
                check_interval=self._settings.check_interval,
                refresh_requested=asked.refresh is not None
                and asked.refresh != status.get("lastRefreshRequest"),
            )

        from_directory = isinstance(spec.software_statement, FromDirectory)
        step = decide(local_statement, known=not from_directory)
        fetched = None
        if step.action == "read" and from_directory:
            # A check looks at the directory's SSA too: a change of its claims (redirect URIs,
            # keys, roles) is sent to the bank with an RFC 7592 PUT.
            fetched = await self._fresh_statement(namespace, spec, memory)
            step = decide(fetched, known=True)
        if step.action == "none":
            assert step.due is not None
            assert recorded is not None
            return _Done(step, recorded=recorded), step.due - now
        if step.action == "read":
            assert recorded is not None
            require_lease(self._fence)
            registration = await self._registrar.read(server, recorded.handle)
            return (
                _Done(step, registration, checked_at=now, recorded=recorded),
                self._settings.check_interval,
            )
        statement = (
            local_statement or fetched or await self._fresh_statement(namespace, spec, memory)
        )
        if recorded is None:
            submitted = await self._register(owner, spec, server, statement, memory, now=now)
        else:
            require_lease(self._fence)
            submitted = await self._registrar.submit(
                server,
                spec.metadata,
                software_statement=statement,
                existing=(recorded.handle, recorded.registration.client_id),
            )
        digest = submitted.digest.render()
        memory.unsaved = (submitted, digest, step)
        await self._save(owner, spec, submitted.registration, digest, existing=existing)
        memory.unsaved = None
        if recorded is None:
            await self._settle(owner, memory, memory.marked)
        return _Done(step, submitted.registration, digest, checked_at=now), (
            self._settings.check_interval
        )

    async def _record(
        self, owner: Owner, spec: RegistrationSpec, status: Mapping[str, Any]
    ) -> tuple[Mapping[str, Any] | None, Recorded | None]:
        """The credentials Secret (taken over when a deleted registration of this name
        retained it), and the registration it records."""
        namespace = owner.namespace
        existing = await self._kube.read_secret(namespace, spec.credentials_secret)
        if existing is not None and not is_owned_by(existing, owner):
            taken = adopted(existing, owner)
            if taken is None:
                raise ConfigurationError(
                    f"Secret {namespace}/{spec.credentials_secret} already exists and is not "
                    "owned by this RaidiamRegistration; it is left untouched. Delete it, or set "
                    "spec.credentialsSecret.name to another name",
                    reason=Reason.SECRET_CONFLICT,
                )
            existing = await self._kube.replace_secret(namespace, spec.credentials_secret, taken)
        recorded = recorded_in(existing, checked_at=last_check(status))
        if recorded is None and status.get("clientId"):
            raise ConfigurationError(
                f"client {status['clientId']} was registered, but its credentials Secret "
                f"{namespace}/{spec.credentials_secret} is gone, and with it the registration "
                "access token: the registration cannot be managed, and registering again would "
                "make a second client. Restore the Secret, or delete and re-create this "
                "RaidiamRegistration to register anew",
                reason=Reason.REGISTRATION_CREDENTIALS_LOST,
            )
        return existing, recorded

    async def _register(
        self,
        owner: Owner,
        spec: RegistrationSpec,
        server: RegistrationServer,
        statement: SoftwareStatement | None,
        memory: _Memory,
        *,
        now: datetime,
    ) -> Submitted:
        """The RFC 7591 POST, recorded on the object as pending just before it is sent: a
        restart, or an answer lost on the way, then never leads to a second POST."""
        initial_access_token = await self._initial_access_token(owner.namespace, spec)
        require_lease(self._fence)
        endpoint = await self._registrar.registration_endpoint(server)
        mark = PendingRegistration.at(now, endpoint)
        # Settled until the POST goes out: a record written (or maybe written) for a request
        # never sent holds nothing back.
        memory.remember_settled(mark)
        await self._kube.patch_registration(owner.namespace, owner.name, recording(mark))
        memory.forget_settled(mark)
        memory.marked = mark
        try:
            submitted = await self._registrar.submit(
                server,
                spec.metadata,
                software_statement=statement,
                initial_access_token=initial_access_token,
                registration_endpoint=endpoint,
            )
        except RaidiamOperatorError as error:
            if may_have_registered(error):
                raise in_doubt(
                    mark, namespace=owner.namespace, name=owner.name, cause=error.message
                ) from None
            await self._settle(owner, memory, mark)
            raise
        if submitted.registration.handle() is None:
            # A client exists that RFC 7592 cannot reach: the record stays, so that it is
            # never registered again by itself.
            raise ConfigurationError(
                f"the server at {server.issuer} registered client "
                f"{submitted.registration.client_id} without a registration_client_uri or "
                "registration_access_token (RFC 7592), so the operator cannot manage it; delete "
                "it at the server, or manage it by hand. To register anew, then: kubectl "
                f"annotate raidiamregistration {owner.name} -n {owner.namespace} "
                f"{PENDING_ANNOTATION}-",
                reason=Reason.REGISTRATION_NOT_MANAGEABLE,
            )
        return submitted

    async def _settle(
        self, owner: Owner, memory: _Memory, pending: PendingRegistration | None
    ) -> None:
        """Remove the pending record once the POST is known to have made nothing, or what it
        made is in the credentials Secret. Best effort: the record is remembered as settled,
        and the next attempt removes it when it is still there."""
        memory.marked = None
        if pending is None:
            return
        memory.remember_settled(pending)
        try:
            await self._kube.patch_registration(owner.namespace, owner.name, removal())
        except (KubernetesError, TransientError) as error:
            logger.warning(
                "%s/%s: removing the annotation %s failed (%s); the next attempt removes it",
                owner.namespace,
                owner.name,
                PENDING_ANNOTATION,
                error.reason,
            )

    async def _save(
        self,
        owner: Owner,
        spec: RegistrationSpec,
        registration: Registration,
        digest: str,
        *,
        existing: Mapping[str, Any] | None,
    ) -> None:
        desired = credentials_secret(owner, spec.credentials_secret, registration, digest=digest)
        if existing is None:
            existing = await self._kube.read_secret(owner.namespace, spec.credentials_secret)
        if existing is None:
            await self._kube.create_secret(owner.namespace, desired)
        else:
            desired["metadata"]["resourceVersion"] = existing["metadata"]["resourceVersion"]
            await self._kube.replace_secret(owner.namespace, spec.credentials_secret, desired)

    async def _statement_from_secret(
        self, namespace: str, spec: RegistrationSpec
    ) -> SoftwareStatement | None:
        ref = spec.software_statement
        if not isinstance(ref, SecretKeyRef):
            return None
        value = await self._secret_key(namespace, ref, "spec.softwareStatement.secretRef")
        return read_software_statement(value, source=f"Secret {namespace}/{ref.name}")

    async def _initial_access_token(self, namespace: str, spec: RegistrationSpec) -> str | None:
        ref = spec.initial_access_token
        if ref is None:
            return None
        value = await self._secret_key(namespace, ref, "spec.initialAccessToken")
        return value.decode(errors="replace").strip()

    async def _secret_key(self, namespace: str, ref: SecretKeyRef, field_path: str) -> bytes:
        return secret_value(
            await self._kube.read_secret(namespace, ref.name),
            namespace=namespace,
            secret_name=ref.name,
            key=ref.key,
            field_path=field_path,
        )

    async def _fresh_statement(
        self, namespace: str, spec: RegistrationSpec, memory: _Memory
    ) -> SoftwareStatement | None:
        """A fresh SSA from the directory, with the referenced RaidiamClient's token and its
        transport certificate (the token is bound to it)."""
        directory = spec.software_statement
        if not isinstance(directory, FromDirectory):
            return None
        check_directory_url(self._settings.issuer_policy, directory)
        field_path = "spec.softwareStatement.fromDirectory.clientRef"
        client = await self._kube.read_client(namespace, directory.client_name)
        if client is None:
            raise DirectoryTokenMissing(
                f"RaidiamClient {namespace}/{directory.client_name} (from {field_path}) does not "
                "exist; create it with scope directory:software"
            )
        client_spec = parse_spec(client.get("spec") or {}, name=directory.client_name)
        token_secret = client_spec.token_secret.name
        memory.secrets = memory.secrets | {token_secret} | client_spec.referenced_secrets()
        token = await self._directory_token(namespace, directory.client_name, token_secret)
        resolved = await resolve_issuer(
            client_spec,
            namespace=namespace,
            reader=self._kube,
            policy=self._settings.issuer_policy,
            cluster_resource_namespace=self._settings.cluster_resource_namespace,
        )
        inputs = await read_inputs(
            resolved, namespace=namespace, reader=self._kube, keys=self._keys, now=utc_now()
        )
        if inputs.request.transport is None:
            raise ConfigurationError(
                f"RaidiamClient {namespace}/{directory.client_name} (from {field_path}) has no "
                "transport certificate; the directory's API takes its token over mTLS only"
            )
        source = SoftwareStatementSource(
            directory.api_base_url,
            directory.organisation_id,
            directory.software_statement_id,
            inputs.request.transport,
            inputs.request.ca_bundle,
        )
        return await self._registrar.software_statement(source, directory_token=token)

    async def _directory_token(self, namespace: str, client: str, secret_name: str) -> str:
        secret = await self._kube.read_secret(namespace, secret_name)
        data = (secret or {}).get("data") or {}
        if "access_token" not in data:
            raise DirectoryTokenMissing(
                f"RaidiamClient {namespace}/{client} has no token yet (Secret {secret_name}); "
                "the registration goes ahead once it has one"
            )

        def value(key: str) -> str:
            return secret_value(
                secret,
                namespace=namespace,
                secret_name=secret_name,
                key=key,
                field_path=f"RaidiamClient {client}",
            ).decode(errors="replace")

        if DIRECTORY_SCOPE not in (value("scope") if data.get("scope") else "").split():
            raise DirectoryTokenMissing(
                f"the token of RaidiamClient {namespace}/{client} does not have the scope "
                f"{DIRECTORY_SCOPE}; set spec.scope: {DIRECTORY_SCOPE} on it"
            )
        return value("access_token")

    async def _finalize(
        self,
        body: Mapping[str, Any],
        owner: Owner,
        memory: _Memory,
        status: Mapping[str, Any],
        *,
        now: datetime,
    ) -> timedelta | None:
        """Deletion: Delete sends RFC 7592 DELETE (a bounded number of tries); Retain keeps the
        credentials Secret by taking it out of garbage collection. Then the finalizer goes."""
        spec_body = body.get("spec") or {}
        name = (spec_body.get("credentialsSecret") or {}).get(
            "name"
        ) or f"{owner.name}-registration"
        secret = await self._kube.read_secret(owner.namespace, name)
        owned = secret if secret is not None and is_owned_by(secret, owner) else None
        await self._warn_if_in_doubt(body, owner, memory, owned)
        if spec_body.get("deletionPolicy") == "Delete":
            try:
                recorded = recorded_in(owned, checked_at=None)
                if recorded is not None:
                    spec = parse_registration_spec(spec_body, name=owner.name)
                    server_spec = await resolve_issuer(
                        spec.server,
                        namespace=owner.namespace,
                        reader=self._kube,
                        policy=self._settings.issuer_policy,
                        cluster_resource_namespace=self._settings.cluster_resource_namespace,
                    )
                    inputs = await read_inputs(
                        server_spec,
                        namespace=owner.namespace,
                        reader=self._kube,
                        keys=self._keys,
                        now=now,
                    )
                    server = RegistrationServer(
                        server_spec.issuer, inputs.request.transport, inputs.request.ca_bundle
                    )
                    # Already gone at the server: what deletion was for.
                    require_lease(self._fence)
                    with contextlib.suppress(RegistrationGone):
                        await self._registrar.delete(server, recorded.handle)
                    # Its credentials manage nothing now; a RaidiamRegistration re-created
                    # under this name before garbage collection removes the Secret takes it
                    # over and registers anew.
                    assert owned is not None
                    await self._kube.replace_secret(owner.namespace, name, emptied(owned))
                    await self._kube.post_event(
                        owner,
                        warning=False,
                        reason=Reason.REGISTRATION_DELETED,
                        message=f"client {recorded.registration.client_id} deleted at the server",
                    )
            except (TransientError, KubernetesError) as error:
                memory.failed_attempts += 1
                if memory.failed_attempts < DELETE_ATTEMPTS:
                    logger.warning(
                        "%s/%s: deleting the registration failed (%s), try %d of %d: %s",
                        owner.namespace,
                        owner.name,
                        error.reason,
                        memory.failed_attempts,
                        DELETE_ATTEMPTS,
                        error.message,
                    )
                    return retry_delay(memory.failed_attempts, retry_after=None, rng=self._rng)
                await self._gave_up(owner, error, f"after {DELETE_ATTEMPTS} tries")
            except RaidiamOperatorError as error:
                await self._gave_up(owner, error, "")
        elif owned is not None:
            await self._kube.replace_secret(owner.namespace, name, retained(owned, owner))
            await self._kube.post_event(
                owner,
                warning=False,
                reason=Reason.REGISTRATION_RETAINED,
                message=f"the registration stays at the server (deletionPolicy Retain); Secret "
                f"{name} keeps its credentials",
            )
        finalizers = [
            f for f in body["metadata"].get("finalizers") or [] if f != REGISTRATION_FINALIZER
        ]
        try:
            await self._set_finalizers(body, finalizers)
        except (KubernetesError, TransientError):
            # Changed meanwhile (our own status write): again with the object as it is now.
            return FINALIZER_RETRY
        self.forget((owner.namespace, owner.name))
        return None

    async def _warn_if_in_doubt(
        self,
        body: Mapping[str, Any],
        owner: Owner,
        memory: _Memory,
        owned: Mapping[str, Any] | None,
    ) -> None:
        """Deleting a registration whose POST is in doubt leaves nothing to manage here; the
        person is told, once, that a client may be left at the bank."""
        pending = pending_registration(body["metadata"].get("annotations"))
        if pending is None or pending in memory.settled or memory.told_deleted_in_doubt:
            return
        with contextlib.suppress(ConfigurationError):
            if recorded_in(owned, checked_at=None) is not None:
                return  # the answer was recorded: Delete or Retain deals with it
        memory.told_deleted_in_doubt = True
        await self._kube.post_event(
            owner,
            warning=True,
            reason=Reason.REGISTRATION_IN_DOUBT,
            message=deleted_in_doubt(pending),
        )

    async def _set_finalizers(self, body: Mapping[str, Any], finalizers: list[str]) -> None:
        """The object's finalizers, as of the version read: a `Conflict` when it changed, so
        that another controller's finalizer is never dropped."""
        meta = body["metadata"]
        await self._kube.patch_registration(
            meta["namespace"],
            meta["name"],
            {"metadata": {"finalizers": finalizers, "resourceVersion": meta["resourceVersion"]}},
        )

    async def _gave_up(self, owner: Owner, error: RaidiamOperatorError, tries: str) -> None:
        await self._kube.post_event(
            owner,
            warning=True,
            reason=Reason.REGISTRATION_NOT_DELETED,
            message=f"the registration could not be deleted at the server{' ' + tries if tries else ''}"
            f", and may still be there: {error.note()} Delete it there (raidiam-operator "
            "register --delete); the RaidiamRegistration goes now",
        )

    async def _warn(
        self, owner: Owner, status: Mapping[str, Any], error: RaidiamOperatorError
    ) -> None:
        """A Warning Event when the failure is new, not again for every attempt that repeats it."""
        before = {c.get("type"): c for c in status.get("conditions") or []}.get("Degraded") or {}
        if before.get("status") == "True" and before.get("reason") == error.reason:
            return
        await self._kube.post_event(owner, warning=True, reason=error.reason, message=error.note())

    async def _write_status(self, owner: Owner, memory: _Memory, status: JSON) -> None:
        if memory.status is not None and not status_differs(memory.status, status):
            return
        await self._kube.patch_registration_status(owner, status)
        memory.status = status


@dataclass(frozen=True, slots=True)
class _Done:
    step: NextStep
    registration: Registration | None = None
    digest: str | None = None
    checked_at: datetime | None = None
    #: the record in the credentials Secret, which the status shows when it lacks it (a status
    #: write lost to a restart)
    recorded: Recorded | None = None


_READY_REASONS = {"register": Reason.REGISTERED, "update": Reason.UPDATED, "read": Reason.CHECKED}
_EVENT_REASONS = {"register": Reason.REGISTERED, "update": Reason.REGISTRATION_UPDATED}


def _succeeded(view: RegistrationView, done: _Done, refresh: str | None) -> RegistrationView:
    registration, recorded = done.registration, done.recorded
    action = done.step.action
    reason = _READY_REASONS.get(action, Reason.UP_TO_DATE)
    client = (
        registration.client_id
        if registration
        else recorded.registration.client_id
        if recorded
        else view.previous.get("clientId")
    )
    message = {
        "register": f"client {client} registered",
        "update": f"client {client} updated ({done.step.reason})",
        "read": f"client {client} read back from the server as registered",
    }.get(action, f"client {client} registered as the spec says")
    before = _ready_before(view.previous)
    if action == "none" and before.get("status") == "True":
        # Nothing happened: the condition keeps saying what last did.
        reason, message = before.get("reason") or reason, before.get("message") or message
    return replace(
        view,
        ready=_condition("Ready", True, reason, message),
        degraded=_condition("Degraded", False, Reason.AS_EXPECTED, "the last attempt succeeded"),
        client_id=client,
        registration_client_uri=(
            registration.registration_client_uri
            if registration
            else recorded.registration.registration_client_uri
            if recorded
            else None
        ),
        client_id_issued_at=registration.client_id_issued_at if registration else None,
        digest=done.digest or (recorded.registration.digest if recorded else None),
        checked_at=done.checked_at,
        refresh_request=refresh,
    )


def _failed(
    view: RegistrationView, error: RaidiamOperatorError, *, ready: bool
) -> RegistrationView:
    message = error.note()
    previous_ready = _ready_before(view.previous)
    ready_condition = (
        _condition(
            "Ready",
            True,
            previous_ready.get("reason", Reason.REGISTERED),
            previous_ready.get("message", ""),
        )
        if ready and previous_ready
        else _condition("Ready", False, error.reason, message)
    )
    return replace(
        view,
        ready=ready_condition,
        degraded=_condition("Degraded", True, error.reason, message),
    )


def _condition(kind: str, status: bool, reason: str, message: str) -> Condition:
    return Condition(kind, status, reason, message)


def _ready_before(status: Mapping[str, Any]) -> Mapping[str, Any]:
    return {c.get("type"): c for c in status.get("conditions") or []}.get("Ready") or {}


def _was_ready(status: Mapping[str, Any]) -> bool:
    return _ready_before(status).get("status") == "True"


def _soon_fixed(error: RaidiamOperatorError) -> bool:
    """Input someone else may fix without touching the registration (a Secret, the directory
    client's token, an issuer): looked at again after a while, as RaidiamClients are."""
    return isinstance(error, ConfigurationError) and error.reason not in NEVER_RETRIED


class RegistrationController:
    """A worker per RaidiamRegistration; attempts only while this replica leads."""

    def __init__(self, reconciler: RegistrationReconciler, *, clock: Clock = utc_now) -> None:
        self._reconciler = reconciler
        self._clock = clock
        self._bodies: dict[Key, Mapping[str, Any]] = {}
        self._triggers: dict[Key, tuple[object, ...]] = {}
        #: the pending record each registration's object showed last
        self._pending: dict[Key, str | None] = {}
        self._wake: dict[Key, asyncio.Event] = {}
        self._workers: dict[Key, asyncio.Task[None]] = {}
        self._active = True
        self._slots = asyncio.Semaphore(CONCURRENT_ATTEMPTS)

    def observe(self, body: Mapping[str, Any]) -> None:
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        self._bodies[key] = body
        # What makes an attempt worth it. Our own writes (the status, the finalizer, the
        # pending record) change none of it: a refused registration must not be sent again
        # because we reported it. A person removing the pending record of a registration held
        # back for it is how it goes ahead.
        annotations = meta.get("annotations") or {}
        trigger = (
            meta.get("uid"),
            meta.get("generation"),
            annotations.get(REFRESH_REQUESTED_AT),
            meta.get("deletionTimestamp"),
        )
        pending = annotations.get(PENDING_ANNOTATION)
        released = self._pending.get(key) is not None and pending is None
        self._pending[key] = pending
        if self._triggers.get(key) != trigger or (released and self._reconciler.held_back(key)):
            self._triggers[key] = trigger
            self._wake_up(key)
        if key not in self._workers:
            self._workers[key] = asyncio.create_task(
                self._work(key), name=f"registration {key[0]}/{key[1]}"
            )

    def forget(self, namespace: str, name: str, uid: str | None = None) -> None:
        key = (namespace, name)
        kept = self._bodies.get(key)
        if uid is not None and kept is not None and kept["metadata"].get("uid") != uid:
            # kopf handles each uid on its own: the DELETED event of an object deleted and
            # created again under its name may come after the new one's first event.
            return
        task = self._workers.pop(key, None)
        if task is not None:
            task.cancel()
        self._bodies.pop(key, None)
        self._triggers.pop(key, None)
        self._pending.pop(key, None)
        self._wake.pop(key, None)
        self._reconciler.forget(key)

    def secret_changed(self, namespace: str, name: str) -> None:
        for key in list(self._workers):
            if key[0] == namespace and self._reconciler.reads_secret(key, name):
                self._wake_up(key)

    def set_active(self, active: bool) -> None:
        self._active = active
        if active:
            for key in list(self._workers):
                self._wake_up(key)

    async def aclose(self) -> None:
        tasks = list(self._workers.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._workers.clear()

    async def read_registration(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        """A registration as kopf last delivered it, for the RaidiamClients that take their
        client id from it (refresh.client_ids): the bodies kept here serve the engine too."""
        return self._bodies.get((namespace, name))

    def _wake_up(self, key: Key) -> None:
        self._wake.setdefault(key, asyncio.Event()).set()

    async def _work(self, key: Key) -> None:
        wait: timedelta | None = None
        while True:
            event = self._wake.setdefault(key, asyncio.Event())
            try:
                timeout = None if wait is None else max(0.0, wait.total_seconds())
                await asyncio.wait_for(event.wait(), timeout=timeout)
            except TimeoutError:
                pass
            event.clear()
            body = self._bodies.get(key)
            if body is None:
                return
            if not self._active:
                wait = None
                continue
            try:
                async with self._slots:
                    wait = await self._reconciler.reconcile(body, now=self._clock())
            except asyncio.CancelledError:
                raise
            except Exception:
                # A bug must not end the worker: the registration would never be looked at again.
                logger.exception("%s/%s: registration attempt crashed", *key)
                wait = timedelta(minutes=1)


def registration_controller(
    kube: RegistrationKube,
    tokens: TokenClient,
    keys: PrivateKeys,
    options: OperatorOptions,
    *,
    fence: Fence = UNFENCED,
) -> RegistrationController:
    """The controller as the operator runs it, from its options."""
    settings = RegistrationSettings(
        issuer_policy=options.issuer_policy,
        cluster_resource_namespace=options.cluster_resource_namespace,
    )
    return RegistrationController(RegistrationReconciler(kube, Registrar(tokens), keys, settings))
