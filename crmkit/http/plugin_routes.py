"""Plugins' own HTTP routes (the ``register_routes`` hook), served under
``/plugins/<plugin>/``, and what their handlers need: a tenant scope that keeps a
plugin invisible where it is not enabled, and a rate limit."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from litestar import Request, Response, Router
from litestar.stores.base import Store

from crmkit.errors import CrmError, NotFound, RateLimited, Unauthenticated
from crmkit.http.rate_limits import RATE_LIMIT_STORE, count_request
from crmkit.plugins.info import CORE, TenantContext

if TYPE_CHECKING:
    from crmkit.platform import Platform

PLUGIN_OPT = "crmkit_plugin"
"""The ``opt`` key naming the plugin a route belongs to: set by crmkit on the plugin's
router, so a handler cannot act as another plugin."""

STATUS = {
    "UNAUTHENTICATED": 401,
    "FORBIDDEN": 403,
    "NOT_FOUND": 404,
    "BAD_USER_INPUT": 400,
    "PLUGIN_NOT_ENABLED": 404,
    "CONSENT_REQUIRED": 409,
    "CONFLICT": 409,
    "RATE_LIMITED": 429,
}


def error_status(error: CrmError) -> int:
    """The HTTP status crmkit answers ``error`` with when a plugin's handler raises it;
    for a handler that answers the error itself (an HTML page instead of JSON).
    Exported as ``crmkit.error_status``."""
    return STATUS.get(error.code, 500)


class HidePluginPaths(logging.Filter):
    """Access-log lines show ``/plugins/<plugin>/…`` without the rest of the path: a
    plugin's route may carry a single-use token in it (a survey link), and a log is
    no place for a credential."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            path = args[2]
            if path.startswith("/plugins/"):
                plugin = path.split("/", 3)[2]
                record.args = (*args[:2], f"/plugins/{plugin}/…", *args[3:])
        return True


def hide_plugin_paths(logger: logging.Logger) -> None:
    """Install :class:`HidePluginPaths` on ``logger`` (uvicorn's access log), once."""
    if not any(isinstance(f, HidePluginPaths) for f in logger.filters):
        logger.addFilter(HidePluginPaths())


def crm_error_response(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """A :class:`crmkit.CrmError` from a plugin's handler, as JSON with its status."""
    assert isinstance(exc, CrmError)
    headers = {"Cache-Control": "no-store"}
    if isinstance(exc, RateLimited):
        headers["Retry-After"] = str(exc.extensions.get("retry_after", 60))
    return Response(
        {"error": exc.code, "message": exc.message},
        status_code=error_status(exc),
        headers=headers,
    )


def plugin_routers(routes_by_plugin: Iterable[tuple[str, Iterable[Any]]]) -> list[Router]:
    """One router per plugin that declared routes, under ``/plugins/<plugin>``."""
    return [
        Router(
            path=f"/plugins/{plugin}",
            route_handlers=list(routes),
            opt={PLUGIN_OPT: plugin},
            exception_handlers={CrmError: crm_error_response},
            include_in_schema=False,
        )
        for plugin, routes in routes_by_plugin
        if plugin != CORE and routes
    ]


def _plugin_of(request: Request[Any, Any, Any]) -> str:
    plugin = request.route_handler.opt.get(PLUGIN_OPT)
    if not isinstance(plugin, str):
        raise RuntimeError("crmkit.plugin_scope works only in a plugin's own routes (register_routes)")
    return plugin


@asynccontextmanager
async def plugin_scope(request: Request[Any, Any, Any], tenant_id: uuid.UUID) -> AsyncIterator[TenantContext]:
    """The calling plugin's context in ``tenant_id``, in one transaction that commits
    when the block ends (and rolls back on an exception).

    A tenant that does not exist, is not active or has not enabled the plugin reads
    as :class:`crmkit.NotFound`, like an unknown id: a route never tells whether a
    tenant exists.
    """
    plugin = _plugin_of(request)
    platform: Platform = request.app.state["platform"]
    entered = False
    try:
        async with platform.tenant_scope(tenant_id) as scope:
            if plugin not in scope.state.plugins:
                raise NotFound("not found")
            entered = True
            yield scope.hooks.context_for(plugin)
    except (NotFound, Unauthenticated) as exc:
        if entered:  # the handler's own error, with its own message
            raise
        raise NotFound("not found") from exc  # no such tenant, not active, or not enabled


async def rate_limit(request: Request[Any, Any, Any], key: str, *, per_minute: int) -> None:
    """Count one request under ``key`` (a token, ``request.client.host``) for the calling
    plugin; :class:`crmkit.RateLimited` once ``per_minute`` requests passed in the last
    sixty seconds (:mod:`crmkit.http.rate_limits`: a sliding window, refused requests
    not counted, every server process counting together where Redis is configured)."""
    store: Store = request.app.stores.get(RATE_LIMIT_STORE)
    await count_request(store, f"plugin:{_plugin_of(request)}:{key}", per_minute)
