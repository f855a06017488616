"""Times: parsed from ISO 8601 with an offset, stored and shown in UTC."""

from __future__ import annotations

from datetime import datetime, timezone

STORED_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


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
    return datetime.strptime(text, STORED_FORMAT).replace(tzinfo=timezone.utc)
