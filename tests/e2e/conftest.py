"""End-to-end fixtures: the operator in its own process, against the real control plane and the
real authorization server. Each test gets its own namespace and its own operator watching it."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import jwt
import kubernetes
import pytest
from kubernetes.client.exceptions import ApiException

from raidiam_devenv.authserver import AuthServer
from raidiam_devenv.controlplane import ControlPlane
from raidiam_devenv.operator_process import OperatorProcess
from raidiam_devenv.pki import IssuedCertificate, SigningKey, TestPKI

GROUP, VERSION, PLURAL = "raidiam.io", "v1alpha1", "raidiamclients"
JWT = re.compile(r"eyJ[\w-]{4,}\.[\w-]{4,}\.[\w-]{4,}")
T = TypeVar("T")


def wait_for(
    probe: Callable[[], T | None], *, timeout: float, what: str, interval: float = 0.25
) -> T:
    """Poll until `probe` returns something truthy; fail naming `what` otherwise."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; last seen: {last!r}")


def kubectl_raidiam(
    control_plane: ControlPlane,
    *args: str,
    kubeconfig: Path | None = None,
    plugin: bool = True,
    home: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """`kubectl raidiam ...` through kubectl itself, which finds `kubectl-raidiam` on PATH (or
    `raidiam-operator ...` with plugin=False), as a user outside the cluster runs it."""
    bin_dir = Path(sys.executable).parent
    environment = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    environment["KUBECONFIG"] = str(kubeconfig or control_plane.kubeconfig)
    environment.pop("KUBERNETES_SERVICE_HOST", None)
    if home is not None:
        environment["HOME"] = str(home)
    command = (
        [str(control_plane.binaries.kubectl), "raidiam"]
        if plugin
        else [str(bin_dir / "raidiam-operator")]
    )
    result = subprocess.run(
        [*command, *args],
        capture_output=True,
        text=True,
        env=environment,
        timeout=180,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert "Traceback" not in result.stderr, result.stderr
    return result


@dataclass
class World:
    """One test's view of the cluster and the authorization server."""

    control_plane: ControlPlane
    auth: AuthServer
    pki: TestPKI
    namespace: str
    core: Any
    custom: Any
    operator: OperatorProcess
    secrets_seen: list[bytes] = field(default_factory=list)

    @classmethod
    def from_kube_api(
        cls,
        control_plane: ControlPlane,
        auth: AuthServer,
        pki: TestPKI,
        kube_api: Any,
        namespace: str,
        operator: OperatorProcess,
    ) -> World:
        """A World in `namespace`, talking to the cluster through the client `kube_api`."""
        return cls(
            control_plane=control_plane,
            auth=auth,
            pki=pki,
            namespace=namespace,
            core=kubernetes.client.CoreV1Api(kube_api),
            custom=kubernetes.client.CustomObjectsApi(kube_api),
            operator=operator,
        )

    # -- inputs ----------------------------------------------------------------------------

    def ca_config_map(self) -> str:
        name = "authserver-ca"
        body = {"metadata": {"name": name}, "data": {"ca.crt": self.auth.ca_path.read_text()}}
        try:
            self.core.create_namespaced_config_map(self.namespace, body)
        except ApiException as error:
            if error.status != 409:
                raise
        return name

    def tls_secret(
        self,
        name: str,
        issued: IssuedCertificate,
        *,
        replace: bool = False,
        ca_pem: bytes | None = None,
    ) -> None:
        """A kubernetes.io/tls Secret; with `ca_pem` also ca.crt, as cert-manager writes it."""
        self.secrets_seen.append(issued.key_pem)
        body: dict[str, Any] = {
            "metadata": {"name": name},
            "type": "kubernetes.io/tls",
            "data": {
                "tls.crt": base64.b64encode(issued.cert_pem).decode(),
                "tls.key": base64.b64encode(issued.key_pem).decode(),
            },
        }
        if ca_pem is not None:
            body["data"]["ca.crt"] = base64.b64encode(ca_pem).decode()
        if replace:
            self.core.replace_namespaced_secret(name, self.namespace, body)
        else:
            self.core.create_namespaced_secret(self.namespace, body)

    def signing_secret(self, name: str, key: SigningKey) -> None:
        self.secrets_seen.append(key.private_pem)
        body = {
            "metadata": {"name": name},
            "data": {"tls.key": base64.b64encode(key.private_pem).decode()},
        }
        self.core.create_namespaced_secret(self.namespace, body)

    def spec(self, client_id: str, **extra: Any) -> dict[str, Any]:
        return {
            "issuer": self.auth.issuer,
            "clientId": client_id,
            "scope": "directory:software",
            "caBundle": {"configMapName": self.ca_config_map()},
            **extra,
        }

    def tls_client(
        self,
        name: str,
        *,
        issued: IssuedCertificate | None = None,
        token_ttl: float | None = None,
        create_secret: bool = True,
        bound: bool = True,
        **extra: Any,
    ) -> IssuedCertificate:
        """Register a tls_client_auth client (whose tokens are bound to its certificate unless
        `bound` is False), store its certificate (`issued`, or a new one from the test PKI),
        create the RaidiamClient."""
        client_id = f"{name}-{uuid.uuid4().hex[:8]}"
        issued = issued or self.pki.client_certificate(client_id)
        self.auth.register_tls_client(client_id, issued, token_ttl=token_ttl, bound=bound)
        if create_secret:
            self.tls_secret(f"{name}-transport", issued)
        self.create_client(
            name,
            self.spec(
                client_id,
                authMethod="tls_client_auth",
                transportCertificate={"secretName": f"{name}-transport"},
                **extra,
            ),
        )
        return issued

    def jwt_client(
        self, name: str, *, token_ttl: float | None = None, **extra: Any
    ) -> IssuedCertificate:
        """Register a private_key_jwt client with a bound token; create Secrets and the client."""
        client_id = f"{name}-{uuid.uuid4().hex[:8]}"
        signing = self.pki.signing_key("rsa")
        issued = self.pki.client_certificate(client_id)
        self.auth.register_private_key_jwt_client(
            client_id, {"keys": [signing.public_jwk("sig-1")]}, bound=True, token_ttl=token_ttl
        )
        self.tls_secret(f"{name}-transport", issued)
        self.signing_secret(f"{name}-signing", signing)
        self.create_client(
            name,
            self.spec(
                client_id,
                authMethod="private_key_jwt",
                transportCertificate={"secretName": f"{name}-transport"},
                signingKey={"secretName": f"{name}-signing", "keyId": "sig-1"},
                **extra,
            ),
        )
        return issued

    def create_client(self, name: str, spec: dict[str, Any]) -> None:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "RaidiamClient",
            "metadata": {"name": name},
            "spec": spec,
        }
        self.custom.create_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, body)

    def patch_client(self, name: str, patch: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, name, patch
        )

    # -- what a user sees ------------------------------------------------------------------

    def client(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.custom.get_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, name
        )
        return result

    def condition(self, name: str, kind: str = "Ready") -> dict[str, Any]:
        conditions = self.client(name).get("status", {}).get("conditions", [])
        return next((c for c in conditions if c["type"] == kind), {})

    def secret(self, name: str) -> Any:
        try:
            return self.core.read_namespaced_secret(name, self.namespace)
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    def token(self, client_name: str) -> str | None:
        secret = self.secret(f"{client_name}-token")
        if secret is None or not secret.data or "access_token" not in secret.data:
            return None
        return base64.b64decode(secret.data["access_token"]).decode()

    def claims(self, client_name: str) -> dict[str, Any]:
        token = self.token(client_name)
        assert token is not None
        claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
        return claims

    def wait_ready(self, name: str, *, timeout: float = 30.0) -> dict[str, Any]:
        return wait_for(
            lambda: self.condition(name) if self.condition(name).get("status") == "True" else None,
            timeout=timeout,
            what=f"RaidiamClient {name} to be Ready",
        )

    def wait_reason(
        self, name: str, reason: str, *, kind: str = "Ready", timeout: float = 30.0
    ) -> dict[str, Any]:
        return wait_for(
            lambda: (
                self.condition(name, kind)
                if self.condition(name, kind).get("reason") == reason
                else None
            ),
            timeout=timeout,
            what=f"{kind} reason {reason} on RaidiamClient {name}",
        )

    def events(self, name: str) -> list[Any]:
        events = self.core.list_namespaced_event(self.namespace).items
        return [e for e in events if e.involved_object.name == name]

    def requests_for(self, client_id: str) -> int:
        return int(self.auth.stats()["token_requests_by_client"].get(client_id, 0))

    # -- the command line ------------------------------------------------------------------

    def manifest(self, directory: Path, name: str, spec: dict[str, Any]) -> Path:
        """A RaidiamClient manifest in this test's namespace, written to a file (not applied)."""
        path = directory / f"{name}.yaml"
        path.write_text(
            json.dumps(
                {
                    "apiVersion": f"{GROUP}/{VERSION}",
                    "kind": "RaidiamClient",
                    "metadata": {"name": name, "namespace": self.namespace},
                    "spec": spec,
                }
            )
        )
        return path


