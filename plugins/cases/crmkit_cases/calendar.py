"""Business time: SLA clocks run only while the service desk is open.

A tenant's desk is open from ``opens_at`` to ``closes_at`` (wall-clock time in its zone)
on its working days, except on its country's public holidays and its own closures. Each
day's window is converted to UTC on its own, so a clock crossing a daylight-saving change
still counts the hours the desk was really open.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import holidays

from crmkit_cases.settings import CasesSettings

MAX_DAYS = 20 * 366
"""How far a clock may run before we call the calendar broken (every day closed)."""


@lru_cache(maxsize=64)
def _public_holidays(country: str, subdivision: str | None) -> holidays.HolidayBase:
    """One table per country and region: it fills in the years asked for as it goes."""
    return holidays.country_holidays(country, subdiv=subdivision)


@dataclass(frozen=True)
class BusinessCalendar:
    zone: ZoneInfo
    opens_at: time
    closes_at: time
    working_days: frozenset[int]
    closures: frozenset[date]
    country: str | None = None
    subdivision: str | None = None

    @classmethod
    def of(cls, settings: CasesSettings) -> BusinessCalendar:
        return cls(
            zone=ZoneInfo(settings.time_zone),
            opens_at=settings.opens_at,
            closes_at=settings.closes_at,
            working_days=frozenset(settings.working_days),
            closures=frozenset(settings.closures),
            country=settings.country,
            subdivision=settings.subdivision,
        )

    def is_open_on(self, day: date) -> bool:
        if day.weekday() not in self.working_days or day in self.closures:
            return False
        return self.country is None or day not in _public_holidays(self.country, self.subdivision)

    def _windows(self, start: datetime) -> Iterator[tuple[datetime, datetime]]:
        """The desk's open windows (UTC) from the local day of ``start`` on."""
        day = start.astimezone(self.zone).date()
        for offset in range(MAX_DAYS):
            current = day + timedelta(days=offset)
            if self.is_open_on(current):
                opens = datetime.combine(current, self.opens_at, self.zone)
                closes = datetime.combine(current, self.closes_at, self.zone)
                yield opens.astimezone(start.tzinfo), closes.astimezone(start.tzinfo)
        raise ValueError(f"the business calendar has no open day in {MAX_DAYS} days")

    def add(self, start: datetime, duration: timedelta) -> datetime:
        """The moment ``duration`` of business time after ``start``.

        Opened out of hours, the clock starts when the desk next opens; a duration that
        ends exactly at closing ends there, not at the next opening.
        """
        if duration <= timedelta(0):
            return start
        remaining = duration
        for opens, closes in self._windows(start):
            cursor = max(start, opens)
            if cursor >= closes:
                continue
            if cursor + remaining <= closes:
                return cursor + remaining
            remaining -= closes - cursor
        raise AssertionError("unreachable: _windows raises when it runs out")

    def between(self, start: datetime, end: datetime) -> timedelta:
        """The business time from ``start`` to ``end`` (zero when ``end`` is earlier)."""
        total = timedelta(0)
        if end <= start:
            return total
        for opens, closes in self._windows(start):
            if opens >= end:
                break
            overlap = min(closes, end) - max(opens, start)
            if overlap > timedelta(0):
                total += overlap
        return total
