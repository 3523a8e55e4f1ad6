"""Private keys cost the operator a bounded time, off its event loop, within a namespace's budget."""

from __future__ import annotations

import asyncio
import base64
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from raidiam_devenv.hostile_keys import dsa_key_pem, oversized_rsa_key_pem, slow_rsa_key_pem
from raidiam_devenv.pki import TestPKI
from raidiam_operator.core.errors import (
    ConfigurationError,
    CredentialError,
    KeyCheckDeferred,
    TransientError,
)
from raidiam_operator.protocol.client import TokenClient, tls_context
from raidiam_operator.protocol.credentials import (
    TRANSPORT_KEY,
    load_private_key,
    transport_certificate,
)
from raidiam_operator.protocol.keychecks import (
    KeyChecker,
    KeyCheckSettings,
    Outcome,
    Verdict,
    WorkerPool,
)
from raidiam_operator.refresh.engine import EngineSettings, RefreshEngine
from raidiam_operator.refresh.inputs import MAX_CA_CERTIFICATES, config_map_value
from tests.unit.engine_fakes import BODY, KEY, NS, FakeKube
from tests.unit.engine_fakes import Clock as EngineClock
from tests.unit.engine_fakes import Server as EngineServer


class CountingChecks:
    """Stands in for the worker processes: counts the checks asked of it, and answers
    `verdict` after `cost` seconds of (pretend) CPU; `gate`, when given, holds every check until
    it is set."""

    def __init__(
        self,
        verdict: Verdict = Verdict.CONSISTENT,
        *,
        cost: float = 0.05,
        gate: asyncio.Event | None = None,
    ) -> None:
        self.verdict, self.cost, self.gate = verdict, cost, gate
        self.calls = 0
        self.in_flight = 0
        self.most_in_flight = 0

    async def check(self, der: bytes) -> Outcome:
        self.calls += 1
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            if self.gate is not None:
                await self.gate.wait()
            return Outcome(self.verdict, self.cost)
        finally:
            self.in_flight -= 1

    async def aclose(self) -> None:
        return None


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# -- the size bound --------------------------------------------------------------------------


async def test_an_rsa_key_over_4096_bits_is_refused_at_once_and_never_checked() -> None:
    checks = CountingChecks()
    keys = KeyChecker(checks)
    started = time.perf_counter()

    with pytest.raises(CredentialError) as caught:
        await keys.private_key(oversized_rsa_key_pem(), what=TRANSPORT_KEY, namespace="evil")

    assert time.perf_counter() - started < 0.1
    assert checks.calls == 0
    assert caught.value.reason == "KeyTooLarge"
    assert caught.value.message == (
        "the transport certificate's private key is an RSA key of 8192 bits; at most 4096 bits "
        "are accepted, because checking a larger key costs the operator seconds of CPU, and "
        "Open Finance and FAPI use 2048-bit keys: use a 2048-bit key"
    )


def test_the_command_line_refuses_an_rsa_key_over_4096_bits_too() -> None:
    started = time.perf_counter()

    with pytest.raises(CredentialError) as caught:
        load_private_key(oversized_rsa_key_pem(), what="the signing key")

    assert time.perf_counter() - started < 0.1
    assert caught.value.reason == "KeyTooLarge"
    assert "8192 bits; at most 4096 bits are accepted" in caught.value.message


def test_a_dsa_key_is_refused_before_anything_parses_it() -> None:
    # OpenSSL derives a DSA key's public half as it parses it: minutes for this modulus.
    started = time.perf_counter()

    with pytest.raises(CredentialError) as caught:
        load_private_key(dsa_key_pem(60_000), what="the signing key")

    assert time.perf_counter() - started < 0.1
    assert caught.value.message == (
        "the signing key is a DSAPrivateKey; use an RSA, EC or Ed25519 key"
    )


