"""Faults: nothing is lost, nothing leaks.

The authorization server goes down, rate-limits, hangs and answers garbage; the API server and
etcd restart; the operator is SIGKILLed mid-wave; users edit and share token Secrets. Each case
runs on the real control plane and the test authorization server with short-lived tokens, and
every test ends with the leak canary over the operator's log, Events, statuses and metrics.

Figures measured here (request counts, recovery times) go to build/fault-figures.json;
docs/reliability.md quotes them.
"""

from __future__ import annotations

import base64
import itertools
import math
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import jwt
import pytest

from raidiam_devenv.authserver import AuthServer
from raidiam_devenv.controlplane import ControlPlane
from raidiam_devenv.pki import TestPKI

from .conftest import GROUP, PLURAL, VERSION, World, wait_for
from .fault_helpers import (
    assert_nothing_leaked,
    bulk_tls_clients,
    client_id_of,
    drop_namespace,
    is_ready,
    new_namespace,
    ready_and_degraded,
    record_figure,
    request_refresh,
    running_world,
    token_exp,
    token_requests,
    tokens_by_client,
    wait_all,
)

pytestmark = [pytest.mark.kube, pytest.mark.authserver]

#: the engine's backoff ceiling (schedule.BACKOFF_CAP)
BACKOFF_CAP = 60.0
OUTAGE = 30


@pytest.fixture
def fw(world: World) -> Iterator[World]:
    """The per-test world, with the leak canary over everything the operator published."""
    yield world
    assert_nothing_leaked(world, tokens=tokens_by_client(world).values())


def _now() -> datetime:
    return datetime.now(UTC)


# -- 1. the authorization server is down for longer than a token lives ----------------------


def test_an_outage_longer_than_the_token_lifetime_keeps_the_last_token_and_recovers_within_one_backoff_cap(
    fw: World,
) -> None:
    world, ttl = fw, 16
    names = ["down-a", "down-b", "down-c"]
    for name in names:
        world.tls_client(name, token_ttl=ttl)
    world.jwt_client("down-jwt", token_ttl=ttl)
    names.append("down-jwt")
    wait_all(world, names, is_ready, timeout=30, what="every client Ready")
    ids = {name: client_id_of(world, name) for name in names}
    last_good = {name: world.token(name) for name in names}
    pid = world.operator.pid

    outage_started = _now()
    world.auth.set_fault(mode="status", status=503)  # every request, no Retry-After
    degraded_while_valid: set[str] = set()

    def expired(world: World, name: str) -> bool:
        ready, degraded = ready_and_degraded(world, name)
        if degraded.get("status") == "True" and ready.get("status") == "True":
            assert degraded["reason"] == "AuthorizationServerUnavailable"
            degraded_while_valid.add(name)
        return ready.get("reason") == "TokenExpired"

    wait_all(world, names, expired, timeout=3 * ttl, what="Ready=False TokenExpired")

    assert degraded_while_valid == set(names), "Degraded came first, while the token was valid"
    for name in names:
        ready, degraded = ready_and_degraded(world, name)
        assert ready["status"] == "False"
        assert "the token in the Secret expired at" in ready["message"]
        assert "refreshing failed: the authorization server answered HTTP 503" in ready["message"]
        assert (degraded["status"], degraded["reason"]) == (
            "True",
            "AuthorizationServerUnavailable",
        )
        assert world.token(name) == last_good[name], "the last good token stays in the Secret"
        assert world.client(name)["status"]["failedAttempts"] >= 1
    # Stay down for twice the token lifetime, then count what the backoff let through.
    time.sleep(max(0.0, (outage_started + timedelta(seconds=2 * ttl) - _now()).total_seconds()))
    world.auth.clear_faults()
    outage_ended = _now()
    recovery = wait_all(
        world,
        names,
        lambda w, n: is_ready(w, n) and w.token(n) != last_good[n],
        timeout=BACKOFF_CAP + 15,
        what="every client Ready again",
    )

    during = {
        name: [
            r
            for r in token_requests(world.auth, ids[name])
            if outage_started <= r.started <= outage_ended
        ]
        for name in names
    }
    counts = {name: len(requests) for name, requests in during.items()}
    outage_seconds = (outage_ended - outage_started).total_seconds()
    record_figure(
        "outage",
        {
            "token_ttl_s": ttl,
            "outage_s": round(outage_seconds, 1),
            "requests_per_client_during_outage": sorted(counts.values()),
            "recovery_s_after_server_returned": round(recovery, 1),
        },
    )
    for name, requests in during.items():
        assert all(r.status == "503" for r in requests)
        # Full jitter between 1 s and a doubling ceiling: about log2(outage) attempts. A fixed
        # 1 s retry would have sent ~outage_seconds.
        assert 2 <= len(requests) <= 10, f"{name} sent {len(requests)} requests in the outage"
    assert recovery <= BACKOFF_CAP + 5, f"recovery took {recovery:.1f} s"
    assert world.operator.running
    assert world.operator.pid == pid, "the operator never restarted"


