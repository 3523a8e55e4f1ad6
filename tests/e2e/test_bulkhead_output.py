"""A huge token times a multiplying template costs only its own tenant (issue 22, point 2).

The hostile tenant's server answers with tokens far longer than any workload could send, and its
clients' templates repeat `${access_token}` 273 times in each of 32 keys. Before anything is
built, the operator refuses the token by its size, or the template by the size it would render
to; its memory stays under the chart's limit, and the good tenant beside it, sampled every
second, never notices.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from raidiam_devenv.authserver import AuthServer
from raidiam_devenv.controlplane import ControlPlane
from raidiam_devenv.pki import TestPKI

from .bulkhead_helpers import GoodTenant, two_tenants
from .fault_helpers import client_id_of, ready_and_degraded, record_figure, wait_all

pytestmark = [pytest.mark.kube, pytest.mark.authserver]

#: the chart's memory limit (charts/raidiam-token-operator/values.yaml, resources.limits.memory)
MEMORY_LIMIT = 256 * 1024 * 1024
#: each key at the CRD's 4096-character limit, as many keys as it allows: `${access_token}` is 15
MULTIPLYING_TEMPLATE = {f"k{i}": "${access_token}" * 273 for i in range(32)}
#: how long the hostile clients keep trying while the good tenant is sampled: two 20 s lifetimes
HOSTILE_FOR_S = 45


def _token_response(length: int) -> dict[str, Any]:
    """A 200 answer carrying an opaque token of `length` characters."""
    body = {"access_token": "t" * length, "token_type": "Bearer", "expires_in": 300}
    return {"mode": "response", "status": 200, "body": json.dumps(body)}


def test_a_huge_token_with_a_multiplying_template_is_refused_before_it_is_built(
    control_plane: ControlPlane,
    auth_server: AuthServer,
    test_pki: TestPKI,
    kube_api: Any,
    tmp_path: Path,
) -> None:
    with two_tenants(control_plane, auth_server, test_pki, kube_api, tmp_path) as (hostile, good):
        with GoodTenant(good, clients=3, token_ttl=20) as tenant:
            template = {"tokenSecret": {"template": {"data": MULTIPLYING_TEMPLATE}}}
            # 200 KiB: refused as it arrives. 16 KiB, the longest accepted: 137 MiB rendered,
            # refused before rendering.
            for name, length in (("huge", 200 * 1024), ("longest", 16 * 1024)):
                hostile.tls_client(name, **template)
                hostile.auth.set_fault(
                    client_id=client_id_of(hostile, name), **_token_response(length)
                )
            conditions = wait_all(
                hostile,
                ["huge", "longest"],
                lambda world, name: (
                    ready_and_degraded(world, name)[0].get("reason")
                    in ("InvalidTokenResponse", "TemplateRenderFailed")
                ),
                timeout=40,
                what="a condition on each hostile client",
            )
            time.sleep(max(0.0, HOSTILE_FOR_S - conditions))
            peak = hostile.operator.peak_rss_bytes()
        served = tenant.stop()

        huge, _ = ready_and_degraded(hostile, "huge")
        longest, _ = ready_and_degraded(hostile, "longest")
        record_figure(
            "huge_token_times_template",
            {"operator_peak_rss_mib": round(peak / 2**20, 1), **served.figures()},
        )
        assert (huge["status"], huge["reason"]) == ("False", "InvalidTokenResponse")
        assert "the access token is 200 KiB, more than the 16 KiB accepted" in huge["message"]
        assert (longest["status"], longest["reason"]) == ("False", "TemplateRenderFailed")
        assert longest["message"].startswith(
            "spec.tokenSecret.template.data would render to 136.5 MiB, more than the"
        )
        assert "data[k0] alone would be 4.3 MiB" in longest["message"]
        assert hostile.secret("huge-token") is None
        assert hostile.secret("longest-token") is None
        assert peak < MEMORY_LIMIT, f"the operator's peak RSS was {peak / 2**20:.0f} MiB"
        served.assert_unharmed(min_refreshes=3)
