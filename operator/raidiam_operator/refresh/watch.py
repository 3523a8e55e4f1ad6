"""The watch cache: what the watches delivered, indexed so a Secret event finds the clients it
concerns.

Clients are kept with their spec parsed once per change, not once per attempt. Secrets are
watched as metadata only (kube.secret_watch.SecretMetadataWatch): a referenced Secret is read
from the API server when a client first needs it and again when the watch reports a new version,
and only the keys its clients use are kept (the others by name, for messages), so an attempt
(and a restart of thousands of clients) reads it from memory. Unreferenced Secrets are never read.
ConfigMaps are not watched: a CA bundle read moments ago is reused instead, again only the key
its clients use. What is kept of a Secret or ConfigMap goes with the last client that names it.
Namespaces' labels are read, not watched, and reused for a few seconds. ClusterRaidiamIssuers
are kept as delivered, with the clients that name each, so that a change to one reaches exactly
those.
"""

from __future__ import annotations

import asyncio
import copy
import enum
import hashlib
import json
import sys
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from raidiam_operator.core.errors import ConfigurationError
from raidiam_operator.core.spec import REFRESH_REQUESTED_AT, ClientSpec, Owner, parse_spec
from raidiam_operator.core.times import Clock, parse_rfc3339
from raidiam_operator.kube.gateway import ClientKube
from raidiam_operator.refresh.state import ClientState, Key, Notices, Observed

# A CA bundle ConfigMap read this recently is used again: a burst or a restart of thousands of
# clients that share one would otherwise read it once each.
CONFIG_MAP_REUSE = timedelta(seconds=5)
# Likewise a Namespace's labels, for a ClusterRaidiamIssuer's namespaceSelector.
NAMESPACE_REUSE = timedelta(seconds=5)


class Change(enum.Enum):
    NEW = "new"  # first sight, or deleted and created again under the same name
    CHANGED = "changed"  # a new generation or a new refresh request: worth an attempt now
    SAME = "same"


class SecretNames(Protocol):
    """What the Secret watch knows: which Secrets exist (names and resourceVersions only)."""

    @property
    def synced(self) -> bool: ...

    def resource_version(self, namespace: str, name: str) -> str | None: ...