# -- 2. rate limiting ------------------------------------------------------------------------


def test_rate_limiting_is_honoured_with_retry_after_in_seconds_and_as_an_http_date(
    fw: World,
) -> None:
    world = fw
    world.tls_client("limited-sec", token_ttl=120)
    world.tls_client("limited-date", token_ttl=120)
    wait_all(world, ["limited-sec", "limited-date"], is_ready, timeout=30, what="Ready")
    sec_id, date_id = client_id_of(world, "limited-sec"), client_id_of(world, "limited-date")
    tokens = {name: world.token(name) for name in ("limited-sec", "limited-date")}
    retry_after = 4
    not_before = datetime.fromtimestamp(math.floor(time.time()) + 8, UTC)
    limited_from = _now()
    world.auth.set_fault(mode="status", status=429, retry_after=str(retry_after), client_id=sec_id)
    world.auth.set_fault(
        mode="status",
        status=429,
        retry_after=format_datetime(not_before, usegmt=True),
        client_id=date_id,
    )

    request_refresh(world, "limited-sec")
    request_refresh(world, "limited-date")
    wait_for(
        lambda: token_requests(world.auth, sec_id)[-1].status == "429",
        timeout=10,
        what="the first 429",
    )
    # Asking again by hand does not jump the queue: Retry-After always holds.
    request_refresh(world, "limited-sec")
    degraded = world.wait_reason(
        "limited-sec", "AuthorizationServerUnavailable", kind="Degraded", timeout=10
    )
    assert f"HTTP 429; it asked to retry after {retry_after} s" in degraded["message"]
    assert world.condition("limited-sec")["status"] == "True", "the old token is still valid"
    time.sleep(max(0.0, (limited_from + timedelta(seconds=20) - _now()).total_seconds()))
    world.auth.clear_faults()
    limited_until = _now()
    wait_all(
        world,
        ["limited-sec", "limited-date"],
        lambda w, n: is_ready(w, n) and w.token(n) != tokens[n],
        timeout=BACKOFF_CAP + 10,
        what="a new token after the rate limit",
    )

    def limited(client_id: str) -> list[datetime]:
        return [
            r.started
            for r in token_requests(world.auth, client_id)
            if limited_from <= r.started <= limited_until
        ]

    seconds_requests, date_requests = limited(sec_id), limited(date_id)
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(seconds_requests)]
    record_figure(
        "rate_limit",
        {
            "period_s": round((limited_until - limited_from).total_seconds(), 1),
            "retry_after_seconds": {
                "retry_after_s": retry_after,
                "requests": len(seconds_requests),
                "shortest_gap_s": round(min(gaps), 2),
            },
            "retry_after_http_date": {
                "requests": len(date_requests),
                "first_after_the_date_s": round((date_requests[1] - not_before).total_seconds(), 2),
            },
        },
    )
    assert len(seconds_requests) >= 2
    assert min(gaps) >= retry_after - 0.2, f"a request came {min(gaps):.2f} s after a 429"
    assert len(seconds_requests) <= 20 / retry_after + 1
    assert date_requests[0] < not_before
    assert date_requests[1] >= not_before - timedelta(seconds=0.2), (
        "no request before the HTTP-date in Retry-After"
    )
    assert len(date_requests) <= 8


# -- 3. a slow or hanging server -----------------------------------------------------------------


