"""Workload pods that use a token exactly as docs/using-the-token.md tells users to.

A *token caller* pod mounts the token Secret and the transport-certificate
Secret as volumes (never ``subPath``, never environment variables), and for
every call reads the token file and loads the certificate files afresh, calls
a protected resource over mutual TLS with the bearer token, and on a 401 reads
the file again and retries once.  It prints one JSON line per call to stdout,
so a test (or ``make demo``) reads what the pod saw with ``kubectl logs``:

* ``{"at", "claims": {...}}`` when the token file holds a token it has not
  seen before (the claims, never the token itself);
* ``{"at", "token", "token_x5t", "cert_x5t", "status", "retried", "error"}``
  per call: ``token`` is a short digest of the token, ``token_x5t`` its
  ``cnf.x5t#S256``, ``cert_x5t`` the thumbprint of the mounted certificate,
  ``status`` the resource server's answer.

It runs in the operator's own image (Python and httpx are there) with the
script from a ConfigMap, under the ``restricted`` Pod Security Standard.

Reusable pieces: :func:`caller_manifests` (ConfigMap + Pod), :func:`parse_log`
and :class:`CallerLog`; :func:`restricted_security_context`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

TOKEN_DIR = "/var/run/raidiam/token"
TRANSPORT_DIR = "/var/run/raidiam/transport"
SERVER_CA_DIR = "/var/run/raidiam/server-ca"

# Runs inside the pod. Self-contained: Python's standard library plus httpx.
CALLER_SCRIPT = r"""
import base64, hashlib, json, os, ssl, sys, time
from pathlib import Path

import httpx

TOKEN_DIR = Path(os.environ["TOKEN_DIR"])
TRANSPORT_DIR = Path(os.environ["TRANSPORT_DIR"])
URL = os.environ.get("RESOURCE_URL", "")
INTERVAL = float(os.environ.get("INTERVAL", "1"))
SHOWN = ("iss", "aud", "client_id", "scope", "iat", "exp", "cnf")


def claims(token):
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def thumbprint(pem):
    der = ssl.PEM_cert_to_DER_cert(pem)
    return base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()


def version(directory):
    # One version of a Secret volume: the kubelet writes each into a new directory and swaps
    # the ..data link in one step. With the bundle (TOKEN_DIR == TRANSPORT_DIR) the token and the
    # certificate come from the same version, as docs/using-the-token.md says to read them.
    return Path(os.path.realpath(directory / "..data"))


def read_token():
    # The token, and the version of the certificate volume to use with it.
    token_version = version(TOKEN_DIR)
    transport = token_version if TOKEN_DIR == TRANSPORT_DIR else version(TRANSPORT_DIR)
    return (token_version / "access_token").read_text(), transport


def call(token, transport):
    # Load the certificate for every call: after a rotation the new one is used at once.
    tls = ssl.create_default_context()
    tls.load_cert_chain(transport / "tls.crt", transport / "tls.key")
    with httpx.Client(verify=tls, timeout=10, trust_env=False) as http:
        return http.get(URL, headers={"Authorization": f"Bearer {token}"})


def emit(line):
    print(json.dumps(line, sort_keys=True), flush=True)


seen = None
while True:
    line = {"at": round(time.time(), 3)}
    read_from = (version(TOKEN_DIR), version(TRANSPORT_DIR))
    try:
        token, transport = read_token()  # read the file for every call
        token_claims = claims(token)
        if token != seen:
            emit({"at": line["at"], "claims": {k: token_claims[k] for k in SHOWN if k in token_claims}})
            seen = token
        line["token"] = hashlib.sha256(token.encode()).hexdigest()[:12]
        line["token_x5t"] = (token_claims.get("cnf") or {}).get("x5t#S256")
        if (transport / "tls.crt").exists():
            line["cert_x5t"] = thumbprint((transport / "tls.crt").read_text())
        if URL:
            response = call(token, transport)
            line["retried"] = False
            if response.status_code == 401:  # renewed a moment ago? one retry with the new file
                token, transport = read_token()
                response = call(token, transport)
                line["retried"] = True
            line["status"] = response.status_code
            if response.status_code != 200:
                line["error"] = response.json().get("error_description", response.text[:200])
    except FileNotFoundError as error:
        if (version(TOKEN_DIR), version(TRANSPORT_DIR)) != read_from:
            continue  # the version read from was replaced meanwhile: read the new one
        line["error"] = f"{type(error).__name__}: {error}"
    except Exception as error:  # a failed call is data here, not the end of the pod
        line["error"] = f"{type(error).__name__}: {error}"
    emit(line)
    if not URL and os.environ.get("ONCE"):
        break
    time.sleep(INTERVAL)
