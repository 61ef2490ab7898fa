"""Business-time arithmetic, table-driven: deadlines across evenings, weekends, public
holidays, the tenant's own closures, daylight-saving changes and other working weeks."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from crmkit_cases.calendar import BusinessCalendar
from crmkit_cases.settings import CasesSettings

BERLIN = ZoneInfo("Europe/Berlin")


def calendar(**settings: object) -> BusinessCalendar:
    return BusinessCalendar.of(CasesSettings.model_validate(settings))


GERMANY = calendar(time_zone="Europe/Berlin", country="DE")
"""9-18 Monday to Friday; Monday 9 June 2025 is Whit Monday, a public holiday."""
GERMANY_NO_HOLIDAYS = calendar(time_zone="Europe/Berlin")
GERMANY_CLOSED_WEDNESDAY = calendar(
    time_zone="Europe/Berlin", country="DE", closures=["2025-06-11"]
)
ENGLAND = calendar(time_zone="Europe/London", country="GB", subdivision="ENG")
SUNDAY_TO_THURSDAY = calendar(time_zone="Asia/Jerusalem", working_days=[6, 0, 1, 2, 3])
EARLY_DESK = calendar(opens_at="08:00", closes_at="16:30")


def at(zone: ZoneInfo | str, *parts: int) -> datetime:
    return datetime(*parts, tzinfo=ZoneInfo(zone) if isinstance(zone, str) else zone)  # type: ignore[misc]


FRIDAY_17 = at(BERLIN, 2025, 6, 6, 17)

ADD = [
    (
        "24h from Friday 17:00 skip the weekend and Whit Monday",
        GERMANY,
        FRIDAY_17,
        timedelta(hours=24),
        at(BERLIN, 2025, 6, 12, 14),
    ),
    ("48h from Friday 17:00", GERMANY, FRIDAY_17, timedelta(hours=48), at(BERLIN, 2025, 6, 17, 11)),
    (
        "ending exactly at closing ends there",
        GERMANY,
        FRIDAY_17,
        timedelta(hours=1),
        at(BERLIN, 2025, 6, 6, 18),
    ),
    (
        "a minute past closing goes on after the holiday",
        GERMANY,
        FRIDAY_17,
        timedelta(minutes=61),
        at(BERLIN, 2025, 6, 10, 9, 1),
    ),
    (
        "opened on Saturday, the clock starts Tuesday",
        GERMANY,
        at(BERLIN, 2025, 6, 7, 10),
        timedelta(hours=1),
        at(BERLIN, 2025, 6, 10, 10),
    ),
    (
        "opened before opening time",
        GERMANY,
        at(BERLIN, 2025, 6, 10, 8),
        timedelta(minutes=30),
        at(BERLIN, 2025, 6, 10, 9, 30),
    ),
    (
        "opened after closing time",
        GERMANY,
        at(BERLIN, 2025, 6, 10, 18, 30),
        timedelta(minutes=30),
        at(BERLIN, 2025, 6, 11, 9, 30),
    ),
    (
        "no time adds nothing",
        GERMANY,
        at(BERLIN, 2025, 6, 10, 12),
        timedelta(0),
        at(BERLIN, 2025, 6, 10, 12),
    ),
    (
        "a whole working day",
        GERMANY,
        at(BERLIN, 2025, 6, 10, 12),
        timedelta(hours=9),
        at(BERLIN, 2025, 6, 11, 12),
    ),
    (
        "without a country Whit Monday is a working day",
        GERMANY_NO_HOLIDAYS,
        FRIDAY_17,
        timedelta(hours=24),
        at(BERLIN, 2025, 6, 11, 14),
    ),
    (
        "the tenant's own closure is skipped too",
        GERMANY_CLOSED_WEDNESDAY,
        FRIDAY_17,
        timedelta(hours=24),
        at(BERLIN, 2025, 6, 13, 14),
    ),
    (
        "the warning share: 80 % of 24h",
        GERMANY,
        FRIDAY_17,
        timedelta(minutes=1152),
        at(BERLIN, 2025, 6, 12, 9, 12),
    ),
    (
        "over the spring daylight-saving change",
        GERMANY,
        at(BERLIN, 2025, 3, 28, 17),
        timedelta(hours=2),
        at(BERLIN, 2025, 3, 31, 10),
    ),
    (
        "over the autumn daylight-saving change",
        GERMANY,
        at(BERLIN, 2025, 10, 24, 17),
        timedelta(hours=2),
        at(BERLIN, 2025, 10, 27, 10),
    ),
    (
        "Christmas and Boxing Day in England",
        ENGLAND,
        at("Europe/London", 2025, 12, 24, 17),
        timedelta(hours=2),
        at("Europe/London", 2025, 12, 29, 10),
    ),
    (
        "a Sunday-to-Thursday week",
        SUNDAY_TO_THURSDAY,
        at("Asia/Jerusalem", 2025, 6, 5, 17),
        timedelta(hours=2),
        at("Asia/Jerusalem", 2025, 6, 8, 10),
    ),
    (
        "a desk open 8:00-16:30",
        EARLY_DESK,
        at("UTC", 2025, 1, 6, 16),
        timedelta(hours=1),
        at("UTC", 2025, 1, 7, 8, 30),
    ),
    (
        "a week of 45 hours lands on the same weekday",
        GERMANY,
        at(BERLIN, 2025, 7, 7, 12),
        timedelta(hours=45),
        at(BERLIN, 2025, 7, 14, 12),
    ),
]

BETWEEN = [
    (
        "Friday 17:00 to Tuesday 10:00 over Whit Monday",
        GERMANY,
        FRIDAY_17,
        at(BERLIN, 2025, 6, 10, 10),
        timedelta(hours=2),
    ),
    (
        "Friday 17:00 to Thursday 14:00",
        GERMANY,
        FRIDAY_17,
        at(BERLIN, 2025, 6, 12, 14),
        timedelta(hours=24),
    ),
    (
        "a closed weekend and holiday count nothing",
        GERMANY,
        at(BERLIN, 2025, 6, 7, 10),
        at(BERLIN, 2025, 6, 9, 23),
        timedelta(0),
    ),
    (
        "an end before the start counts nothing",
        GERMANY,
        at(BERLIN, 2025, 6, 10, 10),
        at(BERLIN, 2025, 6, 10, 9),
        timedelta(0),
    ),
    (
        "one open day seen from before to after hours",
        GERMANY,
        at(BERLIN, 2025, 6, 10, 8),
        at(BERLIN, 2025, 6, 10, 20),
        timedelta(hours=9),
    ),
    (
        "over the spring daylight-saving change",
        GERMANY,
        at(BERLIN, 2025, 3, 28, 17),
        at(BERLIN, 2025, 3, 31, 10),
        timedelta(hours=2),
    ),
    (
        "within one morning",
        GERMANY,
        at(BERLIN, 2025, 6, 10, 9, 15),
        at(BERLIN, 2025, 6, 10, 11, 45),
        timedelta(hours=2, minutes=30),
    ),
]


@pytest.mark.parametrize(
    ("case", "cal", "start", "duration", "expected"), ADD, ids=[c[0] for c in ADD]
)
def test_add(
    case: str, cal: BusinessCalendar, start: datetime, duration: timedelta, expected: datetime
) -> None:
    assert cal.add(start, duration) == expected


@pytest.mark.parametrize(
    ("case", "cal", "start", "end", "expected"), BETWEEN, ids=[c[0] for c in BETWEEN]
)
def test_between(
    case: str, cal: BusinessCalendar, start: datetime, end: datetime, expected: timedelta
) -> None:
    assert cal.between(start, end) == expected


@pytest.mark.parametrize(
    ("case", "cal", "start", "duration", "expected"), ADD, ids=[c[0] for c in ADD]
)
def test_between_undoes_add(
    case: str, cal: BusinessCalendar, start: datetime, duration: timedelta, expected: datetime
) -> None:
    assert cal.between(start, cal.add(start, duration)) == duration


def test_holidays_and_closures_close_the_desk() -> None:
    assert not GERMANY.is_open_on(date(2025, 6, 9))
    assert GERMANY_NO_HOLIDAYS.is_open_on(date(2025, 6, 9))
    assert not GERMANY_CLOSED_WEDNESDAY.is_open_on(date(2025, 6, 11))
    assert not GERMANY.is_open_on(date(2025, 6, 7))


@pytest.mark.parametrize(
    "settings",
    [
        {"time_zone": "Mars/Olympus"},
        {"country": "XX"},
        {"opens_at": time(18), "closes_at": time(9)},
        {"working_days": [7]},
        {"routing": [{"team": "nobody"}]},
        {"slas": [{"kind": "complaint", "first_response_hours": 1, "resolution_hours": 2}]},
    ],
)
def test_bad_settings_are_refused(settings: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        CasesSettings.model_validate(settings)
