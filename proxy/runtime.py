"""The composition root: builds every part from the settings and runs them together.

Start order: load the state source (a broken file fails here, before any port opens),
check templates (a broken override is logged and the built-in used), open the
upstream session, start the management listener, then the public one.  Background
work (the state source, the clock) runs as named tasks in one ``TaskGroup``.

Shutdown order on SIGTERM (the signal handler only sets an event):
1. report not-ready on ``/readyz`` and keep serving for ``prestop_delay_s``, so the
   Service stops sending new traffic first;
2. stop accepting on the public listener (logged once it is closed), close relayed
   websockets with 1001 (going away) both ways, and let in-flight requests finish for up
   to ``drain_timeout_s`` (aiohttp's graceful shutdown), then close what is left; status
   streams (both listeners) end at once, their last chunk written, and held requests
   (:mod:`proxy.hold`) get the page at once;
   Meanwhile, in a cluster, the leader writes any pending status at once and releases its
   Lease, so another replica takes over the writing at its next attempt (also bounded by
   ``drain_timeout_s``);
3. stop the background tasks, close the upstream session, close the management listener.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from controller.localsource import LocalSource
from controller.settings import SourceKind
from controller.store import SnapshotStore
from proxy.bypass import BypassPolicy
from proxy.connection import HardenedAppRunner
from proxy.forwarding import Forwarder
from proxy.management import build_management_app
from proxy.metrics import multiprocess_dir, register_worker
from proxy.pages import PageRenderer
from proxy.public import Services, build_public_server, error_response
from proxy.serverlog import server_log_options
from proxy.settings import Settings
from proxy.sharedswitch import SharedSwitch

if TYPE_CHECKING:
    from controller.cluster import Cluster

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BoundPorts:
    public: int
    management: int


def _bound_port(runner: web.BaseRunner) -> int:
    addresses = runner.addresses
    return int(addresses[0][1]) if addresses else 0


class Runtime:
    """One running proxy; :meth:`run` until :meth:`request_stop` (or SIGTERM)."""

    def __init__(
        self,
        settings: Settings,
        *,
        store: SnapshotStore | None = None,
        in_cluster: bool = False,
        worker_index: int | None = None,
        switch_dir: Path | None = None,
    ) -> None:
        self.settings = settings
        self.store = store or SnapshotStore()
        self.worker_index = worker_index
        self.shared_switch = (
            SharedSwitch(
                switch_dir, self.store, poll_interval_s=settings.source.local.reload_interval_s
            )
            if switch_dir is not None
            else None
        )
        kind = settings.source.kind
        if kind is SourceKind.AUTO:
            kind = SourceKind.KUBERNETES if in_cluster else SourceKind.LOCAL
        self.source_kind = kind
        self.source = LocalSource(settings.source.local, self.store)
        self.cluster: Cluster | None = None
        if kind is SourceKind.KUBERNETES:
            # Imported only here: the Kubernetes client (even without its model modules, which
            # controller.kubelib never loads) costs memory the cluster-less mode never needs.
            from controller.cluster import Cluster

            self.cluster = Cluster(
                settings.source,
                self.store,
                in_cluster=in_cluster,
                identity_suffix=f"-{worker_index}" if worker_index is not None else "",
            )
        self.renderer = PageRenderer(settings.page, status_prefix=settings.status.prefix)
        self._stop = asyncio.Event()
        self.started = asyncio.Event()
        self.ports: BoundPorts | None = None
        self.services: Services | None = None

    def request_stop(self) -> None:
        """Begin the graceful shutdown; safe to call from a signal handler."""
        self._stop.set()

    async def run(self, *, handle_signals: bool = False) -> None:
        settings = self.settings
        if self.cluster is None:
            self.source.load()
        for problem in self.renderer.check():
            log.warning("template problem, the built-in template will be used: %s", problem)

        def on_upstream_error(request: web.BaseRequest, status: int, reason: str) -> web.Response:
            assert self.services is not None
            metrics = self.services.metrics
            if status >= 500:
                metrics.upstream_errors.inc(status)
            else:  # 408, 413: the request was refused, the upstream did nothing wrong
                metrics.rejected.inc(status)
            return error_response(self.renderer, request, status, reason)

        forwarder = Forwarder(
            settings.upstream,
            trusted_hops=settings.forwarded.trusted_hops,
            on_error=on_upstream_error,
            max_body_bytes=settings.limits.max_body_bytes,
            body_timeout_s=settings.limits.body_timeout_s,
            private_headers=(settings.bypass.header_name,),
            private_cookie=settings.bypass.cookie_name,
        )
        services = self.services = Services(
            settings=settings,
            store=self.store,
            renderer=self.renderer,
            policy=BypassPolicy.from_settings(settings.bypass),
            forwarder=forwarder,
            shared_switch=self.shared_switch,
        )
        shared_metrics = multiprocess_dir()
        if shared_metrics is not None and self.worker_index is not None:
            register_worker(shared_metrics, self.worker_index)  # its process_* metrics
        if handle_signals:
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signum, self.request_stop)

        await forwarder.start()
        log_options = server_log_options(settings)
        limits = settings.limits
        management = HardenedAppRunner(
            build_management_app(services),
            # The public listener's connections: its idle and header timeouts, head limits
            # and framing rules (aiohttp's defaults keep an idle connection for an hour, and
            # its answer to a malformed head quotes it, admin token included), with short
            # text refusals counted in no public metric.
            limits=limits,
            shutdown_timeout=1.0,
            **log_options,
        )
        public = web.ServerRunner(
            build_public_server(services, **log_options),
            shutdown_timeout=settings.shutdown.drain_timeout_s,
        )
        try:
            await management.setup()
            reuse_port = self.worker_index is not None
            await _listen(
                management,
                settings.listen.management_host,
                settings.listen.management_port,
                reuse_port=reuse_port,
            )
            await public.setup()
            await _listen(
                public,
                settings.listen.public_host,
                settings.listen.public_port,
                reuse_port=reuse_port,
            )
            self.ports = BoundPorts(public=_bound_port(public), management=_bound_port(management))
            log.info(
                "listening",
                extra={
                    "public_port": self.ports.public,
                    "management_port": self.ports.management,
                    "upstream": settings.upstream.url_for_display(),
                    "source": str(self.source_kind),
                },
            )
            # Everything built so far lives as long as the process: move it out of the
            # collector's sight, so full collections under load scan only per-request garbage
            # (shorter pauses, a flatter p99).
            gc.collect()
            gc.freeze()
            # Each request allocates a few hundred container objects; collecting the young
            # generation every 700 of them costs ~4 % of the time for nothing (measured with
            # bench/gcstats.py; nothing here forms reference cycles per request).
            gc.set_threshold(50_000, 20, 20)
            try:
                async with asyncio.TaskGroup() as tasks:
                    if self.cluster is not None:
                        tasks.create_task(self.cluster.run(), name="kubernetes")
                    else:
                        tasks.create_task(self.source.run(), name="local-source")
                    tasks.create_task(self.store.run_clock(), name="maintenance-clock")
                    if self.shared_switch is not None:
                        tasks.create_task(self.shared_switch.run(), name="shared-admin-switch")
                    self.started.set()
                    await self._stop.wait()
                    log.info("shutting down: reporting not ready")
                    services.lifecycle.draining = True
                    handover = None
                    if self.cluster is not None:
                        # Pending status written and the Lease handed over while we drain.
                        handover = tasks.create_task(
                            self.cluster.stop_writing(timeout_s=settings.shutdown.drain_timeout_s),
                            name="kubernetes-handover",
                        )
                    if settings.shutdown.prestop_delay_s > 0:
                        await asyncio.sleep(settings.shutdown.prestop_delay_s)
                    for site in public.sites:
                        await site.stop()  # closes the listening socket at once
                    log.info(
                        "shutting down: draining in-flight requests",
                        extra={"drain_timeout_s": settings.shutdown.drain_timeout_s},
                    )
                    forwarder.close_websockets()
                    for stream in services.streams:
                        stream.close()  # status streams end now: they never hold the drain
                    if services.holds is not None:
                        services.holds.close()  # held requests get the page now
                    await public.cleanup()
                    if handover is not None:
                        await handover  # bounded by the drain timeout itself
                    raise _Stopped
            except* _Stopped:
                pass
        finally:
            await public.cleanup()
            await forwarder.close()
            await management.cleanup()
            log.info("stopped")


class StartupError(Exception):
    """The proxy could not start (a port in use, say); the message says what to fix."""


async def _listen(runner: web.BaseRunner, host: str, port: int, *, reuse_port: bool) -> None:
    try:
        await web.TCPSite(runner, host, port, backlog=1024, reuse_port=reuse_port or None).start()
    except OSError as exc:
        raise StartupError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc


class _Stopped(Exception):
    """Raised inside the task group to cancel the background tasks on shutdown."""
