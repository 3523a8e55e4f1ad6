"""Helpers shared by the fault, hostile-input and isolation suites.

A module-scoped world (one namespace and one operator for many cases), the test server's request
log read back as timestamps, bulk creation of clients, the audit log, and the leak canary.
"""

from __future__ import annotations

import base64
import json
import re
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from kubernetes.client.exceptions import ApiException

from raidiam_devenv.authserver import AuthServer
from raidiam_devenv.controlplane import ControlPlane
from raidiam_devenv.pki import IssuedCertificate, TestPKI

from .conftest import GROUP, JWT, PLURAL, VERSION, World, started_world

REFRESH_REQUESTED_AT = "raidiam.io/refresh-requested-at"
#: figures the suites measure, written to build/fault-figures.json for docs/reliability.md
FIGURES_PATH = Path(__file__).resolve().parents[2] / "build" / "fault-figures.json"


# -- worlds -------------------------------------------------------------------------------


def new_namespace(control_plane: ControlPlane, stem: str) -> str:
    name = f"t-{stem[:40].strip('-')}-{uuid.uuid4().hex[:8]}"
    control_plane.kubectl("create", "namespace", name)
    return name


def drop_namespace(control_plane: ControlPlane, name: str) -> None:
    control_plane.kubectl(
        "delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False
    )


@contextmanager
def running_world(
    control_plane: ControlPlane,
    auth: AuthServer,
    pki: TestPKI,
    kube_api: Any,
    namespace: str,
    log_path: Path,
    *,
    kubeconfig: Path | None = None,
    all_namespaces: bool = False,
    extra_args: Sequence[str] = (),
    env: dict[str, str] | None = None,
) -> Iterator[World]:
    """A `World` with its own operator, for fixtures wider than one test (the `world` fixture is
    per test). The same leak canary runs on the way out."""
    with started_world(
        control_plane,
        auth,
        pki,
        kube_api,
        namespace,
        log_path,
        kubeconfig=kubeconfig,
        all_namespaces=all_namespaces,
        extra_args=extra_args,
        env=env,
    ) as world:
        yield world
        assert_nothing_leaked(world)  # while the operator still serves its metrics


def client_id_of(world: World, name: str) -> str:
    return str(world.client(name)["spec"]["clientId"])


def request_refresh(world: World, name: str) -> None:
    world.patch_client(
        name,
        {"metadata": {"annotations": {REFRESH_REQUESTED_AT: datetime.now(UTC).isoformat()}}},
    )


def ready_and_degraded(world: World, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    conditions = world.client(name).get("status", {}).get("conditions", [])
    by_type = {c["type"]: c for c in conditions}
    return by_type.get("Ready", {}), by_type.get("Degraded", {})


def is_ready(world: World, name: str) -> bool:
    """Ready and not Degraded: the client holds a current token and its last attempt worked."""
    ready, degraded = ready_and_degraded(world, name)
    return ready.get("status") == "True" and degraded.get("status") == "False"


def token_exp(token: str) -> datetime:
    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return datetime.fromtimestamp(claims["exp"], UTC)


def tokens_by_client(world: World) -> dict[str, str]:
    """Every token Secret in the namespace, by owning client: one list call."""
    secrets = world.core.list_namespaced_secret(
        world.namespace, label_selector="app.kubernetes.io/managed-by=raidiam-token-operator"
    ).items
    tokens = {}
    for secret in secrets:
        if secret.data and "access_token" in secret.data:
            owner = secret.metadata.labels.get("raidiam.io/client", secret.metadata.name)
            tokens[owner] = base64.b64decode(secret.data["access_token"]).decode()
    return tokens


def bulk_tls_clients(
    world: World,
    names: Sequence[str],
    *,
    token_ttl: int,
    transport_secret: str = "shared-transport",
) -> dict[str, str]:
    """Many tls_client_auth clients sharing one transport certificate (one Secret, one subject
    DN), registered in one admin call. Returns client ids by name."""
    prefix = uuid.uuid4().hex[:6]
    issued = world.pki.client_certificate(f"bulk-{prefix}")
    world.tls_secret(transport_secret, issued)
    ids = {name: f"{name}-{prefix}" for name in names}
    world.auth.register_clients(
        [
            {
                "client_id": client_id,
                "token_endpoint_auth_method": "tls_client_auth",
                "tls_client_auth_subject_dn": issued.subject_dn,
                "tls_client_certificate_bound_access_tokens": True,
                "grant_types": ["client_credentials"],
                "response_types": [],
                "scope": "directory:software",
                "token_ttl": token_ttl,
            }
            for client_id in ids.values()
        ]
    )
    for name, client_id in ids.items():
        world.create_client(
            name,
            world.spec(
                client_id,
                authMethod="tls_client_auth",
                transportCertificate={"secretName": transport_secret},
            ),
        )
    return ids


def origin(url: str) -> str:
    """https://host:port of a URL: an --allowed-issuer prefix that covers the whole server."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def tls_client_with(
    world: World, name: str, issued: IssuedCertificate | None = None, **spec: Any
) -> str:
    """A registered tls_client_auth client with spec overrides; returns its client id."""
    world.tls_client(name, issued=issued, **spec)
    return str(world.client(name)["spec"]["clientId"])


# -- the test server's request log ----------------------------------------------------------

_REQUEST_LINE = re.compile(
    r"^(?P<at>\S+) (?:tls|mtls) POST /token (?P<status>\S+) (?P<ms>[\d.]+)ms client=(?P<client>\S+)"
)


@dataclass(frozen=True)
class TokenRequestSeen:
    started: datetime
    status: str


def token_requests(auth: AuthServer, client_id: str) -> list[TokenRequestSeen]:
    """The token requests of one client as the server logged them, with when each arrived
    (logged at the end of the response, minus its duration)."""
    seen = []
    for line in auth.log_path.read_text(errors="replace").splitlines():
        match = _REQUEST_LINE.match(line)
        if match is None or match["client"] != client_id:
            continue
        ended = datetime.fromisoformat(match["at"].replace("Z", "+00:00"))
        started = ended.timestamp() - float(match["ms"]) / 1000
        seen.append(TokenRequestSeen(datetime.fromtimestamp(started, UTC), match["status"]))
    return seen


def most_in_a_minute(moments: Iterable[datetime]) -> int:
    """The most of `moments` in any 60 s."""
    stamps = sorted(m.timestamp() for m in moments)
    return max((sum(1 for t in stamps if start <= t < start + 60) for start in stamps), default=0)


# -- the Lease ---------------------------------------------------------------------------------


def lease_holder(world: World, name: str = "raidiam-token-operator") -> str:
    """Who holds the Lease `name` in the world's namespace ("" if no one, or no Lease)."""
    result = world.control_plane.kubectl(
        "get",
        "lease",
        name,
        "-n",
        world.namespace,
        "-o",
        "jsonpath={.spec.holderIdentity}",
        check=False,
    )
    return result.stdout.strip() if result.returncode == 0 else ""


# -- the audit log ---------------------------------------------------------------------------


def audit_events(control_plane: ControlPlane, *, since: float) -> list[dict[str, Any]]:
    assert control_plane.audit_log_path is not None
    events = []
    for line in control_plane.audit_log_path.read_text(errors="replace").splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        stamp = datetime.fromisoformat(event["requestReceivedTimestamp"].replace("Z", "+00:00"))
        if stamp.timestamp() >= since:
            events.append(event)
    return events


# -- the leak canary ---------------------------------------------------------------------------


def metrics_text(world: World) -> str:
    """The operator's /metrics while it runs (OperatorProcess passes --metrics-port)."""
    port = getattr(world.operator, "metrics_port", 0)
    if not port or not world.operator.running:
        return ""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5, trust_env=False).text
    assert "# TYPE" in text, "the metrics endpoint answered, but with no metrics"
    return text


