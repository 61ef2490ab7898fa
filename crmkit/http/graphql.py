"""The GraphQL endpoints over HTTP: one request runner, and ``/graphql`` itself.

:func:`run_request` answers every GraphQL endpoint's requests (``/graphql`` and
``/operator/graphql``): it authenticates, reads and checks the body, picks the
operation, runs it through the endpoint and shapes every error the same way, so the
limits, the error shape and the handling of hostile input are written once.

A hand-written litestar handler rather than strawberry's controller: the schema is
chosen per request from the token's tenant, and the request stays on the event loop
(strawberry's litestar controller hops to a thread for its ``response`` dependency).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Protocol, TypeVar

from graphql import GraphQLError, OperationDefinitionNode, get_operation_ast
from joserfc import jwt
from joserfc.errors import JoseError
from litestar import Request, Response, get, post
from litestar.connection import ASGIConnection
from litestar.exceptions import NotFoundException
from litestar.exceptions.http_exceptions import RequestEntityTooLarge
from litestar.handlers import BaseRouteHandler
from litestar.middleware.rate_limit import get_remote_address
from litestar.static_files import create_static_files_router
from strawberry import Schema
from strawberry.types import ExecutionResult
from strawberry.types.graphql import OperationType

from crmkit.auth.tokens import ALGORITHM, TokenService
from crmkit.core.audit.trail import Actor, bind_actor, note
from crmkit.errors import NotFound, Unauthenticated
from crmkit.graphql.context import RequestContext
from crmkit.graphql.errors import error_body, format_error
from crmkit.platform import Platform
from crmkit.platform.schema import parse_document
from crmkit.principal import Principal

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 256 * 1024
BODY_FORM = 'send JSON {"query": "...", "variables": {...}, "operationName": "..."}'
GRAPHIQL = Path(__file__).parent / "graphiql"
"""GraphiQL's page and assets, shipped in the package: the browser fetches nothing
from outside the server."""

PrincipalT = TypeVar("PrincipalT")


@dataclass(frozen=True)
class Operation:
    """The operation a request asks for, checked: its document parses and names
    exactly one operation to run."""

    query: str
    variables: dict[str, Any] | None
    name: str | None
    type: OperationType


class Refused(Exception):
    """A request answered before GraphQL runs (HTTP ``status``), with one error."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


Execute = Callable[[Schema, object], Awaitable[ExecutionResult]]
"""Runs the request's operation on a schema with a context: what an endpoint calls."""


class Endpoint(Protocol[PrincipalT]):
    """What differs between the GraphQL endpoints: who may call, and what surrounds
    the execution (the tenant's transaction, or none)."""

    @property
    def plugin_of_field(self) -> Mapping[tuple[str, str], str]:
        """(type, field) -> the plugin that owns it, to name it in PLUGIN_NOT_ENABLED."""
        ...

    async def authenticate(self, token: str) -> PrincipalT:
        """The caller, or :class:`Unauthenticated`."""
        ...

    async def run(
        self, principal: PrincipalT, operation: Operation, request_id: str, execute: Execute
    ) -> ExecutionResult:
        """Call ``execute`` once with the schema and context for ``principal``.
        :class:`Unauthenticated` raised here answers 401 too."""
        ...


