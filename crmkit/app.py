"""The litestar application factory: ``crmkit.app:create_app``."""

from __future__ import annotations

import asyncio
import gc
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar, Request, Response, get
from litestar.datastructures import State
from litestar.exceptions import TooManyRequestsException
from litestar.middleware.rate_limit import get_remote_address
from litestar.stores.base import Store
from litestar.stores.memory import MemoryStore
from litestar.stores.redis import RedisStore

from crmkit.auth.tokens import TokenService
from crmkit.graphql.errors import error_body
from crmkit.http.graphql import (
    TenantEndpoint,
    graphiql,
    graphiql_assets,
    graphql_post,
    json_response,
    rate_limit_caller,
)
from crmkit.http.oauth import AUTHORIZE, INTROSPECT, REVOKE, TOKEN, rate_limited_page
from crmkit.http.oauth import ROUTES as OAUTH_ROUTES
from crmkit.http.operator import OperatorEndpoint, operator_graphql
from crmkit.http.plugin_routes import hide_plugin_paths, plugin_routers
from crmkit.http.rate_limits import RATE_LIMIT_STORE, Limit, RateLimits
from crmkit.jobs.backends import InlineQueue
from crmkit.platform import Platform
from crmkit.platform.operator_tokens import OperatorTokens
from crmkit.settings import Settings


@get("/healthz", include_in_schema=False)
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


GRAPHQL_PATHS = frozenset({"/graphql", "/operator/graphql"})
TOKEN_PATHS = frozenset({TOKEN, REVOKE, INTROSPECT})


def rate_limit_store(settings: Settings) -> Store:
    """Where the counts live: Redis when configured, so every server process counts
    against the same limits; else this process's memory."""
    if settings.redis_url:
        return RedisStore.with_client(settings.redis_url, namespace="crmkit-rate-limit")
    return MemoryStore()


def rate_limits(settings: Settings) -> RateLimits:
    """The platform's limits: login and token endpoints per client address, GraphQL per
    token subject."""
    return RateLimits(
        [
            Limit("login", settings.rate_limit_login_per_minute, frozenset({AUTHORIZE}), get_remote_address),
            Limit("token", settings.rate_limit_token_per_minute, TOKEN_PATHS, get_remote_address),
            Limit("graphql", settings.rate_limit_graphql_per_minute, GRAPHQL_PATHS, rate_limit_caller),
        ]
    )


def rate_limited(request: Request[Any, Any, Any], exc: TooManyRequestsException) -> Response[Any]:
    """A request over its limit, answered in its endpoint's own error shape with
    ``Retry-After`` (the seconds until enough of the caller's requests age out)."""
    seconds = max(1, int((exc.headers or {}).get("Retry-After", "60")))
    headers = {"Retry-After": str(seconds), "Cache-Control": "no-store"}
    message = f"too many requests: try again in {seconds} seconds"
    path = request.url.path
    if path in GRAPHQL_PATHS:
        request_id = uuid.uuid4().hex
        return json_response({"errors": [error_body("RATE_LIMITED", message, request_id)]}, 429, headers)
    if path == AUTHORIZE:
        return rate_limited_page(message, headers)
    return json_response({"error": "RATE_LIMITED", "error_description": message}, 429, headers)


def settle_collector(gen0_threshold: int) -> None:
    """Once started: what start-up built (modules, schemas, the platform) lives as long
    as the process, so it leaves the collector's scans (``gc.freeze``); and the young
    generation is collected every ``gen0_threshold`` allocations instead of Python's 700,
    which a GraphQL page's tens of thousands of short-lived objects crossed dozens of
    times per request, each time also scanning the request's other survivors."""
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(gen0_threshold, gen1, gen2)


def create_app(platform: Platform | None = None) -> Litestar:
    """Build the ASGI app. Without a platform one is made from the environment and
    closed at shutdown; a given platform stays the caller's. Outside development mode
    an issuer that is not an https URL is refused (:class:`ConfigurationError`)."""
    owned = platform is None
    platform = platform or Platform()
    platform.settings.check_issuer()
    logging.basicConfig(level=logging.INFO)
    hide_plugin_paths(logging.getLogger("uvicorn.access"))
    _ = platform.schemas  # compose the installed plugins' types now, not on a request

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        queue = platform.queue
        scheduler = None
        if isinstance(queue, InlineQueue):  # no worker process: cron runs here
            scheduler = asyncio.create_task(queue.run_scheduler())
        settle_collector(platform.settings.gc_gen0_threshold)
        async with store:  # closes the rate limits' Redis client at shutdown
            try:
                yield
            finally:
                if scheduler is not None:
                    scheduler.cancel()
                if owned:
                    await platform.close()

    store = rate_limit_store(platform.settings)
    tokens = TokenService(platform.settings)
    state = {
        "platform": platform,
        "tokens": tokens,
        "graphql": TenantEndpoint(platform, tokens),
        "operator_graphql": OperatorEndpoint(platform, OperatorTokens(tokens)),
    }
    return Litestar(
        route_handlers=[
            graphql_post,
            graphiql,
            graphiql_assets,
            operator_graphql,
            healthz,
            *OAUTH_ROUTES,
            *plugin_routers((d.plugin, d.routes) for d in platform.registry.declarations.values()),
        ],
        lifespan=[lifespan],
        state=State(state),
        stores={RATE_LIMIT_STORE: store},
        middleware=[rate_limits(platform.settings)],
        exception_handlers={TooManyRequestsException: rate_limited},
        openapi_config=None,
    )
