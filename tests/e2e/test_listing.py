"""kopf lists by streaming where the real API server streams lists, and in pages where it does
not: the start-up probe's answer, and what the operator then asks the API server for."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from raidiam_devenv.controlplane import ControlPlane
from raidiam_devenv.fixtures_kube import CRD_DIR
from raidiam_devenv.operator_process import OperatorProcess
from raidiam_operator.kube.gateway import KubernetesGateway
from raidiam_operator.kube.listing import listing_choice

from .conftest import wait_for

pytestmark = pytest.mark.kube

STREAMING = "kopf lists RaidiamClients and ClusterRaidiamIssuers as a stream"
PAGED = "kopf lists RaidiamClients and ClusterRaidiamIssuers in pages of 500"


#: how often `_probe` asks while the answer is not settled, half a second apart
PROBE_ATTEMPTS = 40


def _probe(control_plane: ControlPlane, namespace: str | None) -> tuple[int | None, bool]:
    async def probe() -> tuple[int | None, bool]:
        gateway = KubernetesGateway.from_environment(kubeconfig=str(control_plane.kubeconfig))
        try:
            # As the operator does: a watch cache still filling (a new CRD's, a busy machine's)
            # answers 429 for a while, so an unsettled answer is asked again.
            for _ in range(PROBE_ATTEMPTS):
                answer = await gateway.probe_streaming_lists(namespace)
                if listing_choice(answer).settled:
                    break
                await asyncio.sleep(0.5)
        finally:
            gateway.close()
        return answer.status, listing_choice(answer).streaming

    return asyncio.run(probe())


def _metric(control_plane: ControlPlane, name: str, **labels: str) -> float:
    """The sum of one of the API server's metrics over the series that carry `labels`."""
    text = control_plane.kubectl("get", "--raw", "/metrics").stdout
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        series = dict(re.findall(r'(\w+)="([^"]*)"', line[: line.rindex("}")]))
        if all(series.get(key) == value for key, value in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def _streamed(control_plane: ControlPlane, resource: str) -> float:
    # Counted when the API server sends the bookmark that ends a streaming list's initial events.
    return _metric(
        control_plane,
        "apiserver_watch_list_duration_seconds_count",
        group="raidiam.io",
        resource=resource,
    )


def _listed(control_plane: ControlPlane, resource: str) -> float:
    return _metric(
        control_plane, "apiserver_request_total", verb="LIST", group="raidiam.io", resource=resource
    )


def _operator(control_plane: ControlPlane, log: Path, namespace: str) -> OperatorProcess:
    return OperatorProcess(control_plane.kubeconfig, log, namespaces=[namespace])


def test_the_real_api_server_streams_lists_in_a_namespace_and_cluster_wide(
    control_plane: ControlPlane, kube_namespace: str
) -> None:
    assert _probe(control_plane, kube_namespace) == (200, True)
    assert _probe(control_plane, None) == (200, True)


def test_the_operator_lists_by_streaming_on_an_api_server_that_streams(
    control_plane: ControlPlane, kube_namespace: str, tmp_path: Path
) -> None:
    clients, issuers = (
        _streamed(control_plane, "raidiamclients"),
        _streamed(control_plane, "clusterraidiamissuers"),
    )
    with _operator(control_plane, tmp_path / "operator.log", kube_namespace) as operator:
        # Only kopf asks for ClusterRaidiamIssuers; the probe asks for RaidiamClients.
        wait_for(
            lambda: _streamed(control_plane, "clusterraidiamissuers") > issuers,
            timeout=30,
            what="kopf's streaming list of ClusterRaidiamIssuers",
        )
        # The probe's streaming list, and kopf's own.
        wait_for(
            lambda: _streamed(control_plane, "raidiamclients") >= clients + 2,
            timeout=30,
            what="kopf's streaming list of RaidiamClients",
        )
        assert operator.log_text().count(STREAMING) == 1
    # (LIST requests are not counted here: the namespace controller lists RaidiamClients in every
    # namespace it deletes, and the other tests' namespaces go meanwhile.)


@pytest.fixture(scope="module")
def control_plane_without_watch_list(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ControlPlane]:
    """An API server with the WatchList feature gate off, as 1.33 has it by default."""
    control_plane = ControlPlane(
        tmp_path_factory.mktemp("controlplane-without-watchlist"),
        apiserver_args=["--feature-gates=WatchList=false"],
    )
    control_plane.start()
    try:
        for crd_file in sorted(CRD_DIR.glob("*.yaml")):
            control_plane.apply_crds(crd_file)
        control_plane.kubectl("create", "namespace", "served")
        yield control_plane
    finally:
        control_plane.stop()


def test_an_api_server_with_watch_list_off_refuses_the_probe_and_is_listed_in_pages(
    control_plane_without_watch_list: ControlPlane, tmp_path: Path
) -> None:
    control_plane = control_plane_without_watch_list
    assert _probe(control_plane, "served") == (422, False)

    listed = _listed(control_plane, "raidiamclients")
    with _operator(control_plane, tmp_path / "operator.log", "served") as operator:
        wait_for(
            lambda: _listed(control_plane, "raidiamclients") > listed,
            timeout=30,
            what="kopf's paged listing of RaidiamClients",
        )
        log = operator.log_text()
        assert log.count(PAGED) == 1
        assert "WatchList is off" in log
        assert operator.running
    assert _streamed(control_plane, "raidiamclients") == 0
