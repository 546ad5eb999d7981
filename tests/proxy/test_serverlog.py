"""What the servers log: access lines with secrets masked, malformed requests as one line."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage, LineTooLong
from aiohttp.test_utils import TestServer, make_mocked_request
from aiohttp.web_log import AccessLogger
from multidict import CIMultiDict
from yarl import URL

from proxy.logs import JsonFormatter
from proxy.serverlog import REQUEST_ERROR_LOG, _masked, masked_text, masking_access_logger
from tests.conftest import ADMIN_TOKEN, BYPASS_TOKEN, ProxyFactory, echo_app
from tests.promises.rawhttp import exchange, request

SECRETS = ("bypass-token", "admin-token")


@pytest.mark.parametrize(
    ("target", "logged"),
    [
        pytest.param("/_mwm/bypass/bypass-token", "/_mwm/bypass/***", id="cookie-url"),
        pytest.param("/x?token=anything&page=2", "/x?token=***&page=2", id="credential-name"),
        pytest.param("/x?ACCESS_TOKEN=a", "/x?ACCESS_TOKEN=***", id="credential-name-any-case"),
        pytest.param("/x?q=admin-token", "/x?q=***", id="secret-as-a-value"),
        pytest.param("/%62ypass-token", "/***", id="percent-encoded-secret"),
    ],
)
def test_access_log_masks_secrets_in_the_target(target: str, logged: str) -> None:
    assert str(_masked(URL(target, encoded=True), SECRETS)) == logged


def test_access_log_keeps_an_ordinary_target_as_is() -> None:
    target = URL("/shop?page=2")
    assert _masked(target, SECRETS) is target


@pytest.mark.parametrize(
    ("value", "logged"),
    [
        pytest.param(
            "https://shop.test/_mwm/bypass/bypass-token",
            "https://shop.test/_mwm/bypass/***",
            id="referer-cookie-url",
        ),
        pytest.param(
            "https://shop.test/x?page=2&token=anything#top",
            "https://shop.test/x?page=2&token=***#top",
            id="referer-credential-parameter",
        ),
        pytest.param(
            "https://shop.test/x?Access%5FToken=a&q=1",
            "https://shop.test/x?Access%5FToken=***&q=1",
            id="referer-encoded-credential-name",
        ),
        pytest.param(
            "https://shop.test/x?q=admin-token", "https://shop.test/x?q=***", id="secret-as-a-value"
        ),
        pytest.param("https://shop.test/%62ypass-token", "https://shop.test/***", id="encoded"),
        pytest.param("https://shop.test/%2562ypass-token", "https://shop.test/***", id="twice"),
        pytest.param("curl/8.0 admin-token", "curl/8.0 ***", id="user-agent"),
        pytest.param("bypass-tokenadmin-token", "******", id="two-secrets"),
        pytest.param("Mozilla/5.0 (X11; Linux x86_64)", "Mozilla/5.0 (X11; Linux x86_64)", id="ua"),
        pytest.param("https://shop.test/a?b=c%20d", "https://shop.test/a?b=c%20d", id="plain"),
    ],
)
def test_every_logged_value_is_masked_like_the_request_line(value: str, logged: str) -> None:
    assert masked_text(value, SECRETS) == logged


def _log_access(
    caplog: pytest.LogCaptureFixture,
    target: str,
    headers: dict[str, str],
    log_format: str = AccessLogger.LOG_FORMAT,
) -> logging.LogRecord:
    caplog.set_level(logging.INFO, logger="aiohttp.access")
    logger_class = masking_access_logger(SECRETS, credential_headers=["X-Bypass"])
    access_logger = logger_class(logging.getLogger("aiohttp.access"), log_format)
    response = web.Response(status=303, headers={"Location": "/?token=admin-token"})
    access_logger.log(make_mocked_request("GET", target, headers=CIMultiDict(headers)), response, 0)
    [record] = [r for r in caplog.records if r.name == "aiohttp.access"]
    return record


def test_access_log_masks_secrets_in_the_referer_and_user_agent(
    caplog: pytest.LogCaptureFixture,
) -> None:
    record = _log_access(
        caplog,
        "/checkout?page=2",
        {
            "Referer": "https://shop.test/_mwm/bypass/bypass-token?access_token=xyz",
            "User-Agent": "probe admin-token",
        },
    )
    message = record.getMessage()
    assert '"GET /checkout?page=2 HTTP/1.1" 303' in message
    assert '"https://shop.test/_mwm/bypass/***?access_token=***" "probe ***"' in message
    structured = JsonFormatter().format(record)  # the extra fields, as the JSON log has them
    for text in (message, structured, caplog.text):
        assert "bypass-token" not in text
        assert "admin-token" not in text
        assert "xyz" not in text
    assert json.loads(structured)["request_header"] == {
        "Referer": "https://shop.test/_mwm/bypass/***?access_token=***",
        "User-Agent": "probe ***",
    }


def test_access_log_masks_every_field_of_a_custom_format(caplog: pytest.LogCaptureFixture) -> None:
    record = _log_access(
        caplog,
        "/_mwm/bypass/bypass-token?auth=1",
        {
            "Authorization": "Basic c2VjcmV0",
            "Cookie": "mwm_bypass=v1.1.abc.def",
            "X-Bypass": "wrong-guess",
            "X-Trace": "admin-token",
        },
        log_format=(
            '"%r" "%{Authorization}i" "%{Cookie}i" "%{X-Bypass}i" "%{X-Trace}i" '
            '"%{Location}o" "%{Missing}i"'
        ),
    )
    assert record.getMessage() == (
        '"GET /_mwm/bypass/***?auth=*** HTTP/1.1" "***" "***" "***" "***" "/?token=***" "-"'
    )


@pytest.fixture
async def upstream() -> AsyncIterator[TestServer]:
    """The suite's echo application (``tests/conftest.py``), in front of which
    ``start_proxy`` starts mwm (this directory's ``upstream`` is another application).
    Its own access log is off: in this process it would log to ``aiohttp.access`` too."""
    server = TestServer(echo_app(), host="127.0.0.1")
    await server.start_server(access_log=None)
    yield server
    await server.close()


async def test_a_running_proxy_logs_no_secret_from_any_header(
    start_proxy: ProxyFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="aiohttp.access")
    proxy = await start_proxy({"MWM_LOG__ACCESS_LOG": "true"})
    referers = [
        f"https://shop.test/_mwm/bypass/{BYPASS_TOKEN}",
        "https://shop.test/login?next=/&token=not-configured-but-a-token&page=1",
        f"http://127.0.0.1:8081/api/maintenance?admin_token={ADMIN_TOKEN}",
    ]
    for referer in referers:
        headers = [("Referer", referer), ("User-Agent", f"deploy-bot {ADMIN_TOKEN}")]
        [public] = await exchange(proxy.public_port, request("GET", "/shop", headers))
        assert public.status == 200
        [management] = await exchange(proxy.management_port, request("GET", "/healthz", headers))
        assert management.status == 200
    records = [r for r in caplog.records if r.name == "aiohttp.access"]
    assert len(records) == 2 * len(referers)
    logged = "\n".join(r.getMessage() + JsonFormatter().format(r) for r in records)
    assert BYPASS_TOKEN not in logged
    assert ADMIN_TOKEN not in logged
    assert "not-configured-but-a-token" not in logged  # a credential-like parameter
    assert "https://shop.test/_mwm/bypass/***" in logged
    assert '"deploy-bot ***"' in logged
    assert "&token=***&page=1" in logged


def emit(error: Exception, level: int = logging.ERROR) -> None:
    try:
        raise error
    except Exception:
        REQUEST_ERROR_LOG.log(level, "Error handling request from %s", "192.0.2.1", exc_info=True)


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(
            BadHttpMessage("Invalid header value char:\n\n  b'X-Token: s3cret\\x00'"),
            id="quoted-header",
        ),
        pytest.param(LineTooLong("X-Token: s3cret" * 10, 8190), id="line-too-long"),
    ],
)
def test_malformed_request_is_one_info_line_without_its_bytes(
    caplog: pytest.LogCaptureFixture, error: Exception
) -> None:
    caplog.set_level(logging.DEBUG)
    emit(error)
    [record] = caplog.records
    assert record.levelno == logging.INFO
    assert record.exc_info is None
    assert record.getMessage().startswith("refused a malformed request from 192.0.2.1: ")
    assert "s3cret" not in caplog.text


def test_malformed_request_is_not_logged_when_info_is_off(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    emit(BadHttpMessage("Bad status line"))
    assert caplog.records == []


def test_other_errors_keep_their_level_and_traceback(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    emit(RuntimeError("a bug of ours"))
    [record] = caplog.records
    assert record.levelno == logging.ERROR
    assert record.exc_info is not None
