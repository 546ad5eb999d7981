"""Leader election over a ``coordination.k8s.io/v1`` Lease (kubernetes-asyncio's own).

Every replica watches and serves; only the leader runs the given work (the status
writer).  After losing the lease a replica competes again.

The guarantee: an old leader has stopped writing before a new one can start.  A follower
takes over only once the lease has gone unrenewed for ``lease_duration_s``, counted from
when it saw the last renewal, so from after that renewal was sent.  The leader keeps a
write fence on its side of that: a write may be in flight only until ``renew_deadline_s``
after the last successful renewal was *sent* (:meth:`Leadership.write_deadline`).  The
writer waits for the lease before each write and abandons a write still in flight at the
deadline (its connection is closed), which leaves ``lease_duration_s - renew_deadline_s``
for the server to finish or drop it.

kubernetes_asyncio's election needs three repairs, made by :class:`_Election` and
:meth:`Leadership._stopped`:

- a renewal attempt has no time limit (its requests have none), so a hung renewal kept a
  replica leading long after the others had taken over: each attempt is bounded;
- only ``ApiException`` is handled, so a connection error ended the election and with it
  the process (the API unreachable at start was enough): it counts as a failed attempt;
- losing the lease cancels the work without waiting for it to stop: we wait.

A replica that shuts down resigns (:meth:`Leadership.resign`, client-go's
``ReleaseOnCancel``): it stops competing, lets its work finish, and hands the Lease back
(empty holder, one-second duration), so another replica takes over at its next attempt,
within ``retry_period_s``, instead of after ``lease_duration_s``.

While the Lease cannot be reached, the failure is logged when it starts, at most every
:data:`LEASE_TROUBLE_REPEAT_S` while it lasts, and once more when it ends.

This module and :mod:`controller.kube` are the only ones that use ``kubernetes_asyncio``,
through :mod:`controller.kubelib` (which imports it without its generated models).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Any

from controller.kube import (
    LEASES,
    UNREACHABLE_ERRORS,
    JsonObject,
    KubeApi,
    KubeError,
    describe_error,
)
from controller.kubelib import ApiException, LeaseLock, electionconfig, leaderelection
from controller.settings import LeaderElectionSettings

log = logging.getLogger(__name__)

_ATTEMPT_ERRORS: tuple[type[Exception], ...] = (ApiException, *UNREACHABLE_ERRORS)

LEASE_TROUBLE_REPEAT_S = 300.0
"""While the Lease stays out of reach, its warning is repeated at most this often."""

_RELEASE_RESERVE_S = 2.0
"""What :meth:`Leadership.resign` keeps of its time for handing the Lease back (at most
half of it): the work gets the rest."""


def _microtime(moment: datetime) -> str:
    """A ``MicroTime`` as the API server writes it."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class _LeaseTrouble:
    """Failures to reach the Lease, logged as a state: when they start, at most every
    :data:`LEASE_TROUBLE_REPEAT_S` while they last, and when they end; not at every attempt
    (every ``retry_period_s``, for as long as an API outage lasts)."""

    def __init__(self, clock: Callable[[], float], *, identity: str) -> None:
        self._clock = clock
        self._extra = {"identity": identity}
        self._since: float | None = None
        self._logged_at = 0.0
        self._failures = 0

    def failed(self, action: str, reason: str) -> None:
        now = self._clock()
        self._failures += 1
        if self._since is None:
            self._since = self._logged_at = now
            log.warning("cannot %s the Lease: %s", action, reason, extra=self._extra)
        elif now - self._logged_at >= LEASE_TROUBLE_REPEAT_S:
            self._logged_at = now
            log.warning(
                "still cannot %s the Lease after %.0f s (%d failed attempts): %s",
                action,
                now - self._since,
                self._failures,
                reason,
                extra=self._extra,
            )

    def reached(self) -> None:
        if self._since is None:
            return
        log.info(
            "Lease reachable again after %.0f s (%d failed attempts)",
            self._clock() - self._since,
            self._failures,
            extra=self._extra,
        )
        self._since = None
        self._failures = 0


class _Election(leaderelection.LeaderElection):
    """One election, with every attempt bounded in time and reported when it succeeds."""

    def __init__(
        self,
        config: electionconfig.Config,
        *,
        attempt_timeout_s: float,
        trouble: _LeaseTrouble,
        on_renewed: Callable[[float], None],
        on_interrupted: Callable[[], None],
    ) -> None:
        super().__init__(config)
        self._attempt_timeout_s = attempt_timeout_s
        self._trouble = trouble
        self._on_renewed = on_renewed
        self._on_interrupted = on_interrupted
        self._holding = False

    async def acquire(self) -> bool:
        acquired = bool(await super().acquire())
        self._holding = acquired  # from now on every attempt is a renewal
        return acquired

    async def try_acquire_or_renew(self) -> bool:
        sent_at = asyncio.get_running_loop().time()
        try:
            async with asyncio.timeout(self._attempt_timeout_s):
                held = bool(await super().try_acquire_or_renew())
        except _ATTEMPT_ERRORS as exc:
            action = "renew" if self._holding else "acquire"
            self._trouble.failed(action, self._reason(exc))
            return False
        except asyncio.CancelledError:
            self._on_interrupted()  # the Lease may have been taken all the same
            raise
        self._trouble.reached()
        if held:
            self._on_renewed(sent_at)
        return held

    def _reason(self, exc: Exception) -> str:
        if isinstance(exc, ApiException):
            return f"HTTP {exc.status} {exc.reason or ''}".rstrip()
        if isinstance(exc, TimeoutError) and not str(exc):
            return f"no answer within {self._attempt_timeout_s:g} s"
        return describe_error(exc)