def test_a_transport_certificate_with_an_rsa_key_over_4096_bits_is_refused() -> None:
    signer = ec.generate_private_key(ec.SECP256R1())
    huge = rsa.RSAPublicNumbers(65537, (1 << 8191) | 1).public_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "huge")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(huge)
        .serial_number(1)
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .sign(signer, hashes.SHA256())
    )

    with pytest.raises(CredentialError) as caught:
        transport_certificate((certificate,), signer, now=now)

    assert caught.value.reason == "KeyTooLarge"
    assert caught.value.message == (
        "the transport certificate (subject CN=huge) holds an RSA key of 8192 bits; at most "
        "4096 bits are accepted, and Open Finance and FAPI use 2048-bit keys"
    )


# -- remembered verdicts ---------------------------------------------------------------------


async def test_a_failed_check_is_not_repeated_for_the_same_bytes() -> None:
    checks = CountingChecks(Verdict.INCONSISTENT)
    keys = KeyChecker(checks)
    broken = slow_rsa_key_pem(seed=1)

    for namespace in ("evil", "evil", "elsewhere"):
        with pytest.raises(CredentialError) as caught:
            await keys.private_key(broken, what=TRANSPORT_KEY, namespace=namespace)
        assert caught.value.message == (
            "the transport certificate's private key is not a consistent RSA key (its primes "
            "and exponents do not fit together); generate the key again"
        )
    assert checks.calls == 1

    with pytest.raises(CredentialError):  # new bytes, a new check
        await keys.private_key(slow_rsa_key_pem(seed=2), what=TRANSPORT_KEY, namespace="evil")
    assert checks.calls == 2


async def test_a_good_key_is_checked_once() -> None:
    checks = CountingChecks(Verdict.CONSISTENT)
    keys = KeyChecker(checks)
    pem = slow_rsa_key_pem(seed=3)  # what the pretend check says goes

    first = await keys.private_key(pem, what=TRANSPORT_KEY, namespace="bank")
    again = await keys.private_key(pem, what=TRANSPORT_KEY, namespace="bank")

    assert first is again
    assert checks.calls == 1


async def test_clients_naming_the_same_key_at_once_share_one_check() -> None:
    gate = asyncio.Event()
    checks = CountingChecks(Verdict.INCONSISTENT, gate=gate)
    keys = KeyChecker(checks)
    broken = slow_rsa_key_pem(seed=4)

    attempts = [
        asyncio.create_task(keys.private_key(broken, what=TRANSPORT_KEY, namespace="evil"))
        for _ in range(5)
    ]
    await asyncio.sleep(0)
    gate.set()
    results = await asyncio.gather(*attempts, return_exceptions=True)

    assert checks.calls == 1
    assert all(isinstance(result, CredentialError) for result in results)


async def test_a_check_stopped_at_the_time_limit_is_tried_again_only_after_a_while() -> None:
    clock = Clock()
    checks = CountingChecks(Verdict.TOO_SLOW, cost=3.0)
    keys = KeyChecker(checks, KeyCheckSettings(recheck_after=600), clock=clock)
    pem = slow_rsa_key_pem(seed=5)

    for _ in range(3):
        with pytest.raises(CredentialError) as caught:
            await keys.private_key(pem, what=TRANSPORT_KEY, namespace="evil")
        assert caught.value.reason == "KeyCheckTooSlow"
    clock.now += 601
    with pytest.raises(CredentialError):
        await keys.private_key(pem, what=TRANSPORT_KEY, namespace="evil")

    assert checks.calls == 2


# -- the namespace budget --------------------------------------------------------------------


