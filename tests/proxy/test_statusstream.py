"""The status stream's broadcaster (:mod:`proxy.statusstream`), driven by a real store.

Subscribers here have no connection: a test reads their mailbox the way the HTTP writer
does (wait for the wake, ``take()``), so what each one would have written is exactly what
the test records.  The same promises over real sockets: tests/promises/test_status_stream.py.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Callable

import pytest

from controller.snapshot import Snapshot
from controller.store import SnapshotStore, State
from proxy.statusstream import HEARTBEAT, Broadcaster, Subscriber, event

WAIT_S = 5.0


def render(state: State) -> bytes:
    return json.dumps({"errors": list(state.snapshot.errors)}, separators=(",", ":")).encode()


def broadcaster(
    store: SnapshotStore,
    *,
    heartbeat_s: float = 60.0,
    max_subscribers: int = 100,
    counted: Callable[[int], None] = lambda n: None,
    renders: list[int] | None = None,
) -> Broadcaster:
    def counting(state: State) -> bytes:
        if renders is not None:
            renders.append(state.generation)
        return render(state)

    return Broadcaster(
        store,
        counting,
        name="public",
        heartbeat_s=heartbeat_s,
        retry_s=5.0,
        max_subscribers=max_subscribers,
        counted=counted,
    )


def ids(chunk: bytes) -> list[int]:
    return [int(m) for m in re.findall(rb"^id: (\d+)$", chunk, flags=re.M)]


class Reader:
    """Drains one subscriber's mailbox as the HTTP writer would, recording every chunk."""

    def __init__(self, subscriber: Subscriber) -> None:
        self.subscriber = subscriber
        self.chunks: list[bytes] = []
        first = subscriber.take()
        if first:
            self.chunks.append(first)
        self._seen = asyncio.Event()
        self._task = asyncio.create_task(self._run())

    @property
    def ids(self) -> list[int]:
        return [i for chunk in self.chunks for i in ids(chunk)]

    async def _run(self) -> None:
        s = self.subscriber
        while not s.closed:
            await s.wake.wait()
            s.wake.clear()
            chunk = s.take()
            if chunk:
                self.chunks.append(chunk)
                self._seen.set()

    async def until(self, predicate: Callable[[Reader], bool]) -> None:
        async def wait() -> None:
            while not predicate(self):
                self._seen.clear()
                await self._seen.wait()

        await asyncio.wait_for(wait(), WAIT_S)

    async def stop(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


def reached(generation: int) -> Callable[[Reader], bool]:
    return lambda reader: bool(reader.ids) and reader.ids[-1] == generation


@pytest.fixture
async def readers() -> AsyncIterator[list[Reader]]:
    started: list[Reader] = []
    yield started
    for reader in started:
        await reader.stop()


def test_an_event_is_the_sse_wire_format() -> None:
    assert event(7, b'{"a":1}') == b'id: 7\nevent: status\ndata: {"a":1}\n\n'


async def test_every_subscriber_sees_every_settled_state_in_order(readers: list[Reader]) -> None:
    store = SnapshotStore()
    renders: list[int] = []
    stream = broadcaster(store, renders=renders)
    first = store.current.generation
    for _ in range(5):
        subscriber = stream.subscribe()
        assert subscriber is not None
        readers.append(Reader(subscriber))
    for i in range(60):
        generation = store.publish(Snapshot(errors=(f"change {i}",))).generation
        for reader in readers:
            await reader.until(reached(generation))
    expected = list(range(first, first + 61))
    for reader in readers:
        assert reader.ids == expected
        last = json.loads(reader.chunks[-1].split(b"data: ")[1])
        assert last == {"errors": ["change 59"]}
    # One rendering per generation, not one per subscriber.
    assert renders == expected


async def test_a_burst_of_publishes_is_delivered_in_order_without_duplicates(
    readers: list[Reader],
) -> None:
    store = SnapshotStore()
    stream = broadcaster(store)
    for _ in range(3):
        subscriber = stream.subscribe()
        assert subscriber is not None
        readers.append(Reader(subscriber))
    for round_ in range(10):
        for i in range(20):  # no await in between: one settled state per burst
            store.publish(Snapshot(errors=(f"{round_}.{i}",)))
        last = store.current.generation
        for reader in readers:
            await reader.until(reached(last))
    for reader in readers:
        assert reader.ids == sorted(set(reader.ids))  # increasing, never twice
        assert reader.ids[-1] == store.current.generation


async def test_a_slow_subscriber_holds_one_event_the_latest(readers: list[Reader]) -> None:
    store = SnapshotStore()
    stream = broadcaster(store)
    slow = stream.subscribe()
    fast = stream.subscribe()
    assert slow is not None
    assert fast is not None
    reader = Reader(fast)
    readers.append(reader)
    for i in range(1000):
        generation = store.publish(Snapshot(errors=(f"change {i}",))).generation
        await reader.until(reached(generation))
        # Whatever the backlog, the slow one holds one event: the latest.
        assert slow.pending is not None
        assert ids(slow.pending) == [generation]
        assert stream.pending_events() == 1
    chunk = slow.take()
    assert ids(chunk) == [store.current.generation]
    assert chunk == event(store.current.generation, render(store.current))


async def test_last_event_id_resumes() -> None:
    store = SnapshotStore()
    store.publish(Snapshot(errors=("one",)))
    stream = broadcaster(store)
    current = store.current.generation
    up_to_date = stream.subscribe(str(current))
    assert up_to_date is not None
    assert up_to_date.take() == b""  # nothing missed: nothing re-sent
    behind = stream.subscribe(str(current - 1))
    garbage = stream.subscribe("not-a-number")
    for subscriber in (behind, garbage):
        assert subscriber is not None
        assert ids(subscriber.take()) == [current]
    store.publish(Snapshot(errors=("two",)))
    await asyncio.wait_for(up_to_date.wake.wait(), WAIT_S)
    assert ids(up_to_date.take()) == [current + 1]


async def test_heartbeats_come_from_one_timer_at_the_interval() -> None:
    store = SnapshotStore()
    interval = 0.05
    stream = broadcaster(store, heartbeat_s=interval)
    subscribers = [stream.subscribe() for _ in range(3)]
    loop = asyncio.get_running_loop()
    start = loop.time()
    for subscriber in subscribers:
        assert subscriber is not None
        subscriber.take()  # the first event
    beats: list[float] = []
    first = subscribers[0]
    assert first is not None
    for _ in range(3):
        first.wake.clear()
        await asyncio.wait_for(first.wake.wait(), WAIT_S)
        beats.append(loop.time())
        # The same tick woke every subscriber, each with one heartbeat.
        for subscriber in subscribers:
            assert subscriber is not None
            assert subscriber.take() == HEARTBEAT
    gaps = [b - a for a, b in zip([start, *beats], beats, strict=False)]
    assert all(gap >= interval * 0.9 for gap in gaps), gaps


async def test_the_subscriber_limit_and_the_count() -> None:
    store = SnapshotStore()
    counts: list[int] = []
    stream = broadcaster(store, max_subscribers=2, counted=counts.append)
    one, two = stream.subscribe(), stream.subscribe()
    assert one is not None
    assert two is not None
    assert stream.subscribe() is None
    stream.unsubscribe(one)
    assert stream.subscribe() is not None
    assert counts == [0, 1, 2, 1, 2]


async def test_close_ends_every_stream_and_refuses_new_ones() -> None:
    store = SnapshotStore()
    stream = broadcaster(store)
    subscribers = [stream.subscribe() for _ in range(100)]
    stream.close()
    assert all(s is not None and s.closed and s.wake.is_set() for s in subscribers)
    assert stream.subscribe() is None
    assert stream.busy().status == 503
    assert stream.busy().headers["Retry-After"] == "5"


async def test_no_subscriber_no_rendering() -> None:
    store = SnapshotStore()
    renders: list[int] = []
    broadcaster(store, renders=renders)
    for i in range(10):
        store.publish(Snapshot(errors=(str(i),)))
    assert renders == []