def what_a_user_sees(world: World) -> dict[str, str]:
    """Everything the operator publishes: its log, the namespace's Events, every status."""
    texts = {"operator log": world.operator.log_text()}
    try:
        events = world.core.list_namespaced_event(world.namespace).items
        texts["events"] = "\n".join(
            f"{e.reason} {e.message} {e.involved_object.name}" for e in events
        )
        clients = world.custom.list_namespaced_custom_object(
            GROUP, VERSION, world.namespace, PLURAL
        )["items"]
        registrations = world.custom.list_namespaced_custom_object(
            GROUP, VERSION, world.namespace, "raidiamregistrations"
        )["items"]
        texts["statuses"] = "\n".join(
            json.dumps(c.get("status", {})) for c in [*clients, *registrations]
        )
    except ApiException:  # namespace already gone
        pass
    texts["metrics"] = metrics_text(world)
    return texts


def assert_nothing_leaked(world: World, *, tokens: Iterable[str] = ()) -> None:
    """No token (access or registration access token), assertion or private key in the log, an
    Event, a status (of RaidiamClients and RaidiamRegistrations) or the metrics."""
    needles: list[tuple[str, str]] = []
    for token in tokens:
        needles.append(("an access token", token))
        needles.append(("a base64-encoded access token", base64.b64encode(token.encode()).decode()))
    for pem in world.secrets_seen:
        for line in pem.decode(errors="replace").splitlines():
            if len(line) >= 16 and not line.startswith("-----"):
                needles.append(("private key material", line))
    for where, text in what_a_user_sees(world).items():
        match = JWT.search(text)
        assert match is None, f"a JWT (token or assertion) appeared in the {where}"
        for what, needle in needles:
            assert needle not in text, f"{what} appeared in the {where}"


# -- figures for docs/reliability.md ------------------------------------------------------------


def record_figure(name: str, value: Any) -> None:
    """Keep a measured figure; docs/reliability.md quotes them."""
    FIGURES_PATH.parent.mkdir(parents=True, exist_ok=True)
    figures = json.loads(FIGURES_PATH.read_text()) if FIGURES_PATH.exists() else {}
    figures[name] = value
    FIGURES_PATH.write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")
    print(f"figure {name}: {value}")


def wait_all(
    world: World,
    names: Iterable[str],
    predicate: Callable[[World, str], bool],
    *,
    timeout: float,
    what: str,
    interval: float = 0.25,
) -> float:
    """Wait until `predicate(world, name)` holds for every name; return the seconds it took."""
    started = time.monotonic()
    pending = set(names)
    while pending:
        for name in sorted(pending):
            if predicate(world, name):
                pending.discard(name)
        if not pending:
            break
        if time.monotonic() - started > timeout:
            raise AssertionError(
                f"timed out after {timeout:.0f} s waiting for {what}; "
                f"{len(pending)} still waiting, e.g. {sorted(pending)[:5]}"
            )
        time.sleep(interval)
    return time.monotonic() - started
