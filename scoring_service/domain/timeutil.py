"""Times: parsed from ISO 8601 with an offset, stored and shown in UTC. Dates of the works
(milestones, SPEC §11) are calendar dates in China time."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone

STORED_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
#: the text :func:`to_stored` writes (years from 1000): read by fromisoformat, which would also take other
#: texts of that length that strptime refuses (an offset, a week date, a space or a comma)
_STORED_TEXT = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T(?:[01][0-9]|2[0-3]):[0-9]{2}:[0-9]{2}\.[0-9]{6}Z")

#: China time (Asia/Shanghai), the zone of the programme's calendar dates: UTC+8 all year since
#: 1992 (no daylight saving), so a fixed offset is exact for the dates the service handles and
#: needs no time-zone database on the machine
CHINA = timezone(timedelta(hours=8), "Asia/Shanghai")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def today_china() -> date:
    """Today's date in China (Asia/Shanghai).

    Callers look it up through the module (``timeutil.today_china()``) so a test can
    monkeypatch it; a whole app is fixed to one date by its ``TODAY`` setting instead
    (:func:`scoring_service.services.clock.today`).
    """
    return datetime.now(CHINA).date()


def china_date(dt: datetime) -> date:
    """The calendar date in China of an aware time.

    >>> china_date(datetime(2018, 9, 30, 16, 30, tzinfo=timezone.utc))
    datetime.date(2018, 10, 1)
    """
    return dt.astimezone(CHINA).date()


def has_utc_time(dt: datetime) -> bool:
    """Whether an aware time has a UTC equivalent (``0001-01-01T00:00:00+14:00`` has none).

    >>> has_utc_time(datetime.fromisoformat("0001-01-01T00:00:00+14:00"))
    False
    """
    try:
        dt.astimezone(timezone.utc)
    except OverflowError:
        return False
    return True


def to_stored(dt: datetime) -> str:
    """Fixed-width UTC text that sorts in time order.

    >>> from datetime import timedelta
    >>> to_stored(datetime(2018, 9, 1, 8, 0, tzinfo=timezone(timedelta(hours=8))))
    '2018-09-01T00:00:00.000000Z'
    """
    if dt.tzinfo is None:
        raise ValueError("naive datetime")
    return dt.astimezone(timezone.utc).strftime(STORED_FORMAT)


def now_stored() -> str:
    return to_stored(utcnow())


def from_stored(text: str) -> datetime:
    """The aware UTC time of a stored text (:func:`to_stored`).

    >>> from_stored("2018-08-31T16:00:00.000000Z")
    datetime.datetime(2018, 8, 31, 16, 0, tzinfo=datetime.timezone.utc)
    """
    if _STORED_TEXT.fullmatch(text):  # the stored form: fromisoformat, 40× faster
        return datetime.fromisoformat(text[:-1]).replace(tzinfo=timezone.utc)
    return datetime.strptime(text, STORED_FORMAT).replace(tzinfo=timezone.utc)