async def test_a_noisy_namespace_is_held_back_while_another_namespace_is_checked() -> None:
    clock = Clock()
    checks = CountingChecks(Verdict.CONSISTENT, cost=10.0)
    settings = KeyCheckSettings(namespace_burst=15.0, namespace_rate=0.25)
    keys = KeyChecker(checks, settings, clock=clock)

    await keys.private_key(slow_rsa_key_pem(seed=10), what=TRANSPORT_KEY, namespace="noisy")
    await keys.private_key(slow_rsa_key_pem(seed=11), what=TRANSPORT_KEY, namespace="noisy")
    with pytest.raises(KeyCheckDeferred) as caught:  # 15 - 10 - 10: 5 s owed
        await keys.private_key(slow_rsa_key_pem(seed=12), what=TRANSPORT_KEY, namespace="noisy")
    await keys.private_key(slow_rsa_key_pem(seed=13), what=TRANSPORT_KEY, namespace="quiet")

    assert checks.calls == 3
    assert caught.value.reason == "KeyCheckDeferred"
    assert caught.value.retry_after == pytest.approx(24.0)
    assert caught.value.message == (
        "the transport certificate's private key is not checked yet: keys in namespace noisy "
        "have used the time the operator gives one namespace for checking keys (15 s at once, "
        "then 15 s a minute); it is checked in about 24 s. Malformed RSA keys and keys over "
        "2048 bits take the longest: fix or replace them in this namespace's Secrets"
    )
    clock.now += caught.value.retry_after
    await keys.private_key(slow_rsa_key_pem(seed=12), what=TRANSPORT_KEY, namespace="noisy")
    assert checks.calls == 4


async def test_a_namespace_has_one_check_in_flight_and_others_go_beside_it() -> None:
    gate = asyncio.Event()
    checks = CountingChecks(gate=gate)
    keys = KeyChecker(checks)

    noisy = [
        asyncio.create_task(
            keys.private_key(slow_rsa_key_pem(seed=20 + i), what=TRANSPORT_KEY, namespace="noisy")
        )
        for i in range(3)
    ]
    await asyncio.sleep(0.01)
    assert checks.in_flight == 1
    quiet = asyncio.create_task(
        keys.private_key(slow_rsa_key_pem(seed=30), what=TRANSPORT_KEY, namespace="quiet")
    )
    await asyncio.sleep(0.01)
    assert checks.in_flight == 2
    gate.set()
    await asyncio.gather(*noisy, quiet)

    assert checks.calls == 4
    assert checks.most_in_flight == 2


# -- the worker process ----------------------------------------------------------------------


async def test_a_check_over_the_time_limit_is_stopped_and_reported(pki: TestPKI) -> None:
    pool = WorkerPool(KeyCheckSettings(time_limit=0.5))
    keys = KeyChecker(pool)
    try:
        started = time.perf_counter()
        with pytest.raises(CredentialError) as caught:
            await keys.private_key(slow_rsa_key_pem(), what=TRANSPORT_KEY, namespace="evil")
        stopped_after = time.perf_counter() - started

        good = await keys.private_key(
            pki.signing_key("rsa").private_pem, what=TRANSPORT_KEY, namespace="bank"
        )
    finally:
        await keys.aclose()

    assert caught.value.reason == "KeyCheckTooSlow"
    assert caught.value.message.startswith(
        "checking the transport certificate's private key took longer than 0.5 s and was "
        "stopped; a good 2048-bit RSA key takes a small fraction of that"
    )
    assert stopped_after < 5  # the check alone takes seconds; start-up is in this too
    assert good.key_size == 2048
    assert pool.started == 2  # the stopped worker was replaced


async def test_the_worker_tells_a_consistent_key_from_an_inconsistent_one(pki: TestPKI) -> None:
    pool = WorkerPool()
    try:
        good = pki.signing_key("rsa").private_pem
        consistent = await pool.check(load_der(good))
        rsa_key = rsa.generate_private_key(65537, 2048).private_numbers()
        broken = rsa.RSAPrivateNumbers(
            rsa_key.p,
            rsa_key.q,
            rsa_key.d,
            rsa_key.dmp1,
            rsa_key.dmq1,
            (rsa_key.iqmp + 1) % rsa_key.p,
            rsa_key.public_numbers,
        ).private_key(unsafe_skip_rsa_key_validation=True)
        inconsistent = await pool.check(_der(broken))
    finally:
        await pool.aclose()

    assert consistent.verdict is Verdict.CONSISTENT
    assert inconsistent.verdict is Verdict.INCONSISTENT
    assert pool.started == 1
    assert pool.running_workers == 0  # stopped with the pool


