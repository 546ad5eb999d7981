"""``mwm on/off/status`` errors: one clear line each, never a traceback or a hang (issue 11).

The real command runs as a child process (:func:`tests.mwmprocess.run_cli`), against an mwm
started in this process.  A usage error (an option or variable that cannot work, or a
value the admin API refuses for a field an option sets) names the option and what was
expected, with exit status 2 as argparse does; a failure (nothing listening, the wrong
token, something other than mwm at ``--url``) exits with 1.  A reader that goes away
(``mwm status --json | head -c1``) ends the command quietly.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta

import pytest

from proxy.cli import _status_lines, parse_until
from tests.conftest import ADMIN_TOKEN, ProxyFactory
from tests.mwmprocess import ROOT, clean_env, run_cli

TOKEN_ENV = {"MWM_MANAGEMENT__ADMIN_TOKEN": ADMIN_TOKEN}


def _one_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single line the command wrote on stderr (and nothing on stdout)."""
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert result.stdout == ""
    return lines[0]


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections (the kernel's backlog) and never says a word."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield listener.getsockname()[1]


@pytest.fixture
def closed_port() -> int:
    """A port nothing listens on (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.mark.parametrize(
    ("args", "env", "named", "expected"),
    [
        pytest.param(["on", "--url", "not-a-url"], {}, "argument --url", "http://", id="no-scheme"),
        pytest.param(
            ["off", "--url", "localhost:8081"], {}, "argument --url", "http://", id="bare"
        ),
        pytest.param(
            ["status", "--url", "file:///etc/passwd"], {}, "argument --url", "http", id="file"
        ),
        pytest.param(["status", "--url", "http://"], {}, "argument --url", "no host", id="no-host"),
        pytest.param(
            ["status", "--url", "http://127.0.0.1:port"], {}, "argument --url", "Port", id="port"
        ),
        pytest.param(
            ["status", "--url", "http://127.0.0.1:8081/?x=1"], {}, "--url", "query", id="query"
        ),
        pytest.param(["status", "--url", "http://a b"], {}, "--url", "spaces", id="space"),
        pytest.param(
            ["status"], {"MWM_MANAGEMENT_URL": "nope"}, "MWM_MANAGEMENT_URL", "http://", id="env"
        ),
        pytest.param(["status", "--timeout", "0"], {}, "argument --timeout", "positive", id="t0"),
        pytest.param(["status", "--timeout", "-1"], {}, "argument --timeout", "positive", id="t-1"),
        pytest.param(
            ["status", "--timeout", "nan"], {}, "argument --timeout", "positive", id="nan"
        ),
        pytest.param(["status", "--timeout", "soon"], {}, "argument --timeout", "seconds", id="tx"),
        pytest.param(["on", "--until", "tomorrow"], {}, "argument --until", "RFC 3339", id="until"),
        pytest.param(["on", "--until", "2030-01-01T00:00"], {}, "--until", "time zone", id="zone"),
        pytest.param(
            ["on", "--until", "2030-01-01T00:00:00"], {}, "--until", "has no time zone", id="naive"
        ),
        pytest.param(
            ["on", "--until", "2030-01-01"], {}, "argument --until", "RFC 3339", id="date"
        ),
        pytest.param(
            ["on", "--until", "2030-W01-2T10:00Z"], {}, "argument --until", "RFC 3339", id="week"
        ),
        pytest.param(
            ["on", "--until", "20300101T1000Z"], {}, "argument --until", "RFC 3339", id="basic"
        ),
        pytest.param(
            ["on", "--until", "2030-02-30T10:00:00Z"], {}, "--until", "out of range", id="30-feb"
        ),
        pytest.param(
            ["on", "--until", "30 m"], {}, "argument --until", "30m", id="spaced-duration"
        ),
        pytest.param(["on", "--until", "1w"], {}, "argument --until", "s, m, h or d", id="weeks"),
        pytest.param(
            ["on", "--until", "999999999d"], {}, "argument --until", "too far", id="too-far"
        ),
        pytest.param(
            ["on", "--token", "two\nlines"], {}, "argument --token", "visible ASCII", id="token"
        ),
        pytest.param(
            ["off"],
            {"MWM_MANAGEMENT__ADMIN_TOKEN_FILE": "/nonexistent/token"},
            "MWM_MANAGEMENT__ADMIN_TOKEN_FILE",
            "readable",
            id="token-file",
        ),
        pytest.param(["status", "--bogus"], {}, "--bogus", "unrecognized", id="unknown-option"),
    ],
)
def test_a_usage_error_is_one_line_naming_the_option_with_status_2(
    closed_port: int, args: list[str], env: dict[str, str], named: str, expected: str
) -> None:
    """Refused before any connection: the management URL given last points nowhere."""
    if "--url" not in args and "MWM_MANAGEMENT_URL" not in env:
        env = {**env, "MWM_MANAGEMENT_URL": f"http://127.0.0.1:{closed_port}"}
    result = run_cli(*args, env=env)
    line = _one_line(result)
    assert result.returncode == 2, line
    assert line.startswith(("mwm on: error: ", "mwm off: error: ", "mwm status: error: ", "mwm: "))
    assert named in line
    assert expected in line


def test_an_ftp_url_is_refused_at_once_instead_of_fetched(silent_port: int) -> None:
    """urllib would speak FTP to it and wait for a greeting until the timeout."""
    result = run_cli("on", "--url", f"ftp://127.0.0.1:{silent_port}/", "--timeout", "30", env={})
    line = _one_line(result)
    assert result.returncode == 2
    assert "argument --url" in line
    assert "http:// or https://" in line


def test_nothing_listening_is_a_failure_with_status_1(closed_port: int) -> None:
    result = run_cli("status", "--url", f"http://127.0.0.1:{closed_port}", env={})
    line = _one_line(result)
    assert result.returncode == 1
    assert line.startswith("mwm: cannot reach the management API at http://127.0.0.1:")


async def test_something_other_than_mwm_at_the_url_is_a_failure_with_status_1(
    start_proxy: ProxyFactory,
) -> None:
    proxy = await start_proxy()
    upstream_url = str(proxy.runtime.settings.upstream.url).rstrip("/")  # JSON, but not mwm's
    for args in (["status", "--url", upstream_url], ["status", "--json", "--url", upstream_url]):
        result = await asyncio.to_thread(run_cli, *args, env={})
        line = _one_line(result)
        assert result.returncode == 1
        assert "is --url mwm's management API?" in line
    result = await asyncio.to_thread(
        run_cli, "status", "--url", f"{proxy.management_url}/nothing-here", env={}
    )
    assert result.returncode == 1
    assert "HTTP 404" in _one_line(result)


async def test_the_apis_field_errors_are_printed_as_usage_errors(
    start_proxy: ProxyFactory,
) -> None:
    proxy = await start_proxy()
    url = ["--url", proxy.management_url]

    long_reason = await asyncio.to_thread(
        run_cli, "on", "--reason", "r" * 5000, *url, env=TOKEN_ENV
    )
    line = _one_line(long_reason)
    assert long_reason.returncode == 2
    assert line.startswith("mwm on: error: argument --reason: ")
    assert "at most 500 characters" in line

    past = await asyncio.to_thread(
        run_cli, "on", "--until", "2020-01-01T00:00:00Z", *url, env=TOKEN_ENV
    )
    line = _one_line(past)
    assert past.returncode == 2
    assert line.startswith("mwm on: error: argument --until: ")
    assert "future" in line

    assert not proxy.runtime.store.current.maintenance.active  # nothing was switched


async def test_a_refusal_without_field_errors_is_a_failure_with_the_apis_detail(
    start_proxy: ProxyFactory,
) -> None:
    proxy = await start_proxy()
    result = await asyncio.to_thread(
        run_cli,
        "on",
        "--url",
        proxy.management_url,
        env={"MWM_MANAGEMENT__ADMIN_TOKEN": "wrong"},
    )
    line = _one_line(result)
    assert result.returncode == 1
    assert line == (
        f"mwm: PUT {proxy.management_url}/api/maintenance: HTTP 401: "
        "A valid 'Authorization: Bearer' token is needed."
    )


def _run_into_a_closed_pipe(*args: str, env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    """``mwm <args>`` with stdout a pipe whose reader is gone: the first write fails with
    EPIPE, as in ``mwm status --json | head -c1`` once ``head`` has exited."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run(
            [sys.executable, "-m", "proxy.cli", *args],
            env=clean_env(env),
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            cwd=ROOT,
            check=False,
        )
    finally:
        os.close(write_end)


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["status", "--json"], id="status-json"),
        pytest.param(["status"], id="status"),
        pytest.param(["on", "--reason", "Upgrading"], id="on"),
    ],
)
async def test_a_reader_that_went_away_ends_the_command_quietly(
    start_proxy: ProxyFactory, args: list[str]
) -> None:
    proxy = await start_proxy()
    result = await asyncio.to_thread(
        _run_into_a_closed_pipe, *args, "--url", proxy.management_url, env=TOKEN_ENV
    )
    assert result.stderr == ""
    assert result.returncode == 1  # as Python's documentation recipe for EPIPE does


