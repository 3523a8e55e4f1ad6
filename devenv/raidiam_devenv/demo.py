"""`make demo`: the operator doing its job on a laptop, with nothing outside needed.

Where a node can start (root on Linux; see raidiam_devenv.node), it runs the real thing: a
one-node cluster, the operator image built from the Dockerfile, `helm install` of the chart, a
RaidiamClient, and a workload pod that prints the claims of the token it reads from its mounted
file and calls a resource server with it over mTLS.

Otherwise (or with KUBECONFIG set) it says why in one line and brings up a local control plane
(or uses the cluster in KUBECONFIG) and the test authorization server, shows `raidiam-operator
token` by both methods, then runs the operator as a local process on two RaidiamClients and
prints what a user would look at.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import jwt

from raidiam_devenv.authserver import AuthServer
from raidiam_devenv.controlplane import ControlPlane
from raidiam_devenv.kubectl import KubectlError, kubectl
from raidiam_devenv.operator_process import OperatorProcess
from raidiam_devenv.pki import IssuedCertificate, TestPKI

REPO_ROOT = Path(__file__).resolve().parents[2]
NAMESPACE = "raidiam-demo"


def _say(message: str) -> None:
    print(f"\n==> {message}", flush=True)


def _kubectl(kubeconfig: Path, *args: str, input: str | None = None, check: bool = True) -> str:
    """kubectl's output; a failure ends the demo with kubectl's stderr."""
    try:
        return kubectl(kubeconfig, *args, input=input, check=check).stdout
    except KubectlError as error:
        raise SystemExit(str(error)) from None


def _apply(kubeconfig: Path, document: dict[str, Any]) -> None:
    _kubectl(kubeconfig, "apply", "-f", "-", input=json.dumps(document))


def _secret(name: str, data: dict[str, bytes], kind: str = "Opaque") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": kind,
        "metadata": {"name": name, "namespace": NAMESPACE},
        "data": {k: base64.b64encode(v).decode() for k, v in data.items()},
    }


def _apply_server_ca_and_transport(
    kubeconfig: Path, server: AuthServer, transport: IssuedCertificate
) -> None:
    """ConfigMap `authserver-ca` and kubernetes.io/tls Secret `tls-transport` in the namespace."""
    _apply(
        kubeconfig,
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "authserver-ca", "namespace": NAMESPACE},
            "data": {"ca.crt": server.ca_path.read_text()},
        },
    )
    _apply(
        kubeconfig,
        _secret(
            "tls-transport",
            {"tls.crt": transport.cert_pem, "tls.key": transport.key_pem},
            "kubernetes.io/tls",
        ),
    )


def _cli_token(server: AuthServer, *args: str) -> dict[str, Any]:
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "raidiam_operator",
            "token",
            "--issuer",
            server.issuer,
            "--ca-file",
            str(server.ca_path),
            "--scope",
            "directory:software",
            *args,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        raise SystemExit(
            f"raidiam-operator token failed ({completed.returncode}):\n{completed.stderr}"
        )
    document: dict[str, Any] = json.loads(completed.stdout)
    return document


def _show_token(label: str, document: dict[str, Any]) -> None:
    claims = jwt.decode(document["access_token"], options={"verify_signature": False})
    bound = claims.get("cnf", {}).get("x5t#S256")
    print(f"  {label}: expires_in={document['expires_in']} scope={document['scope']!r}")
    print(f"    certificate_thumbprint = {document.get('certificate_thumbprint')}")
    print(
        f"    token cnf.x5t#S256     = {bound}  ({'match' if bound == document.get('certificate_thumbprint') else 'MISMATCH'})"
    )


def run_on_node(keep: bool, workdir: Path) -> int:
    """The chart's pod on a real node, and a workload pod reading the token from its file."""
    from raidiam_devenv.image import build_image
    from raidiam_devenv.node import NODE_IP, NodeCluster
    from raidiam_devenv.workload import caller_manifests, parse_log

    with ExitStack() as stack:
        _say("Starting a one-node cluster (containerd, kubelet, kube-proxy, kube-scheduler)")
        print(
            "  first run builds them from the Go module proxy: several minutes, cached afterwards"
        )
        cluster = NodeCluster(workdir / "node")
        cluster.start()
        stack.callback(cluster.stop)
        kubeconfig = cluster.kubeconfig
        print(f"  node Ready in {cluster.started_seconds:.1f}s; kubeconfig {kubeconfig}")

        _say("Building the operator image from the Dockerfile (buildah) and importing it")
        image = build_image()
        cluster.import_image(image.archive)
        print(f"  {image.reference} <- {image.archive} ({image.seconds:.0f}s)")

        _say("Starting the test authorization server where pods can reach it")
        pki = TestPKI(workdir / "pki")
        server = stack.enter_context(AuthServer(workdir / "authserver", pki, host=NODE_IP))
        print(f"  issuer {server.issuer}; protected resource {server.protected_resource_url}")
        transport = pki.client_certificate("demo-tls-client")
        server.register_tls_client("demo-tls-client", transport, token_ttl=120)

        _say("helm install raidiam-token-operator ./charts/raidiam-token-operator --wait")
        print(
            _kubectl(kubeconfig, "apply", "--server-side", "-f", str(REPO_ROOT / "crds")).rstrip()
        )
        started = time.monotonic()
        print(
            cluster.helm(
                "install",
                "raidiam-token-operator",
                str(REPO_ROOT / "charts" / "raidiam-token-operator"),
                "-n",
                "raidiam-token-operator",
                "--create-namespace",
                "--wait",
                "--timeout=180s",
                timeout=210,
            )
            .stdout.split("NOTES:")[0]
            .rstrip()
        )
        print(
            _kubectl(
                kubeconfig, "get", "pods", "-n", "raidiam-token-operator", "-o", "wide"
            ).rstrip()
        )

        _say(f"A RaidiamClient in namespace {NAMESPACE}, and a pod that mounts its token")
        _kubectl(kubeconfig, "create", "namespace", NAMESPACE, check=False)
        _apply_server_ca_and_transport(kubeconfig, server, transport)
        _apply(
            kubeconfig,
            {
                "apiVersion": "raidiam.io/v1alpha1",
                "kind": "RaidiamClient",
                "metadata": {"name": "directory", "namespace": NAMESPACE},
                "spec": {
                    "issuer": server.issuer,
                    "scope": "directory:software",
                    "caBundle": {"configMapName": "authserver-ca"},
                    "clientId": "demo-tls-client",
                    "authMethod": "tls_client_auth",
                    "transportCertificate": {"secretName": "tls-transport"},
                },
            },
        )
        for document in caller_manifests(
            "token-reader",
            NAMESPACE,
            image=image.reference,
            token_secret="directory-token",
            transport_secret="tls-transport",
            server_ca_config_map="authserver-ca",
            resource_url=server.protected_resource_url,
            interval=5,
        ):
            _apply(kubeconfig, document)
        deadline = time.monotonic() + 120
        while not (
            log := parse_log(
                _kubectl(kubeconfig, "logs", "token-reader", "-n", NAMESPACE, check=False)
            )
        ).accepted():
            if time.monotonic() > deadline:
                raise SystemExit("the workload pod made no accepted call in 120 s")
            time.sleep(1)
        print(
            f"  helm install -> first accepted call from the pod: {time.monotonic() - started:.1f}s"
        )
        _say(f"kubectl get raidiamclients -n {NAMESPACE}")
        print(_kubectl(kubeconfig, "get", "raidiamclients", "-n", NAMESPACE).rstrip())
        _say("kubectl logs token-reader: the claims of the token it read from its mounted file")
        print("    " + json.dumps(log.tokens[0]["claims"], indent=2).replace("\n", "\n    "))
        call = log.accepted()[0]
        print(
            f"  its call to the protected resource over mTLS: HTTP {call['status']}; token "
            f"cnf.x5t#S256 {call['token_x5t']} {'==' if call['token_x5t'] == call['cert_x5t'] else '!='} "
            f"mounted certificate {call['cert_x5t']}"
        )
        if keep:
            _say(f"Running until Ctrl-C. export KUBECONFIG={kubeconfig} to look around.")
            try:
                while True:
                    time.sleep(1)
            except KeyboardInterrupt:
                pass
        _say("Done; stopping everything (and undoing the node's host changes)")
    return 0