@pytest.fixture(scope="session")
def kube_api(control_plane: ControlPlane) -> Any:
    return kubernetes.config.new_client_from_config(config_file=str(control_plane.kubeconfig))


@contextmanager
def started_world(
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
    """A `World` with its own operator (given `extra_args` and `env`), stopped on the way out:
    the `world` fixture's, and the wider ones of `fault_helpers.running_world`."""
    operator = OperatorProcess(
        kubeconfig or control_plane.kubeconfig,
        log_path,
        namespaces=[] if all_namespaces else [namespace],
        extra_args=extra_args,
        env=env,
    )
    auth.clear_faults()
    world = World.from_kube_api(control_plane, auth, pki, kube_api, namespace, operator.start())
    try:
        yield world
    finally:
        operator.stop()
        auth.clear_faults()


@pytest.fixture
def world(
    control_plane: ControlPlane,
    auth_server: AuthServer,
    test_pki: TestPKI,
    kube_namespace: str,
    kube_api: Any,
    tmp_path: Path,
) -> Iterator[World]:
    with started_world(
        control_plane, auth_server, test_pki, kube_api, kube_namespace, tmp_path / "operator.log"
    ) as world:
        yield world
    # Every test doubles as a leak canary for what the operator logged.
    log = world.operator.log_text()
    assert not JWT.search(log), "a JWT (token or assertion) appeared in the operator's log"
    for pem in world.secrets_seen:
        for line in pem.decode().splitlines():
            if line and not line.startswith("-----"):
                assert line not in log, "private key material appeared in the operator's log"
