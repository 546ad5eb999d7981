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

This module and :mod:`controller.kube` are the only ones that import
``kubernetes_asyncio``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.leaderelection import electionconfig, leaderelection
from kubernetes_asyncio.leaderelection.resourcelock.leaselock import LeaseLock

from controller.kube import UNREACHABLE_ERRORS, KubeApi
from controller.settings import LeaderElectionSettings

log = logging.getLogger(__name__)

_ATTEMPT_ERRORS: tuple[type[Exception], ...] = (ApiException, *UNREACHABLE_ERRORS)


class _Election(leaderelection.LeaderElection):
    """One election, with every attempt bounded in time and reported when it succeeds."""

    def __init__(
        self,
        config: electionconfig.Config,
        *,
        attempt_timeout_s: float,
        on_renewed: Callable[[float], None],
    ) -> None:
        super().__init__(config)
        self._attempt_timeout_s = attempt_timeout_s
        self._on_renewed = on_renewed

    async def try_acquire_or_renew(self) -> bool:
        sent_at = asyncio.get_running_loop().time()
        try:
            async with asyncio.timeout(self._attempt_timeout_s):
                held = bool(await super().try_acquire_or_renew())
        except _ATTEMPT_ERRORS as exc:
            log.warning("cannot acquire or renew the Lease: %r", exc)
            return False
        if held:
            self._on_renewed(sent_at)
        return held


class Leadership:
    def __init__(
        self,
        api: KubeApi,
        settings: LeaderElectionSettings,
        *,
        namespace: str,
        identity: str,
    ) -> None:
        self.api = api
        self.settings = settings
        self.namespace = namespace
        self.identity = identity
        self._work: Callable[[], Coroutine[Any, Any, None]] | None = None
        self.leading = False
        self.changed = asyncio.Event()
        """Set (and replaced) whenever leadership or the write fence changes."""
        self._work_task: asyncio.Task[None] | None = None
        self._renewal_sent_at: float | None = None

    def write_deadline(self) -> float | None:
        """The event loop time until which a write may be in flight, or None when this
        replica may not write now (not leading, or the last renewal is too old)."""
        if not self.leading or self._renewal_sent_at is None:
            return None
        deadline = self._renewal_sent_at + self.settings.renew_deadline_s
        return deadline if deadline > asyncio.get_running_loop().time() else None

    async def hold(self) -> float:
        """Wait until this replica may write; return the time by which the write must end."""
        while (deadline := self.write_deadline()) is None:
            await self.changed.wait()
        return deadline

    def _renewed(self, sent_at: float) -> None:
        self._renewal_sent_at = sent_at
        self._signal()

    async def _lead(self) -> None:
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
        """Compete for the lease forever; run ``work`` whenever this replica leads."""
        self._work = work
        try:
            await self._elect_forever()
        finally:
            task = self._work_task
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _elect_forever(self) -> None:
        s = self.settings
        while True:
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
                config, attempt_timeout_s=s.renew_deadline_s, on_renewed=self._renewed
            )
            await election.run()
            await asyncio.sleep(s.retry_period_s)
