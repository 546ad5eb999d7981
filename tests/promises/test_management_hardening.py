"""The management listener treats request heads as the public one does.

Before issue 11 (item 8) a malformed head on the management port got aiohttp's own 400:
``Server: Python/3.11 aiohttp/3.x`` and a body quoting the offending line, admin token
included; and a head could be dribbled there for the whole keep-alive timeout.  Its
connections are now :class:`proxy.connection.HardenedConnection` ones.

Promises, over raw sockets, with aiohttp's C parser and with its pure-Python one:

- A malformed head is answered 400 with a short text of ours and ``Server: mwm``: nothing
  in the answer names Python or aiohttp, and none of the bytes sent (a token) is quoted.
- A URL over ``MAX_REQUEST_LINE_BYTES`` gets 414, a field over ``MAX_HEADER_FIELD_BYTES``,
  more than ``MAX_HEADER_COUNT`` fields or a head over ``MAX_HEADER_BYTES`` get 431, the
  same way; they are not counted in the public listener's metrics.
- A head dribbled to the management port is cut after ``HEADER_TIMEOUT_S``, without an
  answer, however steadily it trickles in.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.conftest import ADMIN_TOKEN, ProxyFactory, RunningProxy
from tests.promises.rawhttp import RawResponse, dribble_head, exchange

SHORT_S = 0.5
"""The header timeout in the dribble test."""
SLACK_S = 10.0
"""How much later than its timeout a cut may come on a busy shared machine."""
TOKEN = ADMIN_TOKEN.encode()
LIMITS = {
    "MWM_LIMITS__MAX_REQUEST_LINE_BYTES": "2000",
    "MWM_LIMITS__MAX_HEADER_FIELD_BYTES": "3000",
    "MWM_LIMITS__MAX_HEADER_COUNT": "20",
}
HEAD = b"GET /status HTTP/1.1\r\nHost: mwm\r\n"

MALFORMED = [
    pytest.param(HEAD + b"Authorization: Bearer " + TOKEN + b"x\x7f\r\n\r\n", id="del-in-value"),
    pytest.param(HEAD + b"Authorization: Bearer " + TOKEN + b"\x00\r\n\r\n", id="nul-in-value"),
    pytest.param(HEAD + b"Authorization : Bearer " + TOKEN + b"\r\n\r\n", id="space-before-colon"),
    pytest.param(HEAD + b"Authorization: Bearer " + TOKEN + b"\nX: y\r\n\r\n", id="bare-lf"),
    pytest.param(
        b"GET /status?admin_token=" + TOKEN + b" HTTP/1.1 x\r\nHost: mwm\r\n\r\n",
        id="bad-request-line",
    ),
]


def assert_ours(answer: RawResponse, status: int, *, sent: bytes) -> None:
    """Our short text: ``Server: mwm``, no version named, nothing of ``sent`` quoted.  (The
    connection was closed after it: :func:`exchange` reads until then.)"""
    assert answer.status == status
    assert answer.header("Server") == "mwm"
    assert (answer.header("Content-Type") or "").startswith("text/plain")
    everything = (
        "\r\n".join(
            [answer.status_line, *(f"{name}: {value}" for name, value in answer.headers)]
        ).encode("latin-1")
        + answer.body
    )
    for word in (b"aiohttp", b"python"):
        assert word not in everything.lower()
    assert TOKEN not in everything
    # No run of 16 bytes of what was sent (a quoted line) appears in the answer.
    quoted = {sent[i : i + 16] for i in range(len(sent) - 15)}
    assert not any(piece in everything for piece in quoted)


async def start(start_proxy: ProxyFactory, env: dict[str, str] | None = None) -> RunningProxy:
    return await start_proxy(env or {})


@pytest.mark.parametrize("head", MALFORMED)
async def test_a_malformed_head_is_answered_without_naming_versions_or_quoting_it(
    http_parser: str, start_proxy: ProxyFactory, head: bytes
) -> None:
    proxy = await start(start_proxy)
    responses = await exchange(proxy.management_port, head)
    assert len(responses) == 1
    assert_ours(responses[0], 400, sent=head)


async def test_heads_over_the_limits_get_414_and_431_answers_of_ours(
    http_parser: str, start_proxy: ProxyFactory
) -> None:
    proxy = await start(start_proxy, LIMITS)
    long_url = b"GET /status?q=" + b"u" * 2100 + b" HTTP/1.1\r\nHost: mwm\r\n\r\n"
    long_field = HEAD + b"Cookie: " + TOKEN + b"c" * 3100 + b"\r\n\r\n"
    many_fields = HEAD + b"".join(b"X-Field-%d: %d\r\n" % (i, i) for i in range(25)) + b"\r\n"

    for sent, status in [(long_url, 414), (long_field, 431), (many_fields, 431)]:
        [answer] = await exchange(proxy.management_port, sent)
        assert_ours(answer, status, sent=sent)

    async with proxy.session.get(f"{proxy.management_url}/metrics") as response:
        text = await response.text()
    assert "mwm_requests_rejected_total{" not in text  # the public listener's count


@pytest.mark.parametrize("finished", [True, False], ids=["whole", "never-finished"])
async def test_a_head_over_max_header_bytes_gets_431(
    http_parser: str, start_proxy: ProxyFactory, finished: bool
) -> None:
    proxy = await start(start_proxy, {**LIMITS, "MWM_LIMITS__MAX_HEADER_BYTES": "8192"})
    # Every field within its limit (and the count), the whole head over 8 KiB.
    head = HEAD + b"".join(b"X-Part-%d: " % i + TOKEN + b"p" * 2000 + b"\r\n" for i in range(5))

    [answer] = await exchange(proxy.management_port, head + (b"\r\n" if finished else b""))

    assert_ours(answer, 431, sent=head)
    assert "8192 bytes" in answer.body.decode()


async def _healthy(proxy: RunningProxy) -> None:
    async with proxy.session.get(f"{proxy.management_url}/healthz") as response:
        assert response.status == 200
        await response.read()


async def test_a_dribbled_head_is_cut_after_the_header_timeout(
    http_parser: str, start_proxy: ProxyFactory
) -> None:
    proxy = await start(
        start_proxy,
        {"MWM_LIMITS__HEADER_TIMEOUT_S": str(SHORT_S), "MWM_LIMITS__KEEPALIVE_TIMEOUT_S": "60"},
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.management_port)
    dribble = await dribble_head(
        reader,
        writer,
        HEAD + b"Authorization: Bearer ",
        between=lambda: _healthy(proxy),
        give_up_s=SHORT_S + SLACK_S,
    )
    assert SHORT_S <= dribble.elapsed_s < SHORT_S + SLACK_S
    assert dribble.served > 0