"""


def restricted_security_context() -> dict[str, Any]:
    """A container securityContext that the ``restricted`` Pod Security Standard admits."""
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def caller_manifests(
    name: str,
    namespace: str,
    *,
    image: str,
    token_secret: str,
    transport_secret: str | None = None,
    server_ca_config_map: str | None = None,
    resource_url: str = "",
    interval: float = 1.0,
    once: bool = False,
    run_as_user: int | None = 65532,
    bundle: bool = False,
) -> list[dict[str, Any]]:
    """ConfigMap with the caller script, and the Pod that runs it.

    Without ``resource_url`` the pod only prints the claims of each token it reads
    (``once``: of the first one, then exits).  ``server_ca_config_map`` (key ``ca.crt``)
    is the trust anchor for the resource server's TLS certificate.  With ``bundle`` the
    certificate comes from the token Secret (``spec.tokenSecret.includeCertificate``), read
    from the same version of the volume as the token, and there is no transport volume.
    """
    if bundle and transport_secret:
        raise ValueError("with bundle, the certificate comes from the token Secret")
    volumes: list[dict[str, Any]] = [
        {"name": "token", "secret": {"secretName": token_secret}},
        {"name": "caller", "configMap": {"name": f"{name}-script"}},
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "token", "mountPath": TOKEN_DIR, "readOnly": True},
        {"name": "caller", "mountPath": "/opt/caller", "readOnly": True},
    ]
    env: list[dict[str, str]] = [
        {"name": "TOKEN_DIR", "value": TOKEN_DIR},
        {"name": "TRANSPORT_DIR", "value": TOKEN_DIR if bundle else TRANSPORT_DIR},
        {"name": "RESOURCE_URL", "value": resource_url},
        {"name": "INTERVAL", "value": str(interval)},
    ]
    if once:
        env.append({"name": "ONCE", "value": "1"})
    if transport_secret:
        volumes.append({"name": "transport", "secret": {"secretName": transport_secret}})
        mounts.append({"name": "transport", "mountPath": TRANSPORT_DIR, "readOnly": True})
    if server_ca_config_map:
        volumes.append({"name": "server-ca", "configMap": {"name": server_ca_config_map}})
        mounts.append({"name": "server-ca", "mountPath": SERVER_CA_DIR, "readOnly": True})
        # OpenSSL's default trust store, which ssl.create_default_context() loads.
        env.append({"name": "SSL_CERT_FILE", "value": f"{SERVER_CA_DIR}/ca.crt"})
    pod_security: dict[str, Any] = {"runAsNonRoot": True}
    if run_as_user is not None:
        pod_security["runAsUser"] = run_as_user
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": f"{name}-script", "namespace": namespace},
        "data": {"caller.py": CALLER_SCRIPT},
    }
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
        "spec": {
            "restartPolicy": "Never" if once else "Always",
            "automountServiceAccountToken": False,
            "securityContext": pod_security,
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {
                    "name": "caller",
                    "image": image,
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["python3", "/opt/caller/caller.py"],
                    "env": env,
                    "volumeMounts": mounts,
                    "securityContext": restricted_security_context(),
                    "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}},
                }
            ],
            "volumes": volumes,
        },
    }
    return [config_map, pod]


@dataclass
class CallerLog:
    """What a caller pod printed, parsed."""

    tokens: list[dict[str, Any]] = field(default_factory=list)  # {"at", "claims"}
    calls: list[dict[str, Any]] = field(default_factory=list)

    def accepted(self) -> list[dict[str, Any]]:
        return [c for c in self.calls if c.get("status") == 200]

    def failed(self) -> list[dict[str, Any]]:
        return [c for c in self.calls if c.get("status") != 200]

    def mismatch_seconds(self) -> float:
        """How long the calls saw the two files disagree: from each first mismatched call to
        the next call that saw them agree (to the last call, if none did)."""
        total, since = 0.0, None
        for call in self.calls:
            mismatched = _mismatched(call)
            if mismatched and since is None:
                since = call["at"]
            elif not mismatched and since is not None and call.get("token_x5t"):
                total, since = total + call["at"] - since, None
        if since is not None and self.calls:
            total += self.calls[-1]["at"] - since
        return total

    def mismatched(self) -> list[dict[str, Any]]:
        """Calls whose mounted token was bound to another certificate than the mounted one."""
        return [c for c in self.calls if _mismatched(c)]


def _mismatched(call: Mapping[str, Any]) -> bool:
    return bool(
        call.get("token_x5t") and call.get("cert_x5t") and call["token_x5t"] != call["cert_x5t"]
    )


def parse_log(text: str) -> CallerLog:
    log = CallerLog()
    for raw in text.splitlines():
        try:
            line: Mapping[str, Any] = json.loads(raw)
        except ValueError:
            continue
        if "claims" in line:
            log.tokens.append(dict(line))
        else:
            log.calls.append(dict(line))
    return log
