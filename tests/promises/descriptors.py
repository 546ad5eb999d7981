"""What file descriptors a process holds, read from ``/proc``: to prove nothing leaks.

``/proc/<pid>/fd`` names every descriptor; a socket shows as ``socket:[inode]``, and
``/proc/<pid>/net/tcp`` maps TCP inodes to their addresses and state.  A descriptor is
then one of: a listening socket, a TCP connection (local port, peer port, state), or
something else counted by kind (files, pipes, the event loop's own, and sockets the
TCP table no longer lists, such as a reset connection nobody closed).

A leak shows as a connection that outlives both its ends' use (a client connection
after the client left, a ``CLOSE_WAIT`` the proxy never closed, a ``SYN_SENT`` to an
upstream that never answered) or as one more descriptor of some other kind.
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from yarl import URL

from tests.mwmprocess import MwmProcess

SETTLE_TIMEOUT_S = 10.0

# /proc/net/tcp's "st" column (include/net/tcp_states.h).
_STATES = {
    0x01: "ESTABLISHED",
    0x02: "SYN_SENT",
    0x03: "SYN_RECV",
    0x04: "FIN_WAIT1",
    0x05: "FIN_WAIT2",
    0x06: "TIME_WAIT",
    0x07: "CLOSE",
    0x08: "CLOSE_WAIT",
    0x09: "LAST_ACK",
    0x0A: "LISTEN",
    0x0B: "CLOSING",
}


@dataclass(frozen=True, slots=True)
class TcpSocket:
    local_port: int
    peer_port: int
    state: str

    def __str__(self) -> str:
        return f"{self.local_port}->{self.peer_port} {self.state}"


@dataclass(frozen=True, slots=True)
class Descriptors:
    """One reading of a process's descriptors."""

    listening: frozenset[int]
    """Ports of listening sockets."""
    connections: tuple[TcpSocket, ...]
    other: Counter[str]
    """Every other descriptor, counted by kind (``pipe``, ``socket``, a file path...)."""

    @property
    def total(self) -> int:
        return len(self.listening) + len(self.connections) + sum(self.other.values())


def _tcp_table(pid: int) -> dict[str, TcpSocket]:
    table: dict[str, TcpSocket] = {}
    for name in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{name}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, peer, state, inode = fields[1], fields[2], fields[3], fields[9]
            table[inode] = TcpSocket(
                local_port=int(local.rsplit(":", 1)[1], 16),
                peer_port=int(peer.rsplit(":", 1)[1], 16),
                state=_STATES.get(int(state, 16), state),
            )
    return table


def read_descriptors(pid: int) -> Descriptors:
    """The descriptors ``pid`` holds right now."""
    targets = []
    directory = f"/proc/{pid}/fd"
    for fd in os.listdir(directory):
        try:
            targets.append(os.readlink(f"{directory}/{fd}"))
        except FileNotFoundError:
            continue  # closed while listing
    tcp = _tcp_table(pid)
    listening: set[int] = set()
    connections: list[TcpSocket] = []
    other: Counter[str] = Counter()
    for target in targets:
        if target.startswith("socket:["):
            found = tcp.get(target[len("socket:[") : -1])
            if found is None:
                other["socket"] += 1
            elif found.state == "LISTEN":
                listening.add(found.local_port)
            else:
                connections.append(found)
        elif target.startswith(("pipe:", "anon_inode:")):
            other[target.split("[")[0]] += 1
        else:
            other[target] += 1
    return Descriptors(frozenset(listening), tuple(sorted(connections, key=str)), other)


def leaks(
    now: Descriptors,
    baseline: Descriptors,
    *,
    upstream_port: int | None,
    ignored_ports: frozenset[int] = frozenset(),
    idle_upstream_max: int = 0,
) -> list[str]:
    """What ``now`` holds that a proxy at rest must not, compared with ``baseline``.

    At rest a proxy holds its listeners, the descriptors it started with, and at most
    ``idle_upstream_max`` established keep-alive connections to ``upstream_port`` (its
    pool).  Connections on ``ignored_ports`` (the management listener the test itself
    uses to let time pass) are not counted.
    """
    problems = []
    if now.listening != baseline.listening:
        problems.append(
            f"listening on {sorted(now.listening)}, at start {sorted(baseline.listening)}"
        )
    if now.other != baseline.other:
        problems.append(f"other descriptors {dict(now.other)}, at start {dict(baseline.other)}")
    pooled = 0
    for connection in now.connections:
        if connection.local_port in ignored_ports:
            continue
        if connection.peer_port == upstream_port and connection.state == "ESTABLISHED":
            pooled += 1
            continue
        problems.append(f"connection {connection} still open")
    if pooled > idle_upstream_max:
        problems.append(f"{pooled} idle upstream connections, at most {idle_upstream_max} expected")
    return problems


async def assert_nothing_leaked(
    process: MwmProcess,
    baseline: Descriptors,
    *,
    upstream_port: int | None,
    idle_upstream_max: int = 0,
    timeout_s: float = SETTLE_TIMEOUT_S,
) -> None:
    """Wait until ``process`` holds nothing more than ``baseline`` (see :func:`leaks`).

    The proxy closes a descriptor when its loop gets to it, a moment after the peer
    left; no event crosses the process boundary for that, so each new reading follows
    one round trip to the proxy's ``/healthz`` (which makes its loop run), and the
    assertion fails with what is still open after ``timeout_s``.
    """
    management_port = URL(process.management).port
    assert management_port is not None
    ignored = frozenset({management_port})

    async def settled() -> None:
        connector = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(connector=connector) as session:
            while leaks(
                read_descriptors(process.pid),
                baseline,
                upstream_port=upstream_port,
                ignored_ports=ignored,
                idle_upstream_max=idle_upstream_max,
            ):
                async with session.get(f"{process.management}/healthz") as response:
                    await response.read()

    try:
        await asyncio.wait_for(settled(), timeout_s)
    except TimeoutError:
        problems = leaks(
            read_descriptors(process.pid),
            baseline,
            upstream_port=upstream_port,
            ignored_ports=ignored,
            idle_upstream_max=idle_upstream_max,
        )
        raise AssertionError(f"the proxy leaked: {'; '.join(problems)}") from None
