"""Private keys checked where their cost stalls no one, within a budget per namespace.

An RSA key's consistency check (`credentials.rsa_key_is_consistent`) is costly for a good key
and far costlier for some malformed ones (docs/benchmarks.md), and it holds the GIL throughout: on
the event loop, or in a thread, it would stop every tenant's renewals and the liveness probe. So
the operator's `KeyChecker`:

- reads what is cheap first, in the event loop (`credentials.read_private_key`, which refuses
  RSA moduli over 4096 bits before any library parses the key);
- runs the costly check in a worker process (`WorkerPool`), started when first needed and
  stopped after a minute without work, and stops a check at the time limit;
- remembers each verdict by digest of the PEM: a Secret whose labels change but whose bytes do
  not costs nothing after its first check, whether the key passed or not;
- lets each namespace have one check in flight, and spend a budget of checking seconds (a
  bucket that refills): beyond it, that namespace's keys wait (`KeyCheckDeferred`, retried when
  the bucket allows) while other namespaces' checks go on.

`InProcessChecks` runs the same check here and now, for a command-line run and for tests.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import logging
import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from raidiam_operator.core.errors import CredentialError, KeyCheckDeferred, TransientError
from raidiam_operator.core.reasons import Reason
from raidiam_operator.protocol.credentials import (
    UsableKey,
    inconsistent_key,
    read_private_key,
    rsa_key_is_consistent,
)

logger = logging.getLogger(__name__)
_K = TypeVar("_K")
_V = TypeVar("_V")


@dataclass(frozen=True)
class KeyCheckSettings:
    """How much checking private keys may cost, and how much of it one namespace may cause."""

    #: seconds one key's check may take before it is stopped (its worker killed) and the key
    #: refused; well above what a good 4096-bit key needs (docs/benchmarks.md)
    time_limit: float = 3.0
    #: worker processes checking at once (each a process of its own, though most of its resident
    #: memory is the libraries it shares with the operator; docs/benchmarks.md)
    workers: int = 1
    #: seconds a worker waits for work before it stops
    idle: float = 60.0
    #: seconds of checking one namespace may spend at once...
    namespace_burst: float = 30.0
    #: ...and regains per second after that
    namespace_rate: float = 0.25
    #: verdicts remembered, by digest of the PEM: keys that passed, and keys that failed
    remembered: int = 10_000
    #: seconds before a check that was stopped at the time limit is tried again (a busy node
    #: may have slowed it; a malformed key is refused until its bytes change)
    recheck_after: float = 600.0


class Verdict(enum.Enum):
    CONSISTENT = "consistent"
    INCONSISTENT = "inconsistent"
    #: stopped at the time limit
    TOO_SLOW = "too slow"
    #: the worker ended without an answer
    UNCHECKED = "unchecked"


@dataclass(frozen=True, slots=True)
class Outcome:
    verdict: Verdict
    #: seconds of CPU the check took (the time limit, for one that was stopped)
    seconds: float


class Checks(Protocol):
    """Where the costly check runs."""

    async def check(self, der: bytes) -> Outcome: ...
    async def aclose(self) -> None: ...


class InProcessChecks:
    """The check here and now, holding the event loop: for a command-line run (one tenant,
    nothing to share) and for tests."""

    async def check(self, der: bytes) -> Outcome:
        started = time.process_time()
        consistent = rsa_key_is_consistent(der)
        verdict = Verdict.CONSISTENT if consistent else Verdict.INCONSISTENT
        return Outcome(verdict, time.process_time() - started)

    async def aclose(self) -> None:
        return None


@dataclass
class _Namespace:
    """One namespace's bucket of checking seconds, and its one check in flight."""

    balance: float
    updated: float
    lock: asyncio.Lock
    users: int = 0