def run(keep: bool, workdir: Path) -> int:
    with ExitStack() as stack:
        external = os.environ.get("KUBECONFIG")
        if external and Path(external).exists():
            _say(f"Using the cluster in KUBECONFIG={external}")
            kubeconfig = Path(external)
        else:
            _say("Starting a local control plane (etcd, kube-apiserver, kube-controller-manager)")
            print(
                "  first run builds Kubernetes from the Go module proxy: several minutes, cached afterwards"
            )
            control_plane = stack.enter_context(ControlPlane(workdir / "controlplane"))
            kubeconfig = control_plane.kubeconfig
            print(f"  API server {control_plane.server}; kubeconfig {kubeconfig}")

        _say(
            "Starting the test authorization server (node-oidc-provider, configured like Raidiam Connect)"
        )
        pki = TestPKI(workdir / "pki")
        server = stack.enter_context(AuthServer(workdir / "authserver", pki))
        print(f"  issuer {server.issuer}; mTLS token endpoint {server.mtls_token_endpoint}")

        transport = pki.client_certificate("demo-tls-client")
        server.register_tls_client("demo-tls-client", transport, token_ttl=120)
        signing = pki.signing_key("rsa")
        jwt_transport = pki.client_certificate("demo-jwt-client")
        server.register_private_key_jwt_client(
            "demo-jwt-client",
            {"keys": [signing.public_jwk("demo-signing-key")]},
            bound=True,
            token_ttl=120,
        )
        files = workdir / "files"
        files.mkdir(exist_ok=True)
        cert, key = transport.write(files, "tls-client")
        jwt_cert, jwt_key = jwt_transport.write(files, "jwt-client")
        signing_path = files / "signing.pem"
        signing_path.write_bytes(signing.private_pem)

        _say("raidiam-operator token, once, from files (what teams do today with curl)")
        _show_token(
            "tls_client_auth",
            _cli_token(
                server,
                "--client-id",
                "demo-tls-client",
                "--auth-method",
                "tls_client_auth",
                "--cert",
                str(cert),
                "--key",
                str(key),
            ),
        )
        _show_token(
            "private_key_jwt",
            _cli_token(
                server,
                "--client-id",
                "demo-jwt-client",
                "--auth-method",
                "private_key_jwt",
                "--signing-key",
                str(signing_path),
                "--kid",
                "demo-signing-key",
                "--cert",
                str(jwt_cert),
                "--key",
                str(jwt_key),
            ),
        )

        _say("Installing the CRD and the demo's Secrets and RaidiamClients")
        print(_kubectl(kubeconfig, "apply", "-f", str(REPO_ROOT / "crds")).rstrip())
        _kubectl(
            kubeconfig, "wait", "--for", "condition=established", "crd/raidiamclients.raidiam.io"
        )
        _kubectl(kubeconfig, "create", "namespace", NAMESPACE, check=False)
        _apply_server_ca_and_transport(kubeconfig, server, transport)
        _apply(
            kubeconfig,
            _secret(
                "jwt-transport",
                {"tls.crt": jwt_transport.cert_pem, "tls.key": jwt_transport.key_pem},
                "kubernetes.io/tls",
            ),
        )
        _apply(kubeconfig, _secret("jwt-signing", {"tls.key": signing.private_pem}))
        common = {
            "issuer": server.issuer,
            "scope": "directory:software",
            "caBundle": {"configMapName": "authserver-ca"},
        }
        _apply(
            kubeconfig,
            {
                "apiVersion": "raidiam.io/v1alpha1",
                "kind": "RaidiamClient",
                "metadata": {"name": "directory-mtls", "namespace": NAMESPACE},
                "spec": {
                    **common,
                    "clientId": "demo-tls-client",
                    "authMethod": "tls_client_auth",
                    "transportCertificate": {"secretName": "tls-transport"},
                },
            },
        )
        _apply(
            kubeconfig,
            {
                "apiVersion": "raidiam.io/v1alpha1",
                "kind": "RaidiamClient",
                "metadata": {"name": "directory-jwt", "namespace": NAMESPACE},
                "spec": {
                    **common,
                    "clientId": "demo-jwt-client",
                    "authMethod": "private_key_jwt",
                    "transportCertificate": {"secretName": "jwt-transport"},
                    "signingKey": {"secretName": "jwt-signing", "keyId": "demo-signing-key"},
                },
            },
        )

        _say("Running the operator")
        operator = stack.enter_context(
            OperatorProcess(kubeconfig, workdir / "operator.log", namespaces=[NAMESPACE])
        )
        print(f"  pid {operator.pid}; log {operator.log_path}")
        deadline = time.monotonic() + 60
        for name in ("directory-mtls", "directory-jwt"):
            while True:
                ready = _kubectl(
                    kubeconfig,
                    "get",
                    "raidiamclient",
                    name,
                    "-n",
                    NAMESPACE,
                    "-o",
                    "jsonpath={.status.conditions[?(@.type=='Ready')].status}",
                )
                if ready == "True":
                    break
                if time.monotonic() > deadline:
                    print(operator.log_tail())
                    raise SystemExit(f"RaidiamClient {name} did not become Ready in 60 s")
                time.sleep(0.5)

        _say(f"kubectl get raidiamclients -n {NAMESPACE}")
        print(_kubectl(kubeconfig, "get", "raidiamclients", "-n", NAMESPACE).rstrip())
        _say(f"kubectl raidiam status -n {NAMESPACE}")
        status = subprocess.run(
            [sys.executable, "-m", "raidiam_operator", "status", "-n", NAMESPACE],
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, "KUBECONFIG": str(kubeconfig)},
        )
        print((status.stdout or status.stderr).rstrip())
        _say("The token Secrets, decoded (claims only, signature not verified)")
        for name in ("directory-mtls", "directory-jwt"):
            secret = json.loads(
                _kubectl(
                    kubeconfig, "get", "secret", f"{name}-token", "-n", NAMESPACE, "-o", "json"
                )
            )
            token = base64.b64decode(secret["data"]["access_token"]).decode()
            claims = jwt.decode(token, options={"verify_signature": False})
            print(
                f"  secret/{name}-token  expires_at={base64.b64decode(secret['data']['expires_at']).decode()}"
            )
            print("    " + json.dumps(claims, indent=2).replace("\n", "\n    "))

        if keep:
            _say(f"Running until Ctrl-C. export KUBECONFIG={kubeconfig} to look around.")
            try:
                while operator.running:
                    time.sleep(1)
            except KeyboardInterrupt:
                pass
        _say("Done; stopping everything")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m raidiam_devenv.demo", description=__doc__)
    parser.add_argument("--keep", action="store_true", help="keep everything running until Ctrl-C")
    parser.add_argument(
        "--workdir", type=Path, help="where to keep state (default: a temporary directory)"
    )
    parser.add_argument(
        "--no-node",
        action="store_true",
        help="run the operator as a local process against a bare control plane",
    )
    args = parser.parse_args(argv)
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
        return _run_best(args, args.workdir)
    workdir = Path(tempfile.mkdtemp(prefix="raidiam-demo-"))
    try:
        return _run_best(args, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _run_best(args: argparse.Namespace, workdir: Path) -> int:
    reason = _why_no_node(args.no_node)
    if reason is None:
        from raidiam_devenv.binaries import BuildError
        from raidiam_devenv.node import NodeError
        from raidiam_devenv.system_packages import SystemPackageError

        try:
            return run_on_node(args.keep, workdir)
        except (NodeError, BuildError, SystemPackageError) as error:
            reason = f"the node did not start: {str(error).splitlines()[0]}"
    _say(f"No node ({reason}): running the operator as a local process instead")
    return run(args.keep, workdir)


def _why_no_node(disabled: bool) -> str | None:
    if disabled:
        return "--no-node"
    if os.environ.get("KUBECONFIG"):
        return "KUBECONFIG is set: using that cluster"
    if sys.platform != "linux" or os.geteuid() != 0:
        return "a node needs root on Linux"
    return None


if __name__ == "__main__":
    sys.exit(main())
