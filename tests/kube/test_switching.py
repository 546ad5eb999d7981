"""``KubeApi``'s request timeout and ``wait_for_observed`` (``mwm on/off --checker``) against
the fake API server: an API that does not answer in time says so, and one that keeps failing
is retried with growing pauses, within the caller's deadline, not hammered."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from controller.kube import SERVICECHECKERS, KubeApi, KubeError
from controller.switching import retry_delay_s, switch_checker, wait_for_observed
from tests.kube.clusters import NS, checker
from tests.kube.fakeapi import FakeKubeAPI, RecordedRequest

CHECKERS_PATH = "/servicecheckers"


@pytest.fixture
async def api(fake_kube: FakeKubeAPI) -> AsyncIterator[KubeApi]:
    async with KubeApi.connect(host=fake_kube.url, request_timeout_s=5.0) as client:
        yield client


def _watches(fake: FakeKubeAPI) -> list[RecordedRequest]:
    return [r for r in fake.requests_to("GET", CHECKERS_PATH) if r.is_watch]


def _reads(fake: FakeKubeAPI) -> list[RecordedRequest]:
    return [r for r in fake.requests_to("GET", CHECKERS_PATH) if not r.is_watch]


def _switched_on(fake: FakeKubeAPI) -> dict[str, Any]:
    fake.create(checker(services=[]))
    return fake.patch("servicecheckers", NS, "shop", {"spec": {"maintenance": {"enabled": True}}})


async def test_an_api_that_does_not_answer_in_time_says_so(fake_kube: FakeKubeAPI) -> None:
    fake_kube.create(checker(services=[]))
    gate = fake_kube.hold("GET", CHECKERS_PATH)
    async with KubeApi.connect(host=fake_kube.url, request_timeout_s=0.2) as api:
        with pytest.raises(KubeError, match="did not answer in time") as caught:
            await api.get(SERVICECHECKERS, NS, "shop")
        gate.set()
        assert caught.value.status == 0
        assert caught.value.retryable
        assert "cannot reach" not in str(caught.value)
        # The API itself is fine: the next request (not held) is answered.
        assert (await api.get(SERVICECHECKERS, NS, "shop"))["metadata"]["name"] == "shop"


async def test_an_unreachable_api_is_still_told_apart_from_a_slow_one(
    fake_kube: FakeKubeAPI,
) -> None:
    await fake_kube.go_offline()
    async with KubeApi.connect(host=fake_kube.url, request_timeout_s=2.0) as api:
        with pytest.raises(KubeError, match="cannot reach the Kubernetes API"):
            await api.get(SERVICECHECKERS, NS, "shop")


@pytest.mark.parametrize("failures", [1, 2, 3, 5, 10, 100, 10_000])
def test_retry_delay_grows_is_capped_and_jittered(failures: int) -> None:
    delays = [retry_delay_s(failures, initial_s=0.25, max_s=4.0) for _ in range(200)]
    ceiling = min(4.0, 0.25 * 2 ** min(failures - 1, 32))
    assert all(ceiling / 2 <= d <= ceiling for d in delays)
    assert len(set(delays)) > 1  # jittered


def test_retry_delay_honours_retry_after_up_to_the_cap() -> None:
    assert retry_delay_s(1, 3.0, initial_s=0.25, max_s=4.0) >= 3.0
    assert retry_delay_s(1, 600.0, initial_s=0.25, max_s=4.0) <= 4.0


async def test_a_failing_watch_is_retried_with_growing_pauses_not_hammered(
    fake_kube: FakeKubeAPI, api: KubeApi
) -> None:
    stored = _switched_on(fake_kube)
    fake_kube.fail_next("GET", CHECKERS_PATH, times=None, when=lambda r: r.is_watch)
    loop = asyncio.get_running_loop()
    started = loop.time()

    obj = await wait_for_observed(
        api,
        NS,
        "shop",
        generation=stored["metadata"]["generation"],
        timeout_s=2.0,
        retry_initial_s=0.1,
        retry_max_s=10.0,
    )

    elapsed = loop.time() - started
    assert 2.0 <= elapsed < 3.0  # the deadline, not the (longer) cap, ends the wait
    assert not (obj.get("status") or {}).get("observedGeneration")
    watches = _watches(fake_kube)
    # Pauses of 0.05-0.1, 0.1-0.2, 0.2-0.4, 0.4-0.8, 0.8-1.6 s: at most 6 watches in 2 s;
    # without backoff it would be hundreds.
    assert 3 <= len(watches) <= 7, len(watches)
    assert len(_reads(fake_kube)) <= len(watches) + 1
    gaps = [b.received_at - a.received_at for a, b in itertools.pairwise(watches)]
    assert gaps[0] >= 0.05
    assert gaps[-1] > gaps[0] * 2, gaps


async def test_failing_reads_back_off_too_and_a_watchless_api_is_polled(
    fake_kube: FakeKubeAPI, api: KubeApi
) -> None:
    """Watches refused (RBAC without ``watch``) and reads failing with 503: the wait keeps
    polling with backoff and returns as soon as a read shows the controller caught up."""
    stored = _switched_on(fake_kube)
    generation = stored["metadata"]["generation"]
    fake_kube.fail_next("GET", CHECKERS_PATH, status=403, times=None, when=lambda r: r.is_watch)
    failing_reads = fake_kube.fail_next(
        "GET", CHECKERS_PATH, status=503, times=3, when=lambda r: not r.is_watch
    )

    async def controller_catches_up() -> None:
        # Once every failing read was answered, and another refused watch after it.
        await fake_kube.wait_until(lambda: failing_reads.exhausted, timeout_s=10)
        await fake_kube.wait_for_request(lambda r: r.is_watch, since=len(fake_kube.requests))
        fake_kube.update_status({**stored, "status": {"observedGeneration": generation}})

    catch_up = asyncio.create_task(controller_catches_up())
    loop = asyncio.get_running_loop()
    started = loop.time()
    obj = await wait_for_observed(
        api, NS, "shop", generation=generation, timeout_s=10.0, retry_initial_s=0.05
    )
    await catch_up
    assert obj["status"]["observedGeneration"] == generation
    assert loop.time() - started < 5.0
    assert len(fake_kube.requests_to("GET", CHECKERS_PATH)) < 30


async def test_a_read_refused_for_good_is_an_error(fake_kube: FakeKubeAPI, api: KubeApi) -> None:
    stored = _switched_on(fake_kube)
    fake_kube.fail_next("GET", CHECKERS_PATH, times=None, when=lambda r: r.is_watch)
    # The first read (before watching) succeeds; the one after the failed watch is refused.
    fake_kube.fail_next(
        "GET",
        CHECKERS_PATH,
        status=404,
        when=lambda r: not r.is_watch and len(_reads(fake_kube)) > 1,
    )
    with pytest.raises(KubeError, match="HTTP 404"):
        await wait_for_observed(
            api,
            NS,
            "shop",
            generation=stored["metadata"]["generation"],
            timeout_s=5.0,
            retry_initial_s=0.01,
        )


async def test_switch_checker_writes_until_in_utc_with_z(
    fake_kube: FakeKubeAPI, api: KubeApi
) -> None:
    fake_kube.create(checker(services=[]))
    plus_two = timezone(timedelta(hours=2))
    await switch_checker(
        api, NS, "shop", enabled=True, until=datetime(2026, 12, 1, 12, 0, tzinfo=plus_two)
    )
    await switch_checker(
        api,
        NS,
        "shop",
        enabled=True,
        until=datetime(2026, 12, 1, 12, 0, 0, 250000, tzinfo=plus_two),
    )
    patches = [r.body for r in fake_kube.requests_to("PATCH", CHECKERS_PATH)]
    untils = [p["spec"]["maintenance"]["until"] for p in patches]
    assert untils == ["2026-12-01T10:00:00Z", "2026-12-01T10:00:00.250000Z"]


async def test_no_answer_at_all_before_the_deadline_is_the_last_error(
    fake_kube: FakeKubeAPI, api: KubeApi
) -> None:
    stored = _switched_on(fake_kube)
    fake_kube.fail_next("GET", CHECKERS_PATH, status=503, times=None)
    with pytest.raises(KubeError, match="HTTP 503"):
        await wait_for_observed(
            api,
            NS,
            "shop",
            generation=stored["metadata"]["generation"],
            timeout_s=1.0,
            retry_initial_s=0.05,
        )
    assert len(_reads(fake_kube)) <= 6