def json_response(
    body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None
) -> Response[bytes]:
    return Response(
        content=json.dumps(body, separators=(",", ":"), default=str).encode(),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


def bearer_token(request: Request[Any, Any, Any]) -> str | None:
    """The bearer token of the Authorization header, if the request has one."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def rate_limit_caller(request: Request[Any, Any, Any]) -> str:
    """Whom a GraphQL request counts against: the tenant and subject of a token this
    platform signed (an access or an operator token; the signature is checked, so no
    one spends another's allowance), else the client address. Per subject rather than
    per token, so minting more tokens buys no more requests."""
    token = bearer_token(request)
    if token is not None:
        tokens: TokenService = request.app.state.tokens
        try:  # a valid access token: verified once, then known (TokenService.verify)
            principal = tokens.verify(token)
        except Unauthenticated:
            pass
        else:
            return f"{principal.tenant_id}/{principal.subject}"
        try:  # an operator token, or an expired one
            claims = jwt.decode(token, tokens.key, algorithms=[ALGORITHM]).claims
        except (JoseError, ValueError):
            pass
        else:
            return f"{claims.get('tid', 'platform')}/{claims.get('sub')}"
    return get_remote_address(request)


async def run_request(request: Request[Any, Any, Any], endpoint: Endpoint[PrincipalT]) -> Response[bytes]:
    """Answer one GraphQL-over-HTTP request to ``endpoint``.

    The token is checked before the body is read, so an anonymous caller costs no
    parsing. A body that is no GraphQL request, or names no single operation, is a 400;
    errors of the document and of execution come in a 200 beside ``data``.
    """
    settings = request.app.state.platform.settings
    request_id = uuid.uuid4().hex
    token = bearer_token(request)
    try:
        if token is None:
            raise Unauthenticated("send an access token: Authorization: Bearer <token>")
        principal = await endpoint.authenticate(token)
        operation = await read_operation(request, settings.graphql_max_tokens)
        result = await endpoint.run(principal, operation, request_id, partial(_execute, operation))
    except Unauthenticated as exc:
        challenge = "Bearer" if token is None else 'Bearer error="invalid_token"'
        errors = [error_body(exc.code, exc.message, request_id)]
        return _answer(request_id, {"errors": errors}, 401, {"WWW-Authenticate": challenge})
    except Refused as exc:
        return _answer(
            request_id, {"errors": [error_body("BAD_USER_INPUT", exc.message, request_id)]}, exc.status
        )
    except GraphQLError as exc:  # the document does not parse
        result = ExecutionResult(data=None, errors=[exc])
    body: dict[str, Any] = {"data": result.data}
    if result.errors:
        suggestions = settings.dev_mode
        plugin_of_field = endpoint.plugin_of_field
        body["errors"] = [
            format_error(e, request_id, plugin_of_field, suggestions=suggestions) for e in result.errors
        ]
    return _answer(request_id, body, 200)


def _answer(
    request_id: str, body: dict[str, Any], status: int, headers: dict[str, str] | None = None
) -> Response[bytes]:
    """The response; its errors are logged at INFO by code and path, not by message
    (a message may quote the caller's data)."""
    if body.get("errors"):
        log.info("request %s answered %d: %s", request_id, status, ", ".join(map(_summary, body["errors"])))
    return json_response(body, status, headers)


def _summary(error: dict[str, Any]) -> str:
    code = str(error["extensions"]["code"])
    return f"{code} at {'.'.join(map(str, error['path']))}" if "path" in error else code


async def read_operation(request: Request[Any, Any, Any], max_tokens: int) -> Operation:
    """The request's operation, or :class:`Refused`; a GraphQLError if its document
    does not parse (or is over ``max_tokens``)."""
    try:
        raw = await request.body()
    except RequestEntityTooLarge:
        raise Refused(413, f"the body exceeds {MAX_BODY_BYTES // 1024} KiB") from None
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):  # not JSON, not UTF-8, or nested past the stack
        raise Refused(400, f"the body is not JSON: {BODY_FORM}") from None
    if not isinstance(data, dict):
        raise Refused(400, BODY_FORM)
    query, variables, name = data.get("query"), data.get("variables"), data.get("operationName")
    if not isinstance(query, str) or not query.strip():
        raise Refused(400, f'"query" must be a GraphQL document: {BODY_FORM}')
    if variables is not None and not isinstance(variables, dict):
        raise Refused(400, '"variables" must be a JSON object')
    if name is not None and not isinstance(name, str):
        raise Refused(400, '"operationName" must be a string')
    document = parse_document(query, max_tokens)
    chosen = get_operation_ast(document, name)
    if chosen is None:
        count = sum(isinstance(d, OperationDefinitionNode) for d in document.definitions)
        if name is not None:
            raise Refused(400, f"the document has no operation named {name!r}")
        if count == 0:
            raise Refused(400, "the document has no operation to run")
        raise Refused(400, f"the document has {count} operations: name the one to run in operationName")
    return Operation(query, variables, name, OperationType(chosen.operation.value))


async def _execute(operation: Operation, schema: Schema, context: object) -> ExecutionResult:
    return await schema.execute(
        operation.query,
        variable_values=operation.variables,
        context_value=context,
        operation_name=operation.name,
    )


def _log_disclosures(session: Any, context: RequestContext) -> None:
    for target_type, (ids, names) in context.disclosures.items():
        note(session, context.tenant_id, "read", target_type, [str(i) for i in ids], sorted(names))


class TenantEndpoint:
    """``/graphql``: a tenant's access token; the operation is one transaction of that
    tenant, run on the schema of its enabled plugins."""

    def __init__(self, platform: Platform, tokens: TokenService) -> None:
        self.platform = platform
        self.tokens = tokens

    @property
    def plugin_of_field(self) -> Mapping[tuple[str, str], str]:
        return self.platform.schemas.types.plugin_of_field

    async def authenticate(self, token: str) -> Principal:
        return self.tokens.verify(token)

    async def run(
        self, principal: Principal, operation: Operation, request_id: str, execute: Execute
    ) -> ExecutionResult:
        platform = self.platform
        async with platform.db.session_for(principal.tenant_id) as session:
            await session.begin()
            bind_actor(session, Actor.from_subject(principal.subject), request_id)
            try:
                scope = await platform.bind(session, principal.tenant_id)
            except NotFound:
                raise Unauthenticated("the token's tenant does not exist") from None
            await platform.access.ensure_not_revoked(session, principal)
            context = RequestContext(
                principal=principal,
                session=session,
                hooks=scope.hooks,
                settings=platform.settings,
                request_id=request_id,
            )
            result = await execute(platform.schemas.for_plugins(scope.state.plugins), context)
            if result.errors:
                await session.rollback()
                if operation.type is OperationType.MUTATION:
                    # the operation is one transaction: nothing of it stands
                    result = dataclasses.replace(result, data=None)
                elif context.disclosures:  # what a partial answer showed is still logged
                    await session.begin()
                    _log_disclosures(session, context)
                    await session.commit()
            else:
                _log_disclosures(session, context)
                await session.commit()
        scope.hooks.release()
        if not result.errors:
            await platform.db.committed(session)
        return result


@post("/graphql", status_code=200, request_max_body_size=MAX_BODY_BYTES)
async def graphql_post(request: Request[Any, Any, Any]) -> Response[bytes]:
    endpoint: TenantEndpoint = request.app.state.graphql
    return await run_request(request, endpoint)


def dev_mode_only(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """A guard: GraphiQL and its assets exist in development mode only."""
    platform: Platform = connection.app.state.platform
    if not platform.settings.dev_mode:
        raise NotFoundException("GraphiQL is off outside development mode")


@get("/graphql", include_in_schema=False, guards=[dev_mode_only])
async def graphiql() -> Response[bytes]:
    """GraphiQL, loading its scripts from ``/graphiql/`` (this server)."""
    return Response((GRAPHIQL / "index.html").read_bytes(), media_type="text/html")


graphiql_assets = create_static_files_router(
    path="/graphiql", directories=[GRAPHIQL], guards=[dev_mode_only], include_in_schema=False
)