async def test_a_worker_without_work_stops_and_the_next_check_starts_another(
    pki: TestPKI,
) -> None:
    pool = WorkerPool(KeyCheckSettings(idle=0.2))
    der = load_der(pki.signing_key("rsa").private_pem)
    try:
        await pool.check(der)
        assert pool.running_workers == 1
        await asyncio.sleep(1.0)
        assert pool.running_workers == 0
        assert (await pool.check(der)).verdict is Verdict.CONSISTENT
    finally:
        await pool.aclose()

    assert pool.started == 2
    assert pool.running_workers == 0


def load_der(pem: bytes) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return _der(serialization.load_pem_private_key(pem, password=None))


def _der(key: object) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(  # type: ignore[attr-defined,no-any-return]
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


# -- CA bundles ------------------------------------------------------------------------------


def test_a_ca_bundle_with_more_certificates_than_the_bound_is_refused() -> None:
    block = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
    config_map = {"data": {"ca.crt": block * (MAX_CA_CERTIFICATES + 1)}}

    with pytest.raises(ConfigurationError) as caught:
        config_map_value(config_map, namespace="bank", name="ca", key="ca.crt")

    assert caught.value.reason == "InputTooLarge"
    assert caught.value.message == (
        "ConfigMap bank/ca key 'ca.crt' (from spec.caBundle) holds 501 PEM blocks, more than "
        "the 500 certificates accepted; put only the CA certificates of the authorization "
        "server in it"
    )


def test_every_certificate_of_a_ca_bundle_is_trusted(tmp_path: Path, pki: TestPKI) -> None:
    other = TestPKI(tmp_path / "other", common_name="another CA")
    bundle = pki.ca_pem + b"# a comment between certificates\n" + other.ca_pem

    context = tls_context(None, bundle)

    names = sorted(
        dict(rdn[0] for rdn in c["subject"])["commonName"] for c in context.get_ca_certs()
    )
    assert [name.split()[0] for name in names] == ["another", "raidiam-devenv"]


# -- what the user sees --------------------------------------------------------------------------


async def test_a_client_held_back_by_its_namespace_budget_says_so_and_keeps_its_token(
    kube: FakeKube, server: EngineServer, clock: EngineClock, pki: TestPKI
) -> None:
    checks = CountingChecks(cost=100.0)  # every check overdraws the namespace's 30 s
    keys = KeyChecker(checks, KeyCheckSettings(namespace_rate=0.25), clock=Clock())
    tokens = TokenClient(transport=httpx.MockTransport(server), clock=clock)
    engine = RefreshEngine(kube, tokens, EngineSettings(seed=1), clock=clock, keys=keys)
    engine.observe(BODY)
    await engine.reconcile(KEY)
    rotated = pki.client_certificate(
        "rotated",
        not_before=clock.now - timedelta(days=1),
        not_after=clock.now + timedelta(days=30),
    )
    kube.put_tls_secret("transport", rotated.cert_pem, rotated.key_pem)

    engine.secret_changed(NS, "transport", "2")  # the watch delivers metadata only
    await engine.reconcile(KEY)

    assert checks.calls == 1
    assert kube.ready()["reason"] == "KeyCheckDeferred"
    assert "keys in namespace payments have used the time" in kube.ready()["message"]
    assert "it is checked in about 284 s" in kube.ready()["message"]
    assert base64.b64decode(kube.secrets["directory-token"]["data"]["access_token"]) == b"token-1"
    assert engine.planned(KEY) <= clock.now + timedelta(seconds=284)


async def test_a_key_shared_with_a_deferred_namespace_is_checked_in_its_own_name() -> None:
    gate = asyncio.Event()
    checks = CountingChecks(cost=40.0, gate=gate)  # one check overdraws the 30 s
    keys = KeyChecker(checks, clock=Clock())
    shared = slow_rsa_key_pem(seed=41)

    def check(pem: bytes, namespace: str) -> asyncio.Task[object]:
        return asyncio.create_task(keys.private_key(pem, what=TRANSPORT_KEY, namespace=namespace))

    first = check(slow_rsa_key_pem(seed=40), "noisy")
    await asyncio.sleep(0)
    behind = check(shared, "noisy")  # waits for noisy's check in flight, then is deferred
    await asyncio.sleep(0)
    beside = check(shared, "quiet")  # waits for that one's verdict on the same bytes
    await asyncio.sleep(0)
    gate.set()
    results = await asyncio.gather(first, behind, beside, return_exceptions=True)

    assert isinstance(results[1], KeyCheckDeferred)
    assert not isinstance(results[2], BaseException)
    assert checks.calls == 2


@pytest.mark.parametrize("line", [b"-----BEGIN A-----", b"-----BEGIN PRIVATE KEY-----"])
def test_a_pem_of_begin_lines_without_their_end_is_refused_in_milliseconds(line: bytes) -> None:
    pem = line * (64 * 1024 // len(line))
    started = time.perf_counter()

    with pytest.raises(CredentialError) as caught:
        load_private_key(pem, what="the signing key")

    assert time.perf_counter() - started < 0.5
    assert caught.value.message.startswith("the signing key could not be read")


def test_a_ca_bundle_of_begin_lines_without_their_end_is_refused_in_milliseconds() -> None:
    line = b"-----BEGIN CERTIFICATE-----"
    started = time.perf_counter()

    with pytest.raises(ConfigurationError) as caught:
        tls_context(None, line * (512 * 1024 // len(line)))

    assert time.perf_counter() - started < 0.5
    assert caught.value.reason == "InvalidCABundle"


@pytest.mark.parametrize("label", [b"EC PRIVATE KEY", b"PRIVATE KEY", b"RSA PRIVATE KEY"])
def test_a_dsa_key_under_another_label_is_refused_unparsed(label: bytes) -> None:
    pem = dsa_key_pem(20_000).replace(b"DSA PRIVATE KEY", label)
    started = time.perf_counter()

    with pytest.raises(CredentialError) as caught:
        load_private_key(pem, what="the signing key")

    assert time.perf_counter() - started < 0.1
    assert caught.value.message.startswith("the signing key could not be read")


@pytest.mark.parametrize("label", [b"EC PRIVATE KEY", b"PRIVATE KEY"])
async def test_an_8192_bit_rsa_key_under_another_label_is_refused_unchecked(label: bytes) -> None:
    checks = CountingChecks()
    pem = oversized_rsa_key_pem().replace(b"RSA PRIVATE KEY", label)

    with pytest.raises(CredentialError) as caught:
        await KeyChecker(checks).private_key(pem, what=TRANSPORT_KEY, namespace="evil")

    assert checks.calls == 0
    assert "could not be read" in caught.value.message


@pytest.mark.parametrize(
    ("command", "why"),
    [
        (["/nonexistent/python"], "FileNotFoundError"),
        ([sys.executable, "-c", "pass"], "it gave no sign of life"),
    ],
)
async def test_a_worker_that_does_not_start_is_the_operators_trouble_not_the_keys(
    command: list[str], why: str
) -> None:
    pool = WorkerPool(command=command)

    with pytest.raises(TransientError) as caught:
        await pool.check(b"\x30\x00")

    assert caught.value.message.startswith("the process that checks private keys did not start")
    assert why in caught.value.message
    assert pool.running_workers == 0