def test_a_hanging_or_slow_token_endpoint_times_out_without_holding_up_other_clients(
    fw: World,
) -> None:
    world = fw
    for name in ("hanging", "slow", "sluggish"):
        world.tls_client(name)
    world.tls_client("steady", token_ttl=10)
    names = ["hanging", "slow", "sluggish", "steady"]
    wait_all(world, names, is_ready, timeout=30, what="Ready")
    ids = {name: client_id_of(world, name) for name in names}
    old = {name: world.token(name) for name in names}
    world.auth.set_fault(mode="hang", client_id=ids["hanging"])
    world.auth.set_fault(mode="slow", delay_ms=15_000, client_id=ids["slow"])
    world.auth.set_fault(mode="slow", delay_ms=3_000, client_id=ids["sluggish"])
    steady_requests = world.requests_for(ids["steady"])

    asked = time.monotonic()
    for name in ("hanging", "slow", "sluggish"):
        request_refresh(world, name)
    timed_out: dict[str, float] = {}
    steady_tokens = {old["steady"]}
    while len(timed_out) < 2:
        assert time.monotonic() - asked < 30, f"no timeout after 30 s: {timed_out}"
        for name in ("hanging", "slow"):
            _, degraded = ready_and_degraded(world, name)
            if name not in timed_out and degraded.get("status") == "True":
                timed_out[name] = time.monotonic() - asked
        steady = world.token("steady")
        assert steady is not None
        assert token_exp(steady) > _now(), "the steady client never holds an expired token"
        steady_tokens.add(steady)
        time.sleep(0.25)

    record_figure("timeouts_s", {name: round(s, 1) for name, s in timed_out.items()})
    for name in ("hanging", "slow"):
        ready, degraded = ready_and_degraded(world, name)
        assert degraded["reason"] == "AuthorizationServerUnreachable"
        assert "request to" in degraded["message"]
        assert "timed out after 10 s" in degraded["message"]
        assert ready["status"] == "True", "the old token is kept while it is valid"
        assert world.token(name) == old[name]
        assert timed_out[name] >= 9.5, "the 10 s timeout, not earlier"
    assert len(steady_tokens) >= 2, "the steady client kept refreshing during the hang"
    assert world.requests_for(ids["steady"]) > steady_requests
    assert is_ready(world, "sluggish"), "a 3 s answer is within the timeout"
    assert world.token("sluggish") != old["sluggish"]


# -- 4. garbage from the server ----------------------------------------------------------------


def _bound_to_someone_else(world: World) -> str:
    other = world.pki.client_certificate("someone-else")
    now = int(time.time())
    claims = {
        "iss": world.auth.issuer,
        "sub": "someone-else",
        "exp": now + 300,
        "iat": now,
        "cnf": {"x5t#S256": other.x5t_s256},
    }
    key = world.pki.signing_key("ec")
    return jwt.encode(claims, key.private_key, algorithm="ES256")


