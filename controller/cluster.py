"""The Kubernetes side put together: the source, and the status writer under leadership.

Every replica runs the source (its own watches, its own decisions).  The status writer
runs only in the elected leader, or, with leader election disabled (a single replica),
always.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from pathlib import Path

from controller.kube import KubeApi, user_agent
from controller.kubesource import KubernetesSource, fail_safe_switch
from controller.leadership import Leadership
from controller.settings import SourceSettings
from controller.statuswriter import StatusWriter
from controller.store import SnapshotStore

IN_CLUSTER_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def default_namespace(settings: SourceSettings, *, in_cluster: bool) -> str:
    if settings.kubernetes.namespace:
        return settings.kubernetes.namespace
    if in_cluster:
        try:
            return IN_CLUSTER_NAMESPACE_FILE.read_text(encoding="utf-8").strip() or "default"
        except OSError:
            return "default"
    return "default"


class Cluster:
    """Runs until cancelled; exposes its parts for ``/status`` and tests."""

    def __init__(
        self,
        settings: SourceSettings,
        store: SnapshotStore,
        *,
        in_cluster: bool,
        identity_suffix: str = "",
    ) -> None:
        self.settings = settings
        self.store = store
        self.in_cluster = in_cluster
        self.namespace = default_namespace(settings, in_cluster=in_cluster)
        # Worker processes of one pod each need their own identity in the Lease.
        base = settings.leader_election.identity or socket.gethostname()
        self.identity = base + identity_suffix
        self.source: KubernetesSource | None = None
        self.writer: StatusWriter | None = None
        self.leadership: Leadership | None = None
        self._writing: asyncio.Task[None] | None = None
        """The status writer's task (under leader election: the election's)."""
        self.ready = asyncio.Event()
        """Set once the parts exist (the API client is configured)."""
        # In force from the first request on, before anything could be read.
        switch = fail_safe_switch(settings.kubernetes)
        if switch is not None:
            store.set_switch(switch)

    async def run(self) -> None:
        k = self.settings.kubernetes
        async with KubeApi.connect(
            host=k.api_url,
            kubeconfig=k.kubeconfig,
            context=k.context,
            in_cluster=self.in_cluster and k.api_url is None,
            request_timeout_s=k.request_timeout_s,
            user_agent=user_agent(self.identity),
        ) as api:
            source = self.source = KubernetesSource(k, self.store, api, namespace=self.namespace)
            leadership = None
            if self.settings.status.enabled and self.settings.leader_election.enabled:
                leadership = self.leadership = Leadership(
                    api,
                    self.settings.leader_election,
                    namespace=self.namespace,
                    identity=self.identity,
                )
            writer = self.writer = StatusWriter(
                self.settings.status,
                source,
                self.store,
                api,
                identity=self.identity,
                lease=leadership,
            )
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(source.run(), name="kubernetes-source")
                if self.settings.status.enabled:
                    if leadership is not None:
                        self._writing = tasks.create_task(
                            leadership.run(writer.run), name="leader-election"
                        )
                    else:
                        self._writing = tasks.create_task(writer.run(), name="status-writer")
                self.ready.set()

    async def stop_writing(self, *, timeout_s: float) -> None:
        """Shutting down: write at once what is pending (a change still inside the coalesce
        window, a write waiting for its retry), then hand the Lease over so another replica
        writes from its next attempt on, not a lease duration later; all within
        ``timeout_s``.  The watches, and so the proxy's decisions, go on until cancelled."""
        writer, task = self.writer, self._writing
        if writer is None or task is None or task.done():
            return
        writer.stop()
        if self.leadership is not None:
            # The flush goes first: once resigning, the lease lets no write start.
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout_s
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout_s / 2):
                    await writer.wait_stopped()
            await self.leadership.resign(timeout_s=max(deadline - loop.time(), 0.0))
            return
        _, pending = await asyncio.wait([task], timeout=timeout_s)
        for unfinished in pending:
            unfinished.cancel()
