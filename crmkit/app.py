"""The litestar application factory: ``crmkit.app:create_app``."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar, get
from litestar.datastructures import State

from crmkit.auth.operator import OperatorTokens
from crmkit.auth.routes import ROUTES as OAUTH_ROUTES
from crmkit.auth.tokens import TokenService
from crmkit.graphql.handler import TenantEndpoint, graphiql, graphiql_assets, graphql_post
from crmkit.http.plugin_routes import plugin_routers
from crmkit.jobs.backends import InlineQueue
from crmkit.platform import Platform
from crmkit.tenants.operator import OperatorEndpoint, operator_graphql


@get("/healthz", include_in_schema=False)
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


def create_app(platform: Platform | None = None) -> Litestar:
    """Build the ASGI app. Without a platform one is made from the environment and
    closed at shutdown; a given platform stays the caller's."""
    owned = platform is None
    platform = platform or Platform()
    logging.basicConfig(level=logging.INFO)
    _ = platform.schemas  # compose the installed plugins' types now, not on a request
    # what start-up built lives as long as the process: keep the collector off it
    gc.collect()
    gc.freeze()

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        queue = platform.queue
        scheduler = None
        if isinstance(queue, InlineQueue):  # no worker process: cron runs here
            scheduler = asyncio.create_task(queue.run_scheduler())
        try:
            yield
        finally:
            if scheduler is not None:
                scheduler.cancel()
            if owned:
                await platform.close()

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
        openapi_config=None,
    )