FORGED_LOG_LINE = "[2000-01-01 00:00:00,000] raidiam_operator.eng [INFO    ] forged"
GARBAGE: dict[str, tuple[dict[str, Any], str, str]] = {
    # case: (fault, Degraded reason, message fragment)
    "an HTML 502 from a proxy": (
        {
            "mode": "status",
            "status": 502,
            "body": "<html><body><h1>502 Bad Gateway</h1></body></html>",
            "content_type": "text/html",
        },
        "AuthorizationServerUnavailable",
        "the authorization server answered HTTP 502",
    ),
    "a 503 asking to retry after 31 000 years": (
        {"mode": "status", "status": 503, "retry_after": "999999999999"},
        "AuthorizationServerUnavailable",
        "the authorization server answered HTTP 503",
    ),
    "an OAuth error code with control characters": (
        {"mode": "status", "status": 400, "error": "invalid_client\u001b[31m\nFAKE"},
        "InvalidTokenResponse",
        "the authorization server answered HTTP 400 without an OAuth error code",
    ),
    "an error_description that forges a log line": (
        {
            "mode": "response",
            "status": 400,
            "body": {
                "error": "invalid_client",
                "error_description": "no\n" + FORGED_LOG_LINE + " " + "x" * 5000,
            },
        },
        "invalid_client",
        "rejected the token request with invalid_client (HTTP 400): no [2000-01-01",
    ),
    "an HTML 404 without an OAuth error": (
        {
            "mode": "response",
            "status": 404,
            "body": "<h1>Not Found</h1>",
            "content_type": "text/html",
        },
        "InvalidTokenResponse",
        "answered HTTP 404 without an OAuth error code; check the token endpoint URL",
    ),
    "a 200 that is not JSON": (
        {"mode": "response", "status": 200, "body": "<html>ok</html>", "content_type": "text/html"},
        "InvalidTokenResponse",
        "the token response is not JSON",
    ),
    "a 200 with a JSON array": (
        {"mode": "response", "status": 200, "body": "[1, 2, 3]"},
        "InvalidTokenResponse",
        "the token response is not a JSON object",
    ),
    "a 200 without access_token": (
        {"mode": "response", "status": 200, "body": {"token_type": "Bearer", "expires_in": 300}},
        "InvalidTokenResponse",
        "the token response has no access_token",
    ),
    "a token_type other than Bearer": (
        {
            "mode": "response",
            "status": 200,
            "body": {"access_token": "opaque-mac-token", "token_type": "mac", "expires_in": 300},
        },
        "InvalidTokenResponse",
        "the token response has token_type 'mac'; only Bearer is supported",
    ),
    "expires_in -5": (
        {
            "mode": "response",
            "status": 200,
            "body": {"access_token": "opaque-negative", "token_type": "Bearer", "expires_in": -5},
        },
        "InvalidTokenResponse",
        "the token response has expires_in -5; it must be positive",
    ),
    "expires_in abc": (
        {
            "mode": "response",
            "status": 200,
            "body": {"access_token": "opaque-abc", "token_type": "Bearer", "expires_in": "abc"},
        },
        "InvalidTokenResponse",
        "the token response has expires_in 'abc'; expected a number of seconds",
    ),
    "expires_in 1e12": (
        {
            "mode": "response",
            "status": 200,
            "body": '{"access_token": "opaque-forever", "token_type": "Bearer", "expires_in": 1e12}',
        },
        "InvalidTokenResponse",
        "the token lifetime of 1000000000000 s is longer than 366 days",
    ),
    "a body of 4 MiB": (
        {"mode": "response", "status": 200, "body": "x" * 1024, "repeat": 4096},
        "InvalidTokenResponse",
        "declares 4194304 bytes, more than the 1048576 we accept",
    ),
    "a token bound to another certificate": (
        {"mode": "response", "status": 200},  # body filled in by the fixture
        "InvalidTokenResponse",
        "the access token is bound to another certificate",
    ),
}


@pytest.fixture(scope="module")
def garbage(
    control_plane: ControlPlane,
    auth_server: AuthServer,
    test_pki: TestPKI,
    kube_api: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[World, dict[str, str], dict[str, str]]]:
    """One client per kind of garbage, each Ready first, then answered with its garbage."""
    namespace = new_namespace(control_plane, "garbage")
    log = tmp_path_factory.mktemp("garbage") / "operator.log"
    try:
        with running_world(control_plane, auth_server, test_pki, kube_api, namespace, log) as world:
            names = {case: f"garbage-{i}" for i, case in enumerate(GARBAGE)}
            for name in names.values():
                world.tls_client(name)
            wait_all(world, names.values(), is_ready, timeout=60, what="Ready")
            tokens = {name: str(world.token(name)) for name in names.values()}
            for case, name in names.items():
                fault = dict(GARBAGE[case][0])
                if case == "a token bound to another certificate":
                    fault["body"] = {
                        "access_token": _bound_to_someone_else(world),
                        "token_type": "Bearer",
                        "expires_in": 300,
                    }
                world.auth.set_fault(**fault, client_id=client_id_of(world, name))
                request_refresh(world, name)
            yield world, names, tokens
            assert_nothing_leaked(world, tokens=tokens.values())
    finally:
        drop_namespace(control_plane, namespace)


