"""``controller.timefmt``: the one way times are written, and the strict RFC 3339 parser."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from controller.timefmt import (
    TimeFormatError,
    parse_rfc3339,
    rfc3339,
    rfc3339_exact,
    rfc3339_or_none,
)

PLUS_2 = timezone(timedelta(hours=2))
MINUS_530 = timezone(-timedelta(hours=5, minutes=30))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("2026-12-01T10:00:00Z", datetime(2026, 12, 1, 10, tzinfo=UTC), id="z"),
        pytest.param("2026-12-01t10:00:00z", datetime(2026, 12, 1, 10, tzinfo=UTC), id="lower"),
        pytest.param("2026-12-01T10:00:00+00:00", datetime(2026, 12, 1, 10, tzinfo=UTC), id="+0"),
        pytest.param("2026-12-01T10:00:00-00:00", datetime(2026, 12, 1, 10, tzinfo=UTC), id="-0"),
        pytest.param(
            "2026-12-01T12:00:00+02:00", datetime(2026, 12, 1, 12, tzinfo=PLUS_2), id="offset"
        ),
        pytest.param(
            "2026-12-01T04:30:00-05:30", datetime(2026, 12, 1, 4, 30, tzinfo=MINUS_530), id="-0530"
        ),
        pytest.param(
            "2026-12-01T10:00:00.5Z", datetime(2026, 12, 1, 10, 0, 0, 500000, tzinfo=UTC), id="f1"
        ),
        pytest.param(
            "2026-12-01T10:00:00.123456Z",
            datetime(2026, 12, 1, 10, 0, 0, 123456, tzinfo=UTC),
            id="f6",
        ),
        pytest.param(
            "2026-12-01T10:00:00.123456789Z",
            datetime(2026, 12, 1, 10, 0, 0, 123456, tzinfo=UTC),
            id="f9-truncated",
        ),
        pytest.param(
            "2028-02-29T23:59:59Z", datetime(2028, 2, 29, 23, 59, 59, tzinfo=UTC), id="leap-day"
        ),
        pytest.param("0001-01-01T00:00:00Z", datetime(1, 1, 1, tzinfo=UTC), id="min"),
    ],
)
def test_accepted(text: str, expected: datetime) -> None:
    parsed = parse_rfc3339(text)
    assert parsed == expected
    assert parsed.utcoffset() == expected.utcoffset()


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("2026-W48-2T10:00:00Z", id="iso-week"),
        pytest.param("2026-W48-2T10:00Z", id="iso-week-short"),
        pytest.param("2026-335T10:00:00Z", id="ordinal"),
        pytest.param("20261201T100000Z", id="basic"),
        pytest.param("20261201T1000Z", id="basic-short"),
        pytest.param("2026-12-01", id="date-only"),
        pytest.param("2026-12-01T10:00Z", id="no-seconds"),
        pytest.param("2026-12-01T10Z", id="hour-only"),
        pytest.param("2026-12-01 10:00:00Z", id="space"),
        pytest.param("2026-12-01_10:00:00Z", id="underscore"),
        pytest.param(" 2026-12-01T10:00:00Z", id="leading-space"),
        pytest.param("2026-12-01T10:00:00Z ", id="trailing-space"),
        pytest.param("2026-12-01T10:00:00Z\n", id="trailing-newline"),
        pytest.param("2026-12-01T10:00:00+0100", id="offset-no-colon"),
        pytest.param("2026-12-01T10:00:00+01", id="offset-hours"),
        pytest.param("2026-12-01T10:00:00 UTC", id="zone-name"),
        pytest.param("2026-12-01T10:00:00.Z", id="empty-fraction"),
        pytest.param("2026-12-01T10:00:00,5Z", id="comma-fraction"),
        pytest.param("2026-1-1T10:00:00Z", id="short-fields"),
        pytest.param("+2026-12-01T10:00:00Z", id="signed-year"),
        pytest.param("2026-12-01T10:00:00\u0660Z", id="arabic-digit"),
        pytest.param("\u0662\u0660\u0662\u0666-12-01T10:00:00Z", id="non-ascii-year"),
        pytest.param("2026-13-01T10:00:00Z", id="month-13"),
        pytest.param("2026-02-30T10:00:00Z", id="30-feb"),
        pytest.param("2026-12-01T24:00:00Z", id="hour-24"),
        pytest.param("2026-12-01T10:60:00Z", id="minute-60"),
        pytest.param("2026-12-31T23:59:60Z", id="leap-second"),
        pytest.param("2026-12-01T10:00:00+24:00", id="offset-24h"),
        pytest.param("0000-01-01T00:00:00Z", id="year-0"),
        pytest.param("0001-01-01T00:00:00+01:00", id="before-year-1-in-utc"),
        pytest.param("tomorrow", id="word"),
        pytest.param("1764583200", id="epoch"),
        pytest.param("", id="empty"),
    ],
)
def test_refused(text: str) -> None:
    with pytest.raises(TimeFormatError) as caught:
        parse_rfc3339(text)
    message = str(caught.value)
    assert message.startswith("expected an RFC 3339 time such as 2026-12-01T10:00:00Z")
    assert repr(text) in message
    assert not caught.value.naive


@pytest.mark.parametrize("text", ["2026-12-01T10:00:00", "2026-12-01t10:00:00.25"])
def test_a_time_without_zone_is_refused_as_such(text: str) -> None:
    with pytest.raises(TimeFormatError, match="has no time zone") as caught:
        parse_rfc3339(text)
    assert caught.value.naive


def test_a_value_that_is_not_text_is_refused() -> None:
    with pytest.raises(TimeFormatError, match="expected an RFC 3339 time"):
        parse_rfc3339(1764583200)  # type: ignore[arg-type]


def test_why_a_well_formed_time_is_refused_is_said() -> None:
    with pytest.raises(TimeFormatError, match="day is out of range for month") as caught:
        parse_rfc3339("2026-02-30T10:00:00Z")
    assert caught.value.detail == "day is out of range for month"


@pytest.mark.parametrize(
    ("moment", "text"),
    [
        pytest.param(datetime(2026, 12, 1, 10, tzinfo=UTC), "2026-12-01T10:00:00Z", id="utc"),
        pytest.param(datetime(2026, 12, 1, 12, tzinfo=PLUS_2), "2026-12-01T10:00:00Z", id="to-utc"),
        pytest.param(
            datetime(2026, 12, 1, 10, 0, 0, 999999, tzinfo=UTC),
            "2026-12-01T10:00:00Z",
            id="truncated-not-rounded",
        ),
        pytest.param(datetime(1, 1, 1, tzinfo=UTC), "0001-01-01T00:00:00Z", id="year-1"),
    ],
)
def test_written_in_utc_with_z_and_whole_seconds(moment: datetime, text: str) -> None:
    assert rfc3339(moment) == text
    assert rfc3339_or_none(moment) == text


def test_micro_keeps_six_digits_like_a_kubernetes_microtime() -> None:
    moment = datetime(2026, 12, 1, 12, 0, 0, 1500, tzinfo=PLUS_2)
    assert rfc3339(moment, micro=True) == "2026-12-01T10:00:00.001500Z"
    assert rfc3339(moment.replace(microsecond=0), micro=True) == "2026-12-01T10:00:00.000000Z"


def test_exact_keeps_a_fraction_only_when_there_is_one() -> None:
    assert rfc3339_exact(datetime(2026, 12, 1, 10, tzinfo=UTC)) == "2026-12-01T10:00:00Z"
    assert (
        rfc3339_exact(datetime(2026, 12, 1, 10, 0, 0, 250000, tzinfo=UTC))
        == "2026-12-01T10:00:00.250000Z"
    )


def test_none_is_null_and_a_naive_time_is_refused() -> None:
    assert rfc3339_or_none(None) is None
    with pytest.raises(ValueError, match="without a time zone"):
        rfc3339(datetime(2026, 12, 1, 10))


@pytest.mark.parametrize(
    "moment",
    [
        datetime(2026, 12, 1, 10, 0, 0, 123456, tzinfo=UTC),
        datetime(2026, 12, 1, 12, 0, 0, tzinfo=PLUS_2),
        datetime.now(UTC),
    ],
)
def test_what_is_written_parses_back(moment: datetime) -> None:
    assert parse_rfc3339(rfc3339(moment, micro=True)) == moment
    assert parse_rfc3339(rfc3339_exact(moment)) == moment
    assert parse_rfc3339(rfc3339(moment)) == moment.replace(microsecond=0)
