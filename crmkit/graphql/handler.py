"""``/graphql`` over HTTP: authenticate, pick the tenant's schema, run one transaction.

A hand-written litestar handler rather than strawberry's controller: the schema is
chosen per request from the token's tenant, and the request stays on the event loop
(strawberry's litestar controller hops to a thread for its ``response`` dependency).
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

from litestar import Request, Response, get, post
from litestar.exceptions import HTTPException
from strawberry.http.ides import get_graphql_ide_html
from strawberry.types.graphql import OperationType

from crmkit.auth.tokens import TokenService
from crmkit.core.audit.trail import Actor, bind_actor, note
from crmkit.errors import NotFound, Unauthenticated
from crmkit.graphql.context import RequestContext
from crmkit.graphql.errors import error_body, format_error
from crmkit.platform import Platform
from crmkit.principal import Principal

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 256 * 1024


def json_response(body: dict[str, Any], status: int = 200) -> Response[bytes]:
    return Response(
        content=json.dumps(body, separators=(",", ":"), default=str).encode(),
        status_code=status,
        media_type="application/json",
    )


def bearer_token(request: Request[Any, Any, Any]) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("send an access token: Authorization: Bearer <token>")
    return token.strip()


def authenticate(request: Request[Any, Any, Any], tokens: TokenService) -> Principal:
    return tokens.verify(bearer_token(request))


async def read_operation(request: Request[Any, Any, Any]) -> dict[str, Any]:
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        raise HTTPException(status_code=413, detail="request body too large")
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if not isinstance(data, dict) or not isinstance(data.get("query"), str):
        raise HTTPException(status_code=400, detail='send JSON {"query": "...", "variables": {...}}')
    if not isinstance(data.get("variables") or {}, dict):
        raise HTTPException(status_code=400, detail="variables must be a JSON object")
    return data


def _log_disclosures(session: Any, context: RequestContext) -> None:
    for target_type, (ids, names) in context.disclosures.items():
        note(session, context.tenant_id, "read", target_type, [str(i) for i in ids], sorted(names))


@post("/graphql", status_code=200)
async def graphql_post(request: Request[Any, Any, Any]) -> Response[bytes]:
    platform: Platform = request.app.state.platform
    tokens: TokenService = request.app.state.tokens
    request_id = uuid.uuid4().hex
    operation = await read_operation(request)
    try:
        principal = authenticate(request, tokens)
    except Unauthenticated as exc:
        return json_response({"errors": [error_body(exc.code, exc.message, request_id)]}, 401)

    async with platform.db.session_for(principal.tenant_id) as session:
        try:
            await session.begin()
            bind_actor(session, Actor.from_subject(principal.subject), request_id)
            scope = await platform.bind(session, principal.tenant_id)
            await tokens.ensure_not_revoked(session, principal)
        except (Unauthenticated, NotFound) as exc:
            message = exc.message if isinstance(exc, Unauthenticated) else "the token's tenant does not exist"
            return json_response({"errors": [error_body("UNAUTHENTICATED", message, request_id)]}, 401)
        schema = platform.schemas.for_plugins(scope.state.plugins)
        context = RequestContext(
            principal=principal,
            session=session,
            hooks=scope.hooks,
            settings=platform.settings,
            request_id=request_id,
        )
        result = await schema.execute(
            operation["query"],
            variable_values=operation.get("variables"),
            context_value=context,
            operation_name=operation.get("operationName"),
        )
        data = result.data
        if result.errors:
            await session.rollback()
            if context.operation_type is OperationType.MUTATION:
                data = None  # the operation is one transaction: nothing of it stands
            elif context.disclosures:  # what a partial answer showed is still logged
                await session.begin()
                _log_disclosures(session, context)
                await session.commit()
        else:
            _log_disclosures(session, context)
            await session.commit()
    if not result.errors:
        await platform.db.committed(session)
    body: dict[str, Any] = {"data": data}
    if result.errors:
        plugin_of_field = platform.schemas.types.plugin_of_field
        body["errors"] = [format_error(e, request_id, plugin_of_field) for e in result.errors]
    return json_response(body)


@get("/graphql", include_in_schema=False)
async def graphiql(request: Request[Any, Any, Any]) -> Response[str]:
    """GraphiQL, in development mode only."""
    platform: Platform = request.app.state.platform
    if not platform.settings.dev_mode:
        raise HTTPException(status_code=404, detail="GraphiQL is off outside development mode")
    return Response(get_graphql_ide_html(graphql_ide="graphiql"), media_type="text/html")