NOW = datetime(2026, 12, 1, 10, 0, 0, 500000, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("90s", NOW + timedelta(seconds=90), id="seconds"),
        pytest.param("30m", NOW + timedelta(minutes=30), id="minutes"),
        pytest.param("2h", NOW + timedelta(hours=2), id="hours"),
        pytest.param("1d", NOW + timedelta(days=1), id="days"),
        pytest.param("2026-12-02T10:00:00Z", datetime(2026, 12, 2, 10, tzinfo=UTC), id="z"),
        pytest.param("2026-12-02t10:00:00z", datetime(2026, 12, 2, 10, tzinfo=UTC), id="lower"),
        pytest.param(
            "2026-12-02T12:00:00.25+02:00",
            datetime(2026, 12, 2, 10, 0, 0, 250000, tzinfo=UTC),
            id="offset-fraction",
        ),
    ],
)
def test_until_accepts_durations_and_rfc3339(text: str, expected: datetime) -> None:
    assert parse_until(text, now=NOW) == expected


@pytest.mark.parametrize(
    "text", ["tomorrow", "2026-12-02", "2026-W49-3T10:00Z", "20261202T1000Z", "30", "m", "-5m"]
)
def test_until_refuses_other_forms_naming_the_option(text: str) -> None:
    with pytest.raises(ValueError, match=r"^--until: expected a duration such as 30m") as caught:
        parse_until(text, now=NOW)
    assert "RFC 3339 time such as 2026-12-01T10:00:00Z" in str(caught.value)


@pytest.mark.parametrize(
    ("shown", "expected"),
    [
        pytest.param("2026-12-01T10:00:00.123456+00:00", "2026-12-01T10:00:00Z", id="older-server"),
        pytest.param("2026-12-01T12:00:00+02:00", "2026-12-01T10:00:00Z", id="offset"),
        pytest.param("2026-12-01T10:00:00Z", "2026-12-01T10:00:00Z", id="as-is"),
        pytest.param("soon", "soon", id="not-a-time"),
    ],
)
def test_status_times_are_printed_in_one_format(shown: str, expected: str) -> None:
    lines = _status_lines(
        {
            "maintenance": {
                "active": True,
                "causes": [{"kind": "Manual", "reason": "Upgrading", "until": shown}],
            }
        }
    )
    assert lines == ["maintenance: ON", f"  - Manual: Upgrading until {expected}"]