class KeyChecker:
    """Private keys for the refresh engine: read cheaply, checked in `checks`, remembered."""

    def __init__(
        self,
        checks: Checks | None = None,
        settings: KeyCheckSettings | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings or KeyCheckSettings()
        self._checks = checks or InProcessChecks()
        self._clock = clock
        self._keys: OrderedDict[bytes, UsableKey] = OrderedDict()
        # digest -> the failed check, and when it ended
        self._failures: OrderedDict[bytes, tuple[Outcome, float]] = OrderedDict()
        self._pending: dict[bytes, asyncio.Future[Outcome]] = {}
        self._namespaces: dict[str, _Namespace] = {}

    async def private_key(self, pem: bytes, *, what: str, namespace: str) -> UsableKey:
        """The key in `pem`, or a `CredentialError` that says what is wrong with it (`what`
        names it); `namespace` is charged for the check."""
        digest = hashlib.sha256(pem).digest()
        key = self._keys.get(digest)
        if key is not None:
            self._keys.move_to_end(digest)
            return key
        read = read_private_key(pem, what=what)
        if read.needs_check:
            outcome = await self._outcome(digest, read.der, namespace=namespace, what=what)
            if outcome.verdict is not Verdict.CONSISTENT:
                raise _refusal(outcome, what)
        _bounded_put(self._keys, digest, read.key, self.settings.remembered)
        return read.key

    async def aclose(self) -> None:
        await self._checks.aclose()

    async def _outcome(self, digest: bytes, der: bytes, *, namespace: str, what: str) -> Outcome:
        failure = self._failures.get(digest)
        if failure is not None:
            outcome, at = failure
            if (
                outcome.verdict is Verdict.INCONSISTENT
                or self._clock() - at < self.settings.recheck_after
            ):
                return outcome
            del self._failures[digest]
        # The same bytes, named by another client: one check for all, unless that one ended
        # without a verdict (deferred by its own namespace's budget, or cancelled).
        while (pending := self._pending.get(digest)) is not None:
            try:
                return await asyncio.shield(pending)
            except KeyCheckDeferred:
                continue
            except asyncio.CancelledError:
                if not pending.cancelled():
                    raise  # this attempt itself was cancelled
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._pending[digest] = future
        try:
            outcome = await self._check(der, namespace=namespace, what=what)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except BaseException as error:
            future.set_exception(error)
            future.exception()  # retrieved: whoever waits gets it, and nobody need wait
            raise
        finally:
            del self._pending[digest]
        if outcome.verdict is not Verdict.CONSISTENT:
            _bounded_put(self._failures, digest, (outcome, self._clock()), self.settings.remembered)
        future.set_result(outcome)
        return outcome

    async def _check(self, der: bytes, *, namespace: str, what: str) -> Outcome:
        settings, now = self.settings, self._clock()
        room = self._namespaces.get(namespace)
        if room is None:
            room = _Namespace(settings.namespace_burst, now, asyncio.Lock())
            self._namespaces[namespace] = room
        room.users += 1
        try:
            async with room.lock:  # one check in flight per namespace
                now = self._clock()
                room.balance = min(
                    settings.namespace_burst,
                    room.balance + (now - room.updated) * settings.namespace_rate,
                )
                room.updated = now
                if room.balance <= 0:
                    raise self._deferral(namespace, what, room.balance)
                outcome = await self._checks.check(der)
                room.balance -= outcome.seconds
                if outcome.verdict is Verdict.TOO_SLOW:
                    logger.warning(
                        "namespace %s: checking %s took longer than %g s; stopped it",
                        namespace,
                        what,
                        outcome.seconds,
                    )
                return outcome
        finally:
            room.users -= 1
            if room.users == 0 and room.balance >= settings.namespace_burst:
                del self._namespaces[namespace]  # nothing owed, nobody waiting: forget it

    def _deferral(self, namespace: str, what: str, balance: float) -> KeyCheckDeferred:
        settings = self.settings
        # Until the bucket holds a second again: enough for a few good keys.
        retry_after = (1.0 - balance) / settings.namespace_rate
        return KeyCheckDeferred(
            f"{what} is not checked yet: keys in namespace {namespace} have used the time the "
            f"operator gives one namespace for checking keys ({settings.namespace_burst:.0f} s "
            f"at once, then {settings.namespace_rate * 60:.0f} s a minute); it is checked in "
            f"about {retry_after:.0f} s. Malformed RSA keys and keys over 2048 bits take the "
            "longest: fix or replace them in this namespace's Secrets",
            retry_after=retry_after,
        )


def _refusal(outcome: Outcome, what: str) -> CredentialError:
    if outcome.verdict is Verdict.TOO_SLOW:
        return CredentialError(
            f"checking {what} took longer than {outcome.seconds:g} s and was stopped; a good "
            "2048-bit RSA key takes a small fraction of that, so this key is likely malformed: "
            "put a 2048-bit RSA key (or an EC P-256 key) in the Secret",
            reason=Reason.KEY_CHECK_TOO_SLOW,
        )
    if outcome.verdict is Verdict.UNCHECKED:
        return CredentialError(
            f"{what} could not be checked: the process checking it ended without an answer; "
            "the key is likely malformed: generate it again",
            reason=Reason.KEY_CHECK_TOO_SLOW,
        )
    return inconsistent_key(what)


def _bounded_put(cache: OrderedDict[_K, _V], key: _K, value: _V, limit: int) -> None:
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > limit:
        cache.popitem(last=False)


# -- worker processes ---------------------------------------------------------------------

#: seconds a new worker may take to start (Python and cryptography load)
WORKER_START_LIMIT = 30.0
#: the worker's program: see keycheck_worker
WORKER_MODULE = "raidiam_operator.protocol.keycheck_worker"


class WorkerPool:
    """The check in worker processes: at most `settings.workers` at once, in the order asked,
    each stopped at `settings.time_limit` by killing its worker (a new one takes its place)."""

    def __init__(
        self, settings: KeyCheckSettings | None = None, *, command: Sequence[str] | None = None
    ) -> None:
        self.settings = settings or KeyCheckSettings()
        self._command = tuple(command or (sys.executable, "-m", WORKER_MODULE))
        self._slots = asyncio.Semaphore(self.settings.workers)
        self._idle: list[_Worker] = []
        self._retiring: set[asyncio.Task[None]] = set()
        self._workers: set[_Worker] = set()
        #: workers started so far, for tests and logs
        self.started = 0

    async def check(self, der: bytes) -> Outcome:
        async with self._slots:
            outcome = await self._check_in(self._idle_worker() or await self._start(), der)
            if outcome.verdict is Verdict.UNCHECKED:
                # A worker that had checked others may have died of something else (memory):
                # the key is blamed only when a fresh worker dies of it too.
                outcome = await self._check_in(await self._start(), der)
            return outcome

    def _idle_worker(self) -> _Worker | None:
        while self._idle:
            worker = self._idle.pop()
            worker.cancel_retirement()
            if worker.alive:
                return worker
        return None

    async def _check_in(self, worker: _Worker, der: bytes) -> Outcome:
        try:
            outcome = await worker.check(der, time_limit=self.settings.time_limit)
        except BaseException:
            self._retire(worker, kill=True)
            raise
        if worker.alive:
            self._idle.append(worker)
            worker.retire_after(self.settings.idle, lambda: self._retire_idle(worker))
        return outcome

    @property
    def running_workers(self) -> int:
        """Worker processes that have not exited."""
        self._workers = {worker for worker in self._workers if worker.alive}
        return len(self._workers)

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        for worker in idle:
            worker.cancel_retirement()
            self._retire(worker, kill=False)
        await asyncio.gather(*self._retiring, return_exceptions=True)

    async def _start(self) -> _Worker:
        worker = await _Worker.start(self._command)
        self.started += 1
        self._workers.add(worker)
        return worker

    def _retire_idle(self, worker: _Worker) -> None:
        if worker in self._idle:
            self._idle.remove(worker)
            self._retire(worker, kill=False)

    def _retire(self, worker: _Worker, *, kill: bool) -> None:
        task = asyncio.get_running_loop().create_task(worker.stop(kill=kill))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)


