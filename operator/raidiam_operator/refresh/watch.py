"""The watch cache: what kopf delivered, indexed so a Secret event finds the clients it concerns.

Clients are kept with their spec parsed once per change, not once per attempt. Referenced
Secrets are kept as the watch last delivered them, so an attempt (and a restart of thousands of
clients) reads them from memory rather than the API server; only Secrets some client references
are kept. ConfigMaps are not watched: a CA bundle read moments ago is reused instead.
"""

from __future__ import annotations

import copy
import enum
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from raidiam_operator.core.errors import ConfigurationError
from raidiam_operator.core.spec import REFRESH_REQUESTED_AT, ClientSpec, Owner, parse_spec
from raidiam_operator.core.times import Clock, parse_rfc3339
from raidiam_operator.kube.gateway import KubeGateway
from raidiam_operator.refresh.state import ClientState, Key, Notices, Observed

# A CA bundle ConfigMap read this recently is used again: a burst or a restart of thousands of
# clients that share one would otherwise read it once each.
CONFIG_MAP_REUSE = timedelta(seconds=5)


class Change(enum.Enum):
    NEW = "new"  # first sight, or deleted and created again under the same name
    CHANGED = "changed"  # a new generation or a new refresh request: worth an attempt now
    SAME = "same"


class WatchCache:
    def __init__(self, kube: KubeGateway, *, clock: Clock) -> None:
        self._kube = kube
        self._clock = clock
        self.clients: dict[Key, ClientState] = {}
        self.by_input_secret: dict[Key, set[Key]] = {}
        # Several clients may name one token Secret: its owner guards it, the others report
        # SecretConflict, and all of them hear when it changes.
        self.by_token_secret: dict[Key, set[Key]] = {}
        self._input_secrets: dict[Key, Mapping[str, Any]] = {}
        self._config_maps: dict[Key, tuple[datetime, Mapping[str, Any]]] = {}

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
                    spec_body=spec_body,
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
        if generation != observed.generation or spec_body != observed.spec_body:
            observed.spec = _parsed(spec_body, name=key[1])
        observed.generation, observed.spec_body = generation, spec_body
        observed.refresh_requested_at = requested
        if changed:
            self._index(observed)
        return state, Change.CHANGED if changed else Change.SAME

    def forget(self, key: Key) -> ClientState | None:
        state = self.clients.pop(key, None)
        if state is not None:
            self._unindex(state.observed)
        return state

    def _index(self, observed: Observed) -> None:
        self._unindex(observed)
        observed.referenced_secrets, observed.token_secret_name = frozenset(), None
        if isinstance(observed.spec, ConfigurationError):
            return
        namespace, key = observed.owner.namespace, observed.key
        observed.referenced_secrets = observed.spec.referenced_secrets()
        observed.token_secret_name = observed.spec.token_secret.name
        for secret in observed.referenced_secrets:
            self.by_input_secret.setdefault((namespace, secret), set()).add(key)
        self.by_token_secret.setdefault((namespace, observed.token_secret_name), set()).add(key)

    def _unindex(self, observed: Observed) -> None:
        # Only the entries this client is in: a scan of the whole index per client would make
        # a burst of N new clients cost N² steps.
        namespace, key = observed.owner.namespace, observed.key
        names = [(self.by_input_secret, name) for name in observed.referenced_secrets]
        if observed.token_secret_name is not None:
            names.append((self.by_token_secret, observed.token_secret_name))
        for index, name in names:
            keys = index.get((namespace, name))
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del index[(namespace, name)]
                    if index is self.by_input_secret:
                        self._input_secrets.pop((namespace, name), None)

    # -- Secrets ---------------------------------------------------------------------------

    def secret_changed(
        self, secret_key: Key, body: Mapping[str, Any] | None
    ) -> tuple[set[Key], set[Key]]:
        """A Secret changed (`body` as it is now) or went away (None). Returns the clients that
        read it, and the clients that name it as their token Secret."""
        readers = self.by_input_secret.get(secret_key, set())
        if readers:
            if body is None:
                self._input_secrets.pop(secret_key, None)
            else:
                self._input_secrets[secret_key] = copy.deepcopy(dict(body))
        return readers, self.by_token_secret.get(secret_key, set())

    async def read_secret(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        """A Secret some client reads: as the watch delivered it, else from the API server."""
        secret_key = (namespace, name)
        cached = self._input_secrets.get(secret_key)
        if cached is not None:
            return cached
        secret = await self._kube.read_secret(namespace, name)
        if secret is not None and secret_key in self.by_input_secret:
            # A watch event that arrived meanwhile is newer than what we read.
            self._input_secrets.setdefault(secret_key, secret)
        return secret

    async def read_config_map(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        cached = self._config_maps.get((namespace, name))
        if cached is not None and self._clock() - cached[0] < CONFIG_MAP_REUSE:
            return cached[1]
        read_at = self._clock()
        config_map = await self._kube.read_config_map(namespace, name)
        if config_map is None:
            self._config_maps.pop((namespace, name), None)
        else:
            self._config_maps[(namespace, name)] = (read_at, config_map)
        return config_map


def _parsed(spec_body: Mapping[str, Any], *, name: str) -> ClientSpec | ConfigurationError:
    try:
        return parse_spec(spec_body, name=name)
    except ConfigurationError as error:
        return error
