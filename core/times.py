"""Event time as integer microseconds since the Unix epoch (UTC): the one set of time helpers.

Features, labels and state are computed on these integers, never on wall-clock time.
"""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

from core.errors import UsageError

DAY_US = 86_400_000_000
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_US = timedelta(microseconds=1)


def to_us(t: datetime) -> int:
    """A timezone-aware time (datetime or pandas Timestamp) as microseconds since the epoch."""
    if t.tzinfo is None:
        raise ValueError(f"expected a timezone-aware UTC time, got naive {t}")
    return (t - EPOCH) // _US


def from_us(us: int) -> datetime:
    """Microseconds since the epoch as a UTC datetime."""
    return EPOCH + timedelta(microseconds=int(us))


def isoformat_z(t: datetime) -> str:
    """ISO-8601 with a trailing ``Z`` for UTC (``2025-03-01T00:00:00Z``)."""
    return t.isoformat().replace("+00:00", "Z")


def date_us(d: date) -> int:
    """The UTC midnight that starts calendar day ``d``."""
    return (d - EPOCH.date()).days * DAY_US


def midnight_us(us: int) -> int:
    """The UTC midnight at or before ``us``."""
    return us - us % DAY_US


def parse_utc_time(value: str, field: str) -> datetime:
    """An ISO-8601 time with an offset (``...Z``), as UTC; a UsageError naming ``field`` otherwise."""
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"{field}: expected an ISO-8601 UTC time such as 2025-03-01T00:00:00Z, got {value!r}") from None
    if t.tzinfo is None:
        raise UsageError(f"{field}: expected a timezone offset (e.g. a trailing Z), got naive {value!r}")
    return t.astimezone(timezone.utc)