class Leadership:
    def __init__(
        self,
        api: KubeApi,
        settings: LeaderElectionSettings,
        *,
        namespace: str,
        identity: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``clock`` (monotonic seconds) paces the Lease failure warnings."""
        self.api = api
        self.settings = settings
        self.namespace = namespace
        self.identity = identity
        self._work: Callable[[], Coroutine[Any, Any, None]] | None = None
        self.leading = False
        self.changed = asyncio.Event()
        """Set (and replaced) whenever leadership or the write fence changes."""
        self._work_task: asyncio.Task[None] | None = None
        self._election_task: asyncio.Task[None] | None = None
        self._renewal_sent_at: float | None = None
        self._trouble = _LeaseTrouble(clock, identity=identity)
        self._done = False
        """No more competing, leading or writing, for good (resigned, or run() is over)."""
        self._resigning = False
        self._resigned = asyncio.Event()
        self._may_hold = False
        """This replica took the Lease at some point (or an attempt was cut short)."""

    def write_deadline(self) -> float | None:
        """The event loop time until which a write may be in flight, or None when this
        replica may not write now (not leading, resigning, or the last renewal is too old)."""
        if self._done or not self.leading or self._renewal_sent_at is None:
            return None
        deadline = self._renewal_sent_at + self.settings.renew_deadline_s
        return deadline if deadline > asyncio.get_running_loop().time() else None

    async def hold(self) -> float:
        """Wait until this replica may write; return the time by which the write must end."""
        while (deadline := self.write_deadline()) is None:
            await self.changed.wait()
        return deadline

    def _renewed(self, sent_at: float) -> None:
        self._may_hold = True
        self._renewal_sent_at = sent_at
        self._signal()

    def _interrupted(self) -> None:
        self._may_hold = True

    async def _lead(self) -> None:
        if self._done:
            return  # resigned between winning the Lease and starting to lead
        # kubernetes_asyncio runs this in a task of its own that it cancels when renewal
        # fails, but not when the election itself is cancelled: remember it to stop it then.
        self._work_task = asyncio.current_task()
        self.leading = True
        self._signal()
        log.info("became the leader", extra={"identity": self.identity})
        assert self._work is not None
        try:
            await self._work()
        finally:
            self.leading = False
            self._renewal_sent_at = None
            self._signal()

    async def _stopped(self) -> None:
        # The election cancelled the work without waiting for it: wait here, so it has
        # stopped (no write in flight) before this replica competes again.
        task = self._work_task
        if task is not None:
            await asyncio.wait([task])
            if not task.cancelled():
                task.result()  # a crash of the work is not hidden
        log.warning(
            "lost the leadership; status writing stopped", extra={"identity": self.identity}
        )

    def _signal(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()

    async def run(self, work: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Compete for the lease, running ``work`` whenever this replica leads, until
        cancelled or until :meth:`resign` (then return)."""
        self._work = work
        if self._done:
            return
        election = self._election_task = asyncio.create_task(
            self._elect_forever(), name="lease-election"
        )
        try:
            await election
        except asyncio.CancelledError:
            # resign() stopped the election: the end of run(), not a cancellation of it.
            current = asyncio.current_task()
            cancelled = current is not None and current.cancelling() > 0
            if cancelled or not (self._done and election.cancelled()):
                raise
        finally:
            self._done = True
            if not election.done():
                election.cancel()
                await asyncio.wait([election])
            task = self._work_task
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _elect_forever(self) -> None:
        s = self.settings
        while not self._done:
            lock = LeaseLock(s.lease_name, self.namespace, self.identity, self.api.api_client)
            config = electionconfig.Config(
                lock,
                lease_duration=s.lease_duration_s,
                renew_deadline=s.renew_deadline_s,
                retry_period=s.retry_period_s,
                onstarted_leading=self._lead,
                onstopped_leading=self._stopped,
            )
            election = _Election(
                config,
                attempt_timeout_s=s.renew_deadline_s,
                trouble=self._trouble,
                on_renewed=self._renewed,
                on_interrupted=self._interrupted,
            )
            await election.run()
            if self._done:
                return
            await asyncio.sleep(s.retry_period_s)

    # -- resigning -------------------------------------------------------------------------

    async def resign(self, *, timeout_s: float) -> None:
        """Stop competing for good and hand the Lease back, within ``timeout_s``; never
        raises (a failure is logged).

        From the call on :meth:`write_deadline` is None: no new write starts.  The work
        (already asked to stop by the caller) gets until ``timeout_s`` minus a reserve
        (the smaller of 2 s and half of ``timeout_s``) to finish, then it is cancelled.  The
        election stops (:meth:`run` returns).  Then, if the work has stopped and this
        replica held the Lease, the Lease is read and, only while it still names this
        replica, written back (conditionally on its resourceVersion, so a replica that took
        it over meanwhile wins with a 409) with no holder and a one-second duration, as
        client-go's ``ReleaseOnCancel`` does.  Another replica then takes it at its next
        attempt instead of after ``lease_duration_s``.  A second call waits for the first.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(timeout_s, 0.0)
        if self._resigning:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(deadline):
                    await self._resigned.wait()
            return
        self._resigning = True
        self._done = True
        self._signal()  # hold() waiters see that they may not write
        log.info("resigning the leadership", extra={"identity": self.identity})
        try:
            reserve = min(max(timeout_s, 0.0) / 2, _RELEASE_RESERVE_S)
            stopped = await self._stop_work(until=deadline - reserve, deadline=deadline)
            await self._stop_election(deadline)
            if not stopped:
                log.warning(
                    "the status writer did not stop in time; the Lease is left to expire",
                    extra={"identity": self.identity},
                )
            elif self._may_hold:
                await self._release(deadline)
        finally:
            self._resigned.set()

    async def _stop_work(self, *, until: float, deadline: float) -> bool:
        """Wait for the work until ``until``, then cancel it; True once it has stopped."""
        task = self._work_task
        if task is None:
            return True
        loop = asyncio.get_running_loop()
        if not task.done():
            await asyncio.wait([task], timeout=max(until - loop.time(), 0.0))
        if not task.done():
            log.warning(
                "the status writer is still running; cancelling it",
                extra={"identity": self.identity},
            )
            task.cancel()
            await asyncio.wait([task], timeout=max(deadline - loop.time(), 0.0))
        if not task.done():
            return False
        if not task.cancelled() and (crash := task.exception()) is not None:
            log.error("the status writer failed", exc_info=crash)
        return True

    async def _stop_election(self, deadline: float) -> None:
        election = self._election_task
        if election is not None and not election.done():
            election.cancel()
            loop = asyncio.get_running_loop()
            await asyncio.wait([election], timeout=max(deadline - loop.time(), 0.0))

    async def _release(self, deadline: float) -> None:
        s = self.settings
        extra = {"identity": self.identity}
        timeout_s = min(deadline - asyncio.get_running_loop().time(), s.renew_deadline_s)
        expiry = f"it expires within {s.lease_duration_s} s"
        if timeout_s <= 0:
            log.warning("no time left to release the Lease; %s", expiry, extra=extra)
            return
        try:
            async with asyncio.timeout(timeout_s):
                await self._hand_back()
        except KubeError as exc:
            if exc.status == 404:
                log.info("no Lease to release", extra=extra)
            elif exc.status == 409:
                log.warning(
                    "did not release the Lease: it changed meanwhile (taken over?)", extra=extra
                )
            else:
                log.warning("cannot release the Lease (%s): %s", expiry, exc, extra=extra)
        except TimeoutError:
            log.warning(
                "cannot release the Lease (%s): no answer within %.1f s",
                expiry,
                timeout_s,
                extra=extra,
            )
        except Exception as exc:  # a shutdown step: report, never raise
            log.warning(
                "cannot release the Lease (%s): %s", expiry, describe_error(exc), extra=extra
            )

    async def _hand_back(self) -> None:
        """client-go's ``release()``, conditional on a fresh read instead of a cached one."""
        name = self.settings.lease_name
        lease = await self.api.get(LEASES, self.namespace, name)
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity")
        if holder != self.identity:
            log.info(
                "not releasing the Lease: %s holds it now",
                holder or "nobody",
                extra={"identity": self.identity},
            )
            return
        now = _microtime(datetime.now(UTC))
        released: JsonObject = {
            "holderIdentity": "",
            "leaseDurationSeconds": 1,
            "acquireTime": now,
            "renewTime": now,
        }
        if "leaseTransitions" in spec:
            released["leaseTransitions"] = spec["leaseTransitions"]
        metadata = {k: v for k, v in (lease.get("metadata") or {}).items() if k != "managedFields"}
        body = {
            "apiVersion": LEASES.api_version,
            "kind": LEASES.kind,
            "metadata": metadata,  # with its resourceVersion: a takeover since is a 409
            "spec": released,
        }
        await self.api.replace(LEASES, self.namespace, name, body)
        log.info(
            "released the Lease; another replica can take over now",
            extra={"identity": self.identity},
        )
