"""Leader election over a ``coordination.k8s.io/v1`` Lease (kubernetes-asyncio's own).

Every replica watches and serves; only the leader runs the given work (the status
writer).  ``renew_deadline_s`` is shorter than ``lease_duration_s``: a leader that
cannot renew in time cancels its work before the lease can expire for the others, so
two replicas never write at once.  After losing the lease a replica competes again.

This module and :mod:`controller.kube` are the only ones that import
``kubernetes_asyncio``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from kubernetes_asyncio.leaderelection import electionconfig, leaderelection
from kubernetes_asyncio.leaderelection.resourcelock.leaselock import LeaseLock

from controller.kube import KubeApi
from controller.settings import LeaderElectionSettings

log = logging.getLogger(__name__)


class Leadership:
    def __init__(
        self,
        api: KubeApi,
        settings: LeaderElectionSettings,
        *,
        namespace: str,
        identity: str,
        work: Callable[[], Coroutine[Any, Any, None]],
    ) -> None:
        self.api = api
        self.settings = settings
        self.namespace = namespace
        self.identity = identity
        self._work = work
        self.leading = False
        self.terms = 0
        """How many times this replica became leader."""
        self.changed = asyncio.Event()
        self._work_task: asyncio.Task[None] | None = None

    async def _lead(self) -> None:
        # kubernetes_asyncio runs this in a task of its own that it cancels when renewal
        # fails, but not when the election itself is cancelled: remember it to stop it then.
        self._work_task = asyncio.current_task()
        self.leading = True
        self.terms += 1
        self._signal()
        log.info("became the leader", extra={"identity": self.identity})
        try:
            await self._work()
        finally:
            self.leading = False
            self._signal()

    async def _stopped(self) -> None:
        log.warning(
            "lost the leadership; status writing stopped", extra={"identity": self.identity}
        )

    def _signal(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()

    async def run(self) -> None:
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
            await leaderelection.LeaderElection(config).run()
            await asyncio.sleep(s.retry_period_s)
