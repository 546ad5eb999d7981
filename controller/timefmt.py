"""Times as text: one way out (:func:`rfc3339`) and one strict way in (:func:`parse_rfc3339`).

**Out.**  Every time this project writes -- ``/status``, ``/services``, the maintenance
page's JSON, the problem+json bodies and the admin API, a ServiceChecker's ``status``, log
fields, the CLI -- is RFC 3339 in UTC with a ``Z`` and whole seconds
(``2026-12-01T10:00:00Z``), sub-second digits truncated as Kubernetes does for
``metav1.Time``.  Whole seconds keep documents stable (an ETag or a status write does not
change because a clock ticked a few microseconds) and readable.

Sub-second digits are kept (``micro=True``: always six digits, ``2026-12-01T10:00:00.123456Z``)
only where they carry meaning:

- a time the CLI hands on (``mwm on --until``, to the admin API or a ServiceChecker's spec):
  :func:`rfc3339_exact` keeps the fraction the user's time (or ``now + 30m``) has;
- a Lease's ``acquireTime``/``renewTime``, which are ``metav1.MicroTime`` (the API server
  wants the fraction; ``controller.leadership`` writes exactly this form);
- state handed between this project's own processes that must round-trip exactly (the
  workers' shared admin switch file) and a log line's own timestamp, which orders lines.

**In.**  A time typed by a person (``mwm on --until``, the admin API's ``until``, the local
state file's and a ServiceChecker's ``until`` and windows) must be an RFC 3339
``date-time`` (section 5.6), nothing looser::

    YYYY-MM-DD "T" HH:MM:SS [ "." 1*DIGIT ] ( "Z" / ("+" / "-") HH:MM )

- ``T`` and ``Z`` may be lower case (``t``, ``z``): RFC 3339 allows it, and so does the
  API server's ``format: date-time`` check on the CRD.  A space instead of ``T`` (which
  RFC 3339 only mentions in a note) is refused: the API server refuses it too, and a
  state file must move into a cluster unchanged.
- More than six fraction digits are accepted and truncated to microseconds.
- ``-00:00`` (UTC, local offset unknown) is UTC.
- A leap second (``:60``) cannot be represented and is refused.
- Refused, although :meth:`datetime.fromisoformat` takes them: a date alone
  (``2026-12-01``), no seconds (``2026-12-01T10:00Z``), ISO week or ordinal dates
  (``2026-W48-2T10:00Z``), the basic format (``20261201T1000Z``), ``+0100`` offsets,
  surrounding spaces, digits that are not ASCII; and a time without a zone, which would
  mean something different on every host.

Relative forms (``--until 30m``) are the CLI's own and parsed there.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

EXAMPLE = "2026-12-01T10:00:00Z"
EXPECTED = (
    f"an RFC 3339 time such as {EXAMPLE}: YYYY-MM-DDTHH:MM:SS, optionally a .fraction, "
    "then the time zone, Z or ±HH:MM"
)
"""What a refused time should have been, for error messages."""

_DATE_TIME = re.compile(
    r"(?P<year>[0-9]{4})-(?P<month>[0-9]{2})-(?P<day>[0-9]{2})[Tt]"
    r"(?P<hour>[0-9]{2}):(?P<minute>[0-9]{2}):(?P<second>[0-9]{2})(?:\.(?P<fraction>[0-9]+))?"
    r"(?P<zone>[Zz]|(?P<sign>[+-])(?P<off_hour>[0-9]{2}):(?P<off_minute>[0-9]{2}))?",
    re.ASCII,
)


class TimeFormatError(ValueError):
    """Text that is not an RFC 3339 date-time.  The message says what was wrong and what
    is expected; the caller adds which field it was (``--until: ...``)."""

    def __init__(self, message: str, *, naive: bool = False, detail: str = "") -> None:
        super().__init__(message)
        self.naive = naive
        """True when the text is a valid date and time but names no time zone."""
        self.detail = detail
        """Why a well-formed text is still refused (``day is out of range for month``)."""


def as_utc(moment: datetime) -> datetime:
    """``moment`` in UTC, for showing it; a naive one is taken as UTC already (the sources
    produce UTC; a reader is lenient where a writer, :func:`rfc3339`, is not)."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def rfc3339(moment: datetime, *, micro: bool = False) -> str:
    """``moment`` in UTC as ``2026-12-01T10:00:00Z``; with ``micro``, always six fraction
    digits (``2026-12-01T10:00:00.000000Z``, a Kubernetes ``MicroTime``).

    A naive ``moment`` is refused (:class:`ValueError`): its zone would be a guess."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"cannot write a time without a time zone as RFC 3339: {moment!r}")
    utc = moment.astimezone(UTC).replace(tzinfo=None)
    # isoformat, not strftime: %Y does not pad years before 1000 on every platform.
    return utc.isoformat(timespec="microseconds" if micro else "seconds") + "Z"


def rfc3339_exact(moment: datetime) -> str:
    """:func:`rfc3339` keeping a fraction of a second when ``moment`` has one: for a time
    handed on rather than shown (``mwm on --until`` sent to the admin API or written to a
    ServiceChecker), which should arrive as the user meant it."""
    return rfc3339(moment, micro=moment.microsecond != 0)


def rfc3339_or_none(moment: datetime | None) -> str | None:
    """:func:`rfc3339`, with None (JSON ``null``) for an unknown time."""
    return None if moment is None else rfc3339(moment)


def _refused(text: object, why: str = "") -> TimeFormatError:
    return TimeFormatError(
        f"expected {EXPECTED}, got {text!r}" + (f": {why}" if why else ""), detail=why
    )


def parse_rfc3339(text: str) -> datetime:
    """An aware :class:`datetime` from an RFC 3339 ``date-time``; anything else (see the
    module's documentation) raises :class:`TimeFormatError` saying what was expected.

    The offset is kept as written (``+02:00`` stays ``+02:00``); :func:`rfc3339` writes UTC."""
    if not isinstance(text, str):
        raise _refused(text)
    match = _DATE_TIME.fullmatch(text)
    if match is None:
        raise _refused(text)
    if match["zone"] is None:
        raise TimeFormatError(
            f"time {text!r} has no time zone; add one, e.g. {EXAMPLE}", naive=True
        )
    if match["second"] == "60":
        raise _refused(text, "leap seconds (:60) are not supported")
    if match["sign"] is None:
        zone: timezone = UTC
    else:
        off_hour, off_minute = int(match["off_hour"]), int(match["off_minute"])
        if off_hour > 23 or off_minute > 59:
            raise _refused(text, "the offset is out of range")
        offset = timedelta(hours=off_hour, minutes=off_minute)
        zone = timezone(-offset if match["sign"] == "-" else offset) if offset else UTC
    fraction = (match["fraction"] or "")[:6].ljust(6, "0")
    try:
        parsed = datetime(
            int(match["year"]),
            int(match["month"]),
            int(match["day"]),
            int(match["hour"]),
            int(match["minute"]),
            int(match["second"]),
            int(fraction),
            tzinfo=zone,
        )
    except ValueError as exc:  # month 13, 30 February, hour 24, year 0000...
        raise _refused(text, str(exc)) from None
    try:
        parsed.astimezone(UTC)  # 0001-01-01T00:00:00+01:00 has no UTC equivalent
    except OverflowError:
        raise _refused(text, "outside the years 0001-9999 in UTC") from None
    return parsed