@pytest.mark.parametrize("case", list(GARBAGE))
def test_garbage_from_the_server_gets_a_clear_condition_and_the_old_token_is_kept(
    garbage: tuple[World, dict[str, str], dict[str, str]], case: str
) -> None:
    world, names, tokens = garbage
    name = names[case]
    _, reason, fragment = GARBAGE[case]

    degraded = world.wait_reason(name, reason, kind="Degraded", timeout=30)

    assert degraded["status"] == "True"
    assert fragment in degraded["message"]
    assert world.condition(name)["status"] == "True", "Ready: the old token is still valid"
    assert world.token(name) == tokens[name], "the old token is kept"
    warnings = wait_for(
        lambda: [e for e in world.events(name) if e.type == "Warning" and e.reason == reason],
        timeout=10,
        what="a Warning event",
    )
    assert fragment in warnings[0].message
    # A server's text is kept up to 1,200 characters in the condition, and cut to fit an
    # Event's 1 KiB there.
    assert len(degraded["message"]) < 2048, "server text is bounded"
    assert len(warnings[0].message.encode()) <= 1024, "an Event note fits 1 KiB"
    log = world.operator.log_text()
    assert not any(line.startswith(FORGED_LOG_LINE) for line in log.splitlines())


# -- 5, 6. the API server or etcd restarts -----------------------------------------------------


@pytest.mark.parametrize("component", ["kube-apiserver", "etcd"])
def test_after_a_control_plane_restart_due_refreshes_happen_at_once_and_watches_reconnect(
    fw: World, control_plane: ControlPlane, component: str
) -> None:
    world = fw
    world.tls_client("due", token_ttl=20)
    world.tls_client("inflight", token_ttl=300)
    wait_all(world, ["due", "inflight"], is_ready, timeout=30, what="Ready")
    pid = world.operator.pid
    due_token, inflight_token = world.token("due"), world.token("inflight")
    inflight_id = client_id_of(world, "inflight")
    inflight_requests = world.requests_for(inflight_id)
    # A token request that is answered while the component is down: the Secret write fails.
    world.auth.set_fault(mode="slow", delay_ms=3_000, client_id=inflight_id)
    request_refresh(world, "inflight")
    wait_for(
        lambda: world.requests_for(inflight_id) > inflight_requests,
        timeout=10,
        what="the in-flight request to reach the server",
    )

    stop, start = (
        (control_plane.stop_apiserver, control_plane.start_apiserver)
        if component == "kube-apiserver"
        else (control_plane.stop_etcd, control_plane.start_etcd)
    )
    stop()
    try:
        time.sleep(OUTAGE)  # the "due" client's renewal (~13 s) and expiry (20 s) fall in here
    finally:
        restarting = time.monotonic()
        start()
    ready_after = time.monotonic() - restarting

    due_after = wait_for(
        lambda: (
            (time.monotonic() - restarting) if world.token("due") not in (None, due_token) else None
        ),
        timeout=45,
        what="the renewal that came due during the outage",
    )

    def inflight_landed() -> bool:
        status = world.client("inflight").get("status", {})
        secret = world.secret("inflight-token")
        token = world.token("inflight")
        return bool(
            token not in (None, inflight_token)
            and base64.b64decode(secret.data["expires_at"]).decode() == status.get("expiresAt")
        )

    wait_for(
        inflight_landed,
        timeout=30,
        what="the token answered during the outage to reach the Secret",
    )
    assert world.requests_for(inflight_id) == inflight_requests + 1, "no second request needed"
    record_figure(
        f"restart_{component}",
        {
            "outage_s": OUTAGE,
            "component_ready_s_after_start": round(ready_after, 1),
            "due_renewal_s_after_start": round(float(due_after), 1),
        },
    )
    assert due_after <= 30
    assert world.operator.running
    assert world.operator.pid == pid, "no operator restart"
    wait_all(world, ["due", "inflight"], is_ready, timeout=15, what="Ready after the restart")
    # The watches are back: a RaidiamClient change and a Secret deletion are both noticed.
    token = world.token("due")
    request_refresh(world, "due")
    wait_for(
        lambda: world.token("due") not in (None, token),
        timeout=15,
        what="the RaidiamClient watch",
    )
    token = world.token("inflight")
    world.core.delete_namespaced_secret("inflight-token", world.namespace)
    wait_for(lambda: world.token("inflight") == token, timeout=15, what="the Secret watch")


# -- 7. SIGKILL in the middle of a refresh wave --------------------------------------------------


def _statuses(world: World) -> dict[str, dict[str, Any]]:
    items = world.custom.list_namespaced_custom_object(GROUP, VERSION, world.namespace, PLURAL)
    return {item["metadata"]["name"]: item.get("status", {}) for item in items["items"]}


