"""What the servers log: access lines with secrets masked, malformed requests as one line."""

from __future__ import annotations

import logging

import pytest
from aiohttp.http_exceptions import BadHttpMessage, LineTooLong
from yarl import URL

from proxy.serverlog import REQUEST_ERROR_LOG, _masked

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