class WatchCache:
    def __init__(
        self, kube: ClientKube, *, clock: Clock, secret_names: SecretNames | None = None
    ) -> None:
        self._kube = kube
        self._clock = clock
        self.secret_names = secret_names
        self.clients: dict[Key, ClientState] = {}
        self.by_input_secret: dict[Key, set[Key]] = {}
        # Several clients may name one token Secret: its owner guards it, the others report
        # SecretConflict, and all of them hear when it changes.
        self.by_token_secret: dict[Key, set[Key]] = {}
        self.by_config_map: dict[Key, set[Key]] = {}
        # The keys read of each indexed Secret (False) or CA bundle ConfigMap (True), counted
        # over the clients that name it, and what each client added: kept as clients come and
        # go, because working them out per read walks every client of a shared Secret, so a
        # burst of N clients sharing one would cost N² (its share of the time: docs/benchmarks.md).
        self._keys_in_use: dict[tuple[bool, Key], Counter[str]] = {}
        self._keys_of_client: dict[Key, list[tuple[tuple[bool, Key], frozenset[str]]]] = {}
        self._input_secrets: dict[Key, _Kept] = {}
        self._config_maps: dict[Key, tuple[datetime, _Kept]] = {}
        # Reads under way: the clients of a Secret that arrive meanwhile (a burst, a restart)
        # share the one read instead of each making their own.
        self._reading: dict[Key, asyncio.Future[Mapping[str, Any] | None]] = {}
        self.issuers: dict[str, Mapping[str, Any]] = {}
        self.by_issuer: dict[str, set[Key]] = {}
        # The clients that take their client id from each RaidiamRegistration (spec.clientIdFrom);
        # the registrations themselves are the RegistrationController's (refresh.client_ids).
        self.by_registration: dict[Key, set[Key]] = {}
        self._namespaces: dict[str, tuple[datetime, Mapping[str, Any] | None]] = {}

    @property
    def kept(self) -> tuple[int, int]:
        """How many Secrets and ConfigMaps are kept in memory, for the liveness probe."""
        return len(self._input_secrets), len(self._config_maps)

    # -- clients ---------------------------------------------------------------------------

    def observe(self, body: Mapping[str, Any]) -> tuple[ClientState, Change]:
        """A RaidiamClient was listed, created or changed."""
        metadata = body["metadata"]
        key = (metadata["namespace"], metadata["name"])
        owner = Owner(namespace=key[0], name=key[1], uid=metadata["uid"])
        generation = int(metadata.get("generation") or 0)
        requested = (metadata.get("annotations") or {}).get(REFRESH_REQUESTED_AT)
        spec_body = body.get("spec") or {}
        state = self.clients.get(key)
        if state is None or state.observed.owner.uid != owner.uid:
            if state is not None:
                self._unindex(state.observed)
            status = body.get("status") or {}
            state = ClientState(
                Observed(
                    owner=owner,
                    generation=generation,
                    spec_digest=spec_digest(spec_body),
                    issuer=str(spec_body.get("issuer") or ""),
                    spec=_parsed(spec_body, name=key[1]),
                    refresh_requested_at=requested,
                    status=body.get("status"),
                    previous_conditions=list(status.get("conditions") or []),
                ),
                # Survives restarts through the status, so the daily Warning stays daily.
                notices=Notices(
                    last_certificate_warning=parse_rfc3339(
                        status.get("lastCertificateWarningTime") or ""
                    )
                ),
            )
            self.clients[key] = state
            self._index(state.observed)
            return state, Change.NEW
        observed = state.observed
        changed = generation != observed.generation or requested != observed.refresh_requested_at
        digest = spec_digest(spec_body)
        reparsed = generation != observed.generation or digest != observed.spec_digest
        if reparsed:
            observed.spec = _parsed(spec_body, name=key[1])
            observed.spec_digest, observed.issuer = digest, str(spec_body.get("issuer") or "")
        observed.generation = generation
        observed.refresh_requested_at = requested
        if changed or reparsed:
            self._index(observed)
        if changed:
            # A user who labels the namespace and asks for a refresh wants the labels read now.
            self._namespaces.pop(key[0], None)
        return state, Change.CHANGED if changed else Change.SAME

    def forget(self, key: Key) -> ClientState | None:
        state = self.clients.pop(key, None)
        if state is not None:
            self._unindex(state.observed)
        return state

    def _index(self, observed: Observed) -> None:
        self._unindex(observed)
        observed.referenced_secrets, observed.token_secret_name = frozenset(), None
        observed.ca_config_map_name = None
        observed.issuer_ref = observed.registration_ref = None
        if isinstance(observed.spec, ConfigurationError):
            return
        spec = observed.spec
        namespace, key = observed.owner.namespace, observed.key
        observed.referenced_secrets = spec.referenced_secrets()
        observed.token_secret_name = spec.token_secret.name
        observed.ca_config_map_name = spec.ca_bundle.config_map_name if spec.ca_bundle else None
        observed.issuer_ref = spec.issuer_ref
        if observed.issuer_ref is not None:
            self.by_issuer.setdefault(observed.issuer_ref, set()).add(key)
        if spec.client_id_from is not None:
            observed.registration_ref = spec.client_id_from.name
            self.by_registration.setdefault((namespace, observed.registration_ref), set()).add(key)
        for secret in observed.referenced_secrets:
            self.by_input_secret.setdefault((namespace, secret), set()).add(key)
        self.by_token_secret.setdefault((namespace, observed.token_secret_name), set()).add(key)
        if observed.ca_config_map_name is not None:
            self.by_config_map.setdefault((namespace, observed.ca_config_map_name), set()).add(key)
        secret_keys = spec.secret_keys()
        used = [
            ((False, (namespace, secret)), secret_keys.get(secret, frozenset()))
            for secret in observed.referenced_secrets
        ]
        if spec.ca_bundle and observed.ca_config_map_name is not None:
            used.append(
                ((True, (namespace, observed.ca_config_map_name)), frozenset({spec.ca_bundle.key}))
            )
        for object_key, data_keys in used:
            self._keys_in_use.setdefault(object_key, Counter()).update(data_keys)
        self._keys_of_client[key] = used

    def _unindex(self, observed: Observed) -> None:
        # Only the entries this client is in: a scan of the whole index per client would make
        # a burst of N new clients cost N² steps.
        namespace, key = observed.owner.namespace, observed.key
        for object_key, data_keys in self._keys_of_client.pop(key, ()):
            counts = self._keys_in_use.get(object_key)
            if counts is not None:
                counts.subtract(data_keys)
                for unused in [k for k in data_keys if counts[k] <= 0]:
                    del counts[unused]
                if not counts:
                    del self._keys_in_use[object_key]
        names = [(self.by_input_secret, name) for name in observed.referenced_secrets]
        if observed.token_secret_name is not None:
            names.append((self.by_token_secret, observed.token_secret_name))
        if observed.ca_config_map_name is not None:
            names.append((self.by_config_map, observed.ca_config_map_name))
        if observed.registration_ref is not None:
            names.append((self.by_registration, observed.registration_ref))
        if observed.issuer_ref is not None:
            clients = self.by_issuer.get(observed.issuer_ref)
            if clients is not None:
                clients.discard(key)
                if not clients:
                    del self.by_issuer[observed.issuer_ref]
        for index, name in names:
            keys = index.get((namespace, name))
            if keys is not None:
                keys.discard(key)
                if not keys:
                    # The last client that named it: what we kept of it goes too.
                    del index[(namespace, name)]
                    if index is self.by_input_secret:
                        self._input_secrets.pop((namespace, name), None)
                    elif index is self.by_config_map:
                        self._config_maps.pop((namespace, name), None)

    # -- ClusterRaidiamIssuers, RaidiamRegistrations and Namespaces -----------------------

    def registration_changed(self, registration_key: Key) -> set[Key]:
        """The clients whose client id comes from this RaidiamRegistration."""
        return set(self.by_registration.get(registration_key, ()))

    def issuer_changed(self, body: Mapping[str, Any]) -> set[Key]:
        """A ClusterRaidiamIssuer was listed, created or changed. Returns the clients that name
        it, unless only its status changed (the issuer check writes it every few minutes)."""
        name = body["metadata"]["name"]
        previous = self.issuers.get(name)
        self.issuers[name] = copy.deepcopy(dict(body))
        if previous is not None and previous.get("spec") == body.get("spec"):
            return set()
        return set(self.by_issuer.get(name, ()))

    def issuer_deleted(self, name: str) -> set[Key]:
        self.issuers.pop(name, None)
        return set(self.by_issuer.get(name, ()))

    async def read_issuer(self, name: str) -> Mapping[str, Any] | None:
        """A ClusterRaidiamIssuer as the watch delivered it; None if there is none."""
        return self.issuers.get(name)

    async def read_namespace(self, name: str) -> Mapping[str, Any] | None:
        """A Namespace, read again when the last read is older than NAMESPACE_REUSE (labels are
        not watched: that would take list and watch on every namespace)."""
        cached = self._namespaces.get(name)
        if cached is not None and self._clock() - cached[0] < NAMESPACE_REUSE:
            return cached[1]
        read_at = self._clock()
        namespace = await self._kube.read_namespace(name)
        self._namespaces[name] = (read_at, namespace)
        return namespace

    # -- Secrets ---------------------------------------------------------------------------

    def secret_changed(
        self, secret_key: Key, resource_version: str | None
    ) -> tuple[set[Key], set[Key]]:
        """A Secret changed (now at `resource_version`) or went away (None). Returns the clients
        that read it, and the clients that name it as their token Secret."""
        kept = self._input_secrets.get(secret_key)
        if kept is not None and kept.resource_version != resource_version:
            del self._input_secrets[secret_key]  # read it again when a client needs it
        return self.by_input_secret.get(secret_key, set()), self.by_token_secret.get(
            secret_key, set()
        )

    async def read_secret(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        """A Secret some client reads: as kept since the watch last reported it, else from the
        API server (and then kept, with only the keys its clients use)."""
        secret_key = (namespace, name)
        keys = self._keys_used(secret_key)
        kept = self._input_secrets.get(secret_key)
        if kept is not None and keys <= kept.keys:
            return kept.body
        reading = self._reading.get(secret_key)
        if reading is None:
            reading = self._reading[secret_key] = asyncio.ensure_future(self._read(namespace, name))
            reading.add_done_callback(lambda _: self._reading.pop(secret_key, None))
        secret = await asyncio.shield(reading)
        keys = self._keys_used(secret_key)
        if secret is None or secret_key not in self.by_input_secret:
            return secret
        names = self.secret_names
        known = names.resource_version(namespace, name) if names and names.synced else None
        version = (secret.get("metadata") or {}).get("resourceVersion")
        if known is None or known == version:  # else the watch has heard of a newer one
            self._input_secrets[secret_key] = _Kept.of(secret, keys)
        return secret

    async def _read(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        return await self._kube.read_secret(namespace, name)

    async def read_config_map(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        config_key = (namespace, name)
        keys = self._keys_used(config_key, config_map=True)
        cached = self._config_maps.get(config_key)
        if (
            cached is not None
            and self._clock() - cached[0] < CONFIG_MAP_REUSE
            and keys <= cached[1].keys
        ):
            return cached[1].body
        read_at = self._clock()
        config_map = await self._kube.read_config_map(namespace, name)
        if config_map is None or config_key not in self.by_config_map:
            self._config_maps.pop(config_key, None)
        else:
            self._config_maps[config_key] = (read_at, _Kept.of(config_map, keys))
        return config_map

    def _keys_used(self, object_key: Key, *, config_map: bool = False) -> frozenset[str]:
        """The keys of a Secret (or the CA ConfigMap) that the clients naming it read."""
        return frozenset(self._keys_in_use.get((config_map, object_key), ()))


@dataclass(frozen=True, slots=True)
class _Kept:
    """What is kept of a Secret or ConfigMap: its version, and only the keys clients use (the
    others by name only, so a message can list the keys present)."""

    body: Mapping[str, Any]
    keys: frozenset[str]

    @property
    def resource_version(self) -> str | None:
        version = self.body["metadata"].get("resourceVersion")
        return str(version) if version is not None else None

    @classmethod
    def of(cls, obj: Mapping[str, Any], keys: frozenset[str]) -> _Kept:
        metadata = obj.get("metadata") or {}
        data = obj.get("data") or {}
        return cls(
            {
                "metadata": {
                    "namespace": metadata.get("namespace"),
                    "name": metadata.get("name"),
                    "resourceVersion": metadata.get("resourceVersion"),
                },
                "data": {k: (v if k in keys else "") for k, v in data.items()},
            },
            keys,
        )


def what_the_engine_reads(body: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of the parts of a RaidiamClient the engine reads: not managedFields, which every
    status patch adds to, nor annotations such as kubectl's last-applied-configuration (a whole
    copy of the object). Deep-copying the whole body for each of the thousands of events a burst
    or a restart brings churned memory the engine never kept."""
    metadata = body.get("metadata") or {}
    annotations = metadata.get("annotations") or {}
    return {
        "metadata": {
            "namespace": metadata.get("namespace"),
            "name": metadata.get("name"),
            "uid": metadata.get("uid"),
            "generation": metadata.get("generation"),
            "annotations": {
                key: annotations[key] for key in (REFRESH_REQUESTED_AT,) if key in annotations
            },
        },
        "spec": shared_copy(body.get("spec") or {}),
        "status": shared_copy(body.get("status")),
    }


#: strings up to this long are shared between clients: keys, condition types and reasons,
#: secret names, timestamps; messages and tokens are longer and mostly unique
SHARED_STRING_LENGTH = 64


def shared_copy(value: Any) -> Any:
    """A deep copy of parsed JSON whose keys and short strings are interned, so that thousands
    of clients share one "lastTransitionTime", "Ready" or "TokenIssued". json.loads makes new
    ones for every object, and a restart lists every client (the saving per status is in
    docs/benchmarks.md)."""
    if isinstance(value, str):
        return sys.intern(value) if len(value) <= SHARED_STRING_LENGTH else value
    if isinstance(value, dict):
        return {sys.intern(str(key)): shared_copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shared_copy(item) for item in value]
    return value


def spec_digest(spec_body: Mapping[str, Any]) -> bytes:
    """Equal for equal specs. The engine keeps this and the parsed spec, not the spec's body,
    which nothing reads once it is parsed (the saving per client is in docs/benchmarks.md)."""
    text = json.dumps(spec_body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.blake2b(text.encode(), digest_size=16).digest()


def _parsed(spec_body: Mapping[str, Any], *, name: str) -> ClientSpec | ConfigurationError:
    try:
        return parse_spec(spec_body, name=name)
    except ConfigurationError as error:
        return error