def _all_ready(world: World, names: list[str]) -> bool:
    statuses = _statuses(world)
    for name in names:
        conditions = {c["type"]: c for c in statuses.get(name, {}).get("conditions", [])}
        if conditions.get("Ready", {}).get("status") != "True":
            return False
    return True


def test_a_sigkill_in_the_middle_of_a_refresh_wave_of_200_clients_loses_no_token(
    fw: World,
) -> None:
    # 60 s tokens: on a busy 2-core machine the first 200 tokens can take 35 s, and with shorter
    # tokens the first clients renew before the last are Ready, which muddles the counts.
    world, ttl, count = fw, 60, 200
    names = [f"wave-{i:03d}" for i in range(count)]
    ids = bulk_tls_clients(world, names, token_ttl=ttl)
    wait_for(lambda: _all_ready(world, names), timeout=120, what="200 clients Ready", interval=1)
    first = tokens_by_client(world)
    assert set(first) == set(names)

    def requests() -> int:
        by_client = world.auth.stats()["token_requests_by_client"]
        return sum(int(by_client.get(i, 0)) for i in ids.values())

    assert requests() == count, "one request per client for the first token"
    # Watch every client's Secret from now on: never a moment without a valid token.
    longest_without: dict[str, float] = {}
    missing_since: dict[str, datetime] = {}

    def watch_secrets() -> dict[str, str]:
        now, tokens = _now(), tokens_by_client(world)
        for name in names:
            token = tokens.get(name)
            valid = token is not None and token_exp(token) > now
            if valid:
                missing_since.pop(name, None)
            else:
                since = missing_since.setdefault(name, now)
                longest_without[name] = (now - since).total_seconds()
        return tokens

    # Kill once about a third of the second wave has been requested.
    wave_started: list[float] = []

    def a_third_requested() -> bool:
        watch_secrets()
        requested = requests()
        if requested > count and not wave_started:
            wave_started.append(time.monotonic())
        return requested >= count + count // 3

    wait_for(a_third_requested, timeout=2 * ttl, what="the refresh wave", interval=0.2)
    world.operator.stop(kill=True)
    requested_at_kill = requests() - count
    tokens_at_kill = watch_secrets()
    written_at_kill = sum(1 for n in names if tokens_at_kill.get(n) != first[n])
    world.operator.start()

    wait_for(
        lambda: (lambda t: all(t.get(n) != first[n] for n in names))(watch_secrets()),
        timeout=ttl,
        what="every client renewed after the restart",
        interval=0.5,
    )
    wave = requests() - count
    wave_seconds = time.monotonic() - wave_started[0]
    in_flight = requested_at_kill - written_at_kill
    record_figure(
        "sigkill_wave",
        {
            "clients": count,
            "token_ttl_s": ttl,
            "requested_before_kill": requested_at_kill,
            "written_before_kill": written_at_kill,
            "wave_requests_total": wave,
            "wave_s_including_restart": round(wave_seconds, 1),
            "longest_without_valid_token_s": max(longest_without.values(), default=0.0),
        },
    )
    assert wait_for(lambda: _all_ready(world, names), timeout=30, what="all Ready", interval=1)
    now = _now()
    final = tokens_by_client(world)
    assert all(token_exp(final[n]) > now for n in names), "every token valid afterwards"
    assert max(longest_without.values(), default=0.0) < ttl, "never a lifetime without a token"
    # Each client asks once in the wave, and again only if its answer died with the operator.
    # (The next wave starts 2/3 of a lifetime after a client's renewal: not yet.)
    assert wave_seconds < 2 * ttl / 3 * 0.9, "the wave took too long to count it cleanly"
    assert wave <= count + in_flight, (
        f"{wave} requests for {count} renewals with {in_flight} in flight at the kill"
    )


# -- 8. a token Secret edited by hand ----------------------------------------------------------


