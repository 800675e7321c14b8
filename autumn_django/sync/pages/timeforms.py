"""The forms parsed times are handed to the writer in (no Django: the prefetch child runs this).

Autumn's times are epoch milliseconds. The ORM takes aware datetimes; the writer's own SQL
takes the text its database stores (``MirrorWriter.form``), so the prefetch child parses
times straight into that text. A customer has ~19 times: going through a datetime and
``str`` or ``isoformat`` cost 3.7 µs a time, a sixth of the child's work on a first sync.
``_EpochText`` builds the same text from a day cached as text and tables of clock parts,
in 1.1 µs (``test_records``: equal to the datetime's own text, edges and floats included).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_DAY_MS = 86_400_000

# Epoch milliseconds (an int, or a float Autumn sent) to the form, None to None (a call
# less for each of a row's absent times); OverflowError or ValueError when it is no time
# a datetime can hold.
MsConverter = Callable[[int | float | None], Any]


def _aware(ms: int | float | None) -> datetime | None:
    if ms is None:
        return None
    # Whole microseconds: exact, and half the cost of timedelta(milliseconds=...).
    return EPOCH + (timedelta(0, 0, ms * 1000) if type(ms) is int else timedelta(milliseconds=ms))


_HOURS = [f"{hour:02d}:" for hour in range(24)]
_MINUTES_SECONDS = [f"{minute:02d}:{second:02d}" for minute in range(60) for second in range(60)]
# A datetime's text leaves out a zero fraction; Autumn's milliseconds are whole microseconds.
_FRACTIONS = ["", *(f".{ms:03d}000" for ms in range(1, 1000))]
_CACHED_DAYS = 4096  # ~11 years of days, ~0.5 MiB; cleared when full


class _EpochText:
    """Epoch milliseconds as the text ``str`` (``separator`` " ") or ``isoformat``
    (``separator`` "T", ``suffix`` "+00:00") gives for the datetime: one text per day is
    cached, the clock comes from tables."""

    def __init__(self, separator: str, suffix: str, slow: Callable[[datetime], str]) -> None:
        self._separator, self._suffix, self._slow = separator, suffix, slow
        self._days: dict[int, str] = {}

    def __call__(self, ms: int | float | None) -> str | None:
        if type(ms) is not int:  # a float (rare: its fraction may not be whole microseconds) or None
            return None if ms is None else self._slow(_aware(ms))
        day, rest = divmod(ms, _DAY_MS)
        date = self._days.get(day)
        if date is None:
            date = self._date(day)
        second, milli = divmod(rest, 1000)
        hour, second = divmod(second, 3600)
        return date + _HOURS[hour] + _MINUTES_SECONDS[second] + _FRACTIONS[milli] + self._suffix

    def _date(self, day: int) -> str:
        if len(self._days) >= _CACHED_DAYS:
            self._days.clear()
        date = self._days[day] = (EPOCH + timedelta(days=day)).date().isoformat() + self._separator
        return date


class TimeForm:
    """How parsed times are handed to the writer: ``from_ms`` turns epoch milliseconds into
    that form while parsing, ``from_datetime`` turns a datetime into it."""

    def __init__(self, from_ms: MsConverter, from_datetime: Callable[[datetime], Any]) -> None:
        self.from_ms, self.from_datetime = from_ms, from_datetime


# Aware datetimes in UTC: what the ORM takes, and the form of a record parsed without one.
DATETIMES = TimeForm(_aware, lambda value: value)
TIME_FORMS: dict[str, TimeForm] = {
    # Django's SQLite backend stores naive UTC text: "2024-05-01 12:00:00.123000".
    "sqlite-utc": TimeForm(_EpochText(" ", "", lambda value: str(value.replace(tzinfo=None))),
                           lambda value: str(value.astimezone(timezone.utc).replace(tzinfo=None))),
    # PostgreSQL reads ISO 8601 with an offset into timestamptz (COPY and parameters alike).
    "iso": TimeForm(_EpochText("T", "+00:00", datetime.isoformat), lambda value: value.isoformat()),
}


def time_form(style: str | None) -> TimeForm:
    """The form ``style`` names (a key of ``TIME_FORMS``); None: aware datetimes."""
    return TIME_FORMS[style] if style else DATETIMES
