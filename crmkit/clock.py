"""The platform's clock: every "now" in crmkit and its plugins comes from here.

Code asks :func:`utcnow` instead of ``datetime.now``, so a test can freeze time and
move it forward (``crmkit.testing``'s ``clock`` fixture) to check expiry windows,
SLAs, grace periods and cron jobs without waiting. Production never sets a clock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

_now: Callable[[], datetime] = lambda: datetime.now(UTC)  # noqa: E731


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return _now()


class FrozenClock:
    """A clock that stands still until moved: ``clock.advance(days=30)``."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("a clock's time must be timezone-aware")
        self.now = start.astimezone(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta | None = None, **parts: float) -> datetime:
        """Move forward by ``delta`` or by ``timedelta(**parts)``; the new time."""
        self.now += delta if delta is not None else timedelta(**parts)
        return self.now

    def set(self, moment: datetime) -> None:
        self.now = moment.astimezone(UTC)


@contextmanager
def use_clock(clock: Callable[[], datetime]) -> Iterator[None]:
    """Make ``clock`` the platform's clock for the duration of the block."""
    global _now
    previous, _now = _now, clock
    try:
        yield
    finally:
        _now = previous