def test_a_token_secret_edited_by_hand_is_restored_from_the_current_token_without_a_new_request(
    fw: World,
) -> None:
    world = fw
    world.tls_client("edited")
    world.wait_ready("edited")
    client_id = client_id_of(world, "edited")
    original = world.secret("edited-token")
    requests = world.requests_for(client_id)

    def edit(change: Any) -> None:
        secret = world.secret("edited-token")
        change(secret)
        world.core.replace_namespaced_secret("edited-token", world.namespace, secret)

    def restored() -> bool:
        secret = world.secret("edited-token")
        return bool(
            secret is not None
            and secret.data == original.data
            and secret.metadata.annotations == original.metadata.annotations
            and secret.metadata.labels == original.metadata.labels
            and [r.uid for r in secret.metadata.owner_references or []]
            == [r.uid for r in original.metadata.owner_references]
        )

    edits = {
        "a replaced token": lambda s: s.data.update(
            access_token=base64.b64encode(b"not-a-token").decode()
        ),
        "a removed key": lambda s: s.data.pop("expires_at"),
        "a changed expiry annotation": lambda s: s.metadata.annotations.update(
            {"raidiam.io/expires-at": "2099-01-01T00:00:00Z"}
        ),
        "a changed label": lambda s: s.metadata.labels.update(
            {"app.kubernetes.io/managed-by": "someone"}
        ),
    }
    for what, change in edits.items():
        edit(change)
        wait_for(restored, timeout=10, what=f"the Secret restored after {what}")

    assert world.requests_for(client_id) == requests, "restored from memory, no new request"
    assert world.condition("edited")["status"] == "True"
    assert "restored the token Secret edited-token" in world.operator.log_text()
    # Without our controller reference the Secret is no longer ours: it is left alone (never
    # adopted), and the condition says how to get it back.
    edit(lambda s: setattr(s.metadata, "owner_references", None))
    ready = world.wait_reason("edited", "SecretConflict", timeout=10)
    assert "is not owned by this RaidiamClient; it is left untouched. Delete it" in ready["message"]
    assert not world.secret("edited-token").metadata.owner_references
    world.core.delete_namespaced_secret("edited-token", world.namespace)
    wait_for(restored, timeout=10, what="the Secret re-created after deleting the orphan")
    world.wait_ready("edited", timeout=10)
    assert world.requests_for(client_id) == requests


# -- 9. two clients, one token Secret -------------------------------------------------------------


def test_two_clients_naming_the_same_token_secret_the_first_keeps_it_the_second_gets_secret_conflict(
    fw: World,
) -> None:
    world = fw
    world.tls_client("first", token_ttl=12, tokenSecret={"name": "shared-token"})
    world.wait_ready("first")
    first_uid = world.client("first")["metadata"]["uid"]

    def shared_token() -> str | None:
        secret = world.secret("shared-token")
        if secret is None:
            return None
        return base64.b64decode(secret.data["access_token"]).decode()

    def owner_uid() -> str:
        return str(world.secret("shared-token").metadata.owner_references[0].uid)

    world.tls_client("second", tokenSecret={"name": "shared-token"})
    second_id = client_id_of(world, "second")

    ready = world.wait_reason("second", "SecretConflict", timeout=15)
    assert ready["status"] == "False"
    assert (
        f"Secret {world.namespace}/shared-token already exists and is not owned by this "
        "RaidiamClient; it is left untouched" in ready["message"]
    )
    assert world.condition("second", "Degraded")["reason"] == "SecretConflict"
    assert any(e.reason == "SecretConflict" for e in world.events("second"))
    # The first keeps renewing the Secret, and keeps guarding it against edits.
    token = shared_token()
    wait_for(lambda: shared_token() not in (None, token), timeout=20, what="a renewal by first")
    assert owner_uid() == first_uid
    token = shared_token()
    secret = world.secret("shared-token")
    secret.data["access_token"] = base64.b64encode(b"tampered").decode()
    world.core.replace_namespaced_secret("shared-token", world.namespace, secret)
    wait_for(lambda: shared_token() == token, timeout=10, what="first to restore its Secret")
    assert owner_uid() == first_uid
    assert world.requests_for(second_id) == 0, "the second never asked for a token"
    assert world.condition("second")["reason"] == "SecretConflict"
    # Deleting the second leaves the first in charge of its Secret.
    world.custom.delete_namespaced_custom_object(GROUP, VERSION, world.namespace, PLURAL, "second")
    time.sleep(1)
    token = shared_token()
    world.core.delete_namespaced_secret("shared-token", world.namespace)
    wait_for(lambda: shared_token() == token, timeout=10, what="first to restore after deletion")
    assert owner_uid() == first_uid
    assert world.condition("first")["status"] == "True"
