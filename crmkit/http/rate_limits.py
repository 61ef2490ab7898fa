"""Rate limits: the platform's own (login, token, GraphQL) and plugins' routes', counted
alike in the last sixty seconds.

A count per wall-clock minute lets a caller send twice its allowance across the turn of
a minute, and litestar's limiter keeps one timestamp per request (a limit of 6,000 a
minute decoded and encoded 6,000 numbers on every request). Here a caller's requests
are counted per second of the platform's clock, at most sixty numbers whatever the
limit, and a request is refused while the last sixty seconds hold ``per_minute``.
Refused requests do not count.

Counts live in a litestar store (Redis when configured, so every server process counts
together). They are read and written, not incremented atomically: concurrent requests
may pass a few over the limit, never fewer.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple, cast

from litestar import Request
from litestar.enums import ScopeType
from litestar.exceptions import TooManyRequestsException
from litestar.middleware import ASGIMiddleware
from litestar.stores.base import Store
from litestar.types import ASGIApp, HTTPScope, Receive, Scope, Send

from crmkit.clock import utcnow
from crmkit.errors import RateLimited

RATE_LIMIT_STORE = "rate_limit"
"""The litestar store rate limits count in: Redis when configured, else memory."""
WINDOW_SECONDS = 60


async def count_request(store: Store, name: str, per_minute: int) -> None:
    """Count one request under ``name``; :class:`RateLimited`, with the seconds to wait,
    while the last sixty seconds already hold ``per_minute``."""
    now = utcnow().timestamp()
    second = int(now)
    stored = await store.get(name)
    per_second = {int(at): n for at, n in json.loads(stored).items()} if stored else {}
    recent = {at: n for at, n in per_second.items() if at > second - WINDOW_SECONDS}
    if sum(recent.values()) >= per_minute:
        retry_after = _seconds_until_allowed(recent, per_minute, now)
        raise RateLimited(f"too many requests: try again in {retry_after} seconds", retry_after=retry_after)
    recent[second] = recent.get(second, 0) + 1
    await store.set(name, json.dumps(recent), expires_in=WINDOW_SECONDS)


def _seconds_until_allowed(per_second: dict[int, int], per_minute: int, now: float) -> int:
    """Whole seconds until enough of the window's requests have aged out of it."""
    in_window = sum(per_second.values())
    for at in sorted(per_second):
        in_window -= per_second[at]
        if in_window < per_minute:
            return max(1, math.ceil(at + WINDOW_SECONDS - now))
    return WINDOW_SECONDS


class Limit(NamedTuple):
    """One of the platform's limits: ``per_minute`` POSTs to ``paths`` per ``caller``
    (a client address, a token's subject)."""

    name: str
    per_minute: int
    paths: frozenset[str]
    caller: Callable[[Request[Any, Any, Any]], str]


class RateLimits(ASGIMiddleware):
    """The platform's limits in one middleware: a POST to a limited path is counted
    under its limit's name and caller, and refused with litestar's
    ``TooManyRequestsException`` (``Retry-After`` in its headers), which the app answers
    in the endpoint's own error shape."""

    scopes = (ScopeType.HTTP,)

    def __init__(self, limits: Iterable[Limit]) -> None:
        self.by_path = {path: limit for limit in limits for path in limit.paths}

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        limit = self.by_path.get(scope["path"]) if cast("HTTPScope", scope)["method"] == "POST" else None
        if limit is not None:
            request: Request[Any, Any, Any] = Request(scope)
            store = request.app.stores.get(RATE_LIMIT_STORE)
            try:
                await count_request(store, f"{limit.name}:{limit.caller(request)}", limit.per_minute)
            except RateLimited as exc:
                retry_after = str(exc.extensions["retry_after"])
                raise TooManyRequestsException(exc.message, headers={"Retry-After": retry_after}) from None
        await next_app(scope, receive, send)
