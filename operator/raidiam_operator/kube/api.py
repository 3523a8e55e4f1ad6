"""How the operator reaches the API server: the credentials and connection settings, one request
through the official client's `ApiClient`, the paths of the objects it reads and writes, and the
lines of a watch response.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import quote

import kubernetes
from kubernetes.client.exceptions import ApiException
from urllib3.util.retry import Retry

from raidiam_operator.core.errors import ConfigurationError
from raidiam_operator.core.issuers import ISSUER_PLURAL
from raidiam_operator.core.reasons import Reason
from raidiam_operator.core.registration_spec import REGISTRATION_PLURAL
from raidiam_operator.core.spec import GROUP, PLURAL, VERSION

JSON = dict[str, Any]
#: (connect, read) seconds for every API call
REQUEST_TIMEOUT = (5.0, 15.0)
#: how the operator patches its objects: a JSON merge patch (RFC 7386), as kubectl patch --type
#: merge; custom resources have no strategic merge
MERGE_PATCH = "application/merge-patch+json"


def client_from_environment(
    *, kubeconfig: str | None = None, context: str | None = None, pool_size: int = 16
) -> kubernetes.client.ApiClient:
    """In-cluster credentials when running in a pod, else the kubeconfig (KUBECONFIG, or
    `kubeconfig`) and its current context (or `context`); naming either skips the pod's.
    `pool_size` connections are kept open, one per thread that calls.

    Raises `ConfigurationError` when there is no usable kubeconfig or context."""
    configuration = kubernetes.client.Configuration()
    try:
        if kubeconfig is None and context is None:
            try:
                kubernetes.config.load_incluster_config(client_configuration=configuration)
            except kubernetes.config.ConfigException:
                kubernetes.config.load_kube_config(client_configuration=configuration)
        else:
            kubernetes.config.load_kube_config(
                config_file=kubeconfig, context=context, client_configuration=configuration
            )
    except (kubernetes.config.ConfigException, OSError) as error:
        raise ConfigurationError(
            f"no cluster to talk to: {error}. Point KUBECONFIG (or --kubeconfig) at a "
            "kubeconfig file and pick a context with --context",
            reason=Reason.NO_KUBECONFIG,
        ) from None
    configuration.connection_pool_maxsize = pool_size
    # urllib3 retries a GET or PUT that timed out three more times by default, which holds a
    # thread for four read timeouts, not one REQUEST_TIMEOUT, when the API server's etcd is down.
    # Refused connections are still retried at once; the engine retries everything else.
    configuration.retries = Retry(total=2, connect=2, read=0, status=0, redirect=0)
    return kubernetes.client.ApiClient(configuration)


def current_namespace(kubeconfig: str | None = None, context: str | None = None) -> str:
    """The namespace of the kubeconfig's current (or named) context, or the pod's, else
    "default"."""
    try:
        contexts, current = kubernetes.config.list_kube_config_contexts(kubeconfig)
        chosen = (
            next((c for c in contexts if c.get("name") == context), None) if context else current
        )
        namespace = (chosen or {}).get("context", {}).get("namespace")
        if namespace:
            return str(namespace)
    except (kubernetes.config.ConfigException, OSError):
        pass
    try:
        with open("/var/run/secrets/kubernetes.io/serviceaccount/namespace") as file:
            return file.read().strip() or "default"
    except OSError:
        return "default"


def api_request(
    api_client: kubernetes.client.ApiClient,
    method: str,
    path: str,
    *,
    query: Mapping[str, str] | None = None,
    body: JSON | None = None,
    content_type: str = "application/json",
    accept: str = "application/json",
    timeout: tuple[float, float] = REQUEST_TIMEOUT,
    stream: bool = False,
) -> Any:
    """One request to the API server through the official client's `ApiClient`: its kubeconfig
    or in-cluster credentials, TLS, connection pool and retries. Blocking; run it in a thread.

    The client's typed API classes are not used: CoreV1Api alone builds validators for hundreds
    of methods on first use, memory that the operator's dozen calls never need
    (docs/benchmarks.md). Returns urllib3's response with its body read, or unread with
    `stream`; raises `ApiException` for any status outside 2xx, as the typed methods do."""
    headers = {"Accept": accept}
    if body is not None:
        headers["Content-Type"] = content_type
    request = api_client.param_serialize(
        method,
        path,
        query_params=list((query or {}).items()),
        header_params=headers,
        body=body,
        auth_settings=["BearerToken"],
    )
    answer = api_client.call_api(*request, _request_timeout=timeout)
    if not 200 <= answer.status <= 299:
        answer.read()
        raise ApiException.from_response(http_resp=answer, body=None, data=None)
    response = answer.response
    if not stream:
        # Read here in the worker: read on the event loop it would block the loop, and left
        # unread it keeps its connection out of the pool, so that the next call pays a new TLS
        # handshake with the API server. Reading caches it in `.data`.
        _ = response.data
    return response


def watch_lines(response: Any) -> Iterator[bytes]:
    """The newline-separated JSON events of a watch response, as they arrive."""
    pending = b""
    for chunk in response.stream(65536, decode_content=True):
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for line in complete:
            if line.strip():
                yield line


# -- paths --------------------------------------------------------------------------------------


def _quoted(name: str) -> str:
    return quote(name, safe="")


def namespace_path(name: str) -> str:
    return f"/api/v1/namespaces/{_quoted(name)}"


def core_path(namespace: str, plural: str, name: str | None = None) -> str:
    path = f"{namespace_path(namespace)}/{plural}"
    return path if name is None else f"{path}/{_quoted(name)}"


def clients_path(namespace: str | None, name: str | None = None) -> str:
    where = "" if namespace is None else f"/namespaces/{_quoted(namespace)}"
    path = f"/apis/{GROUP}/{VERSION}{where}/{PLURAL}"
    return path if name is None else f"{path}/{_quoted(name)}"


def issuer_path(name: str | None = None) -> str:
    path = f"/apis/{GROUP}/{VERSION}/{ISSUER_PLURAL}"
    return path if name is None else f"{path}/{_quoted(name)}"


def registrations_path(namespace: str | None, name: str | None = None) -> str:
    where = "" if namespace is None else f"/namespaces/{_quoted(namespace)}"
    path = f"/apis/{GROUP}/{VERSION}{where}/{REGISTRATION_PLURAL}"
    return path if name is None else f"{path}/{_quoted(name)}"


def lease_path(namespace: str, name: str | None = None) -> str:
    path = f"/apis/coordination.k8s.io/v1/namespaces/{_quoted(namespace)}/leases"
    return path if name is None else f"{path}/{_quoted(name)}"