class _Worker:
    """One worker process: DER keys in on stdin (a 4-byte length, then the bytes), one verdict
    line out on stdout for each."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self._process = process
        self._retirement: asyncio.TimerHandle | None = None

    @classmethod
    async def start(cls, command: Sequence[str]) -> _Worker:
        try:
            process = await asyncio.create_subprocess_exec(
                *command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
            )
        except OSError as error:
            raise _not_started(f"{type(error).__name__}: {error.strerror}") from None
        worker = cls(process)
        assert process.stdout is not None
        try:
            async with asyncio.timeout(WORKER_START_LIMIT):
                ready = await process.stdout.readline()
        except TimeoutError:
            ready = b""
        if ready != b"ready\n":
            await worker.stop(kill=True)
            raise _not_started("it gave no sign of life")
        return worker

    @property
    def alive(self) -> bool:
        return self._process.returncode is None

    async def check(self, der: bytes, *, time_limit: float) -> Outcome:
        process = self._process
        assert process.stdin is not None
        assert process.stdout is not None
        try:
            process.stdin.write(len(der).to_bytes(4, "big") + der)
            await process.stdin.drain()
            async with asyncio.timeout(time_limit):
                answer = await process.stdout.readline()
        except TimeoutError:
            await self.stop(kill=True)
            return Outcome(Verdict.TOO_SLOW, time_limit)
        except (ConnectionError, BrokenPipeError):
            answer = b""
        words = answer.split()
        if len(words) != 2 or words[0] not in (b"consistent", b"inconsistent"):
            await self.stop(kill=True)
            return Outcome(Verdict.UNCHECKED, time_limit)
        return Outcome(Verdict(words[0].decode()), float(words[1]))

    def retire_after(self, delay: float, retire: Callable[[], None]) -> None:
        self._retirement = asyncio.get_running_loop().call_later(delay, retire)

    def cancel_retirement(self) -> None:
        if self._retirement is not None:
            self._retirement.cancel()
            self._retirement = None

    async def stop(self, *, kill: bool) -> None:
        """End the worker: at once (`kill`), or by closing its input, which it answers by
        exiting once its check is done."""
        process = self._process
        if process.returncode is None:
            if kill:
                process.kill()
            elif process.stdin is not None:
                process.stdin.close()
        await process.wait()


def _not_started(why: str) -> TransientError:
    return TransientError(f"the process that checks private keys did not start: {why}")
