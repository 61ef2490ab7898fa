"""Turning GraphQL errors into answers a person can act on, in one place.

Every error gets ``extensions.code`` and the request id. A :class:`crmkit.CrmError`
keeps its message; a query the schema refuses is ``BAD_USER_INPUT`` (or
``PLUGIN_NOT_ENABLED`` when the field belongs to a plugin the tenant has not
enabled); anything unexpected is logged and masked as ``INTERNAL``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

from graphql import GraphQLError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.exc import StaleDataError

from crmkit.errors import CrmError

log = logging.getLogger(__name__)

UNKNOWN_FIELD = re.compile(r"^Cannot query field '(\w+)' on type '(\w+)'")
SUGGESTION = re.compile(r" Did you mean [^?]*\?")
"""graphql-core's hint (names never hold a "?"), for fields, arguments, types, input
fields and enum values alike."""


def error_body(code: str, message: str, request_id: str, **extra: Any) -> dict[str, Any]:
    return {"message": message, "extensions": {"code": code, "requestId": request_id, **extra}}


def format_error(
    error: GraphQLError,
    request_id: str,
    plugin_of_field: Mapping[tuple[str, str], str],
    *,
    suggestions: bool,
) -> dict[str, Any]:
    """The error as the API documents it; ``suggestions`` keeps GraphQL's "Did you
    mean" hints, which spell out the schema (development mode only)."""
    original = error.original_error
    if isinstance(original, CrmError):
        body = error_body(original.code, original.message, request_id, **original.extensions)
    elif isinstance(original, StaleDataError):
        body = error_body("CONFLICT", "the record changed meanwhile; reload and retry", request_id)
    elif isinstance(original, IntegrityError):
        body = error_body("CONFLICT", "the write conflicts with an existing record", request_id)
    elif original is None or not error.path:  # parse, validation or variable coercion
        body = _document_error(error, request_id, plugin_of_field)
        if not suggestions:
            body["message"] = SUGGESTION.sub("", body["message"])
    else:
        log.error(
            "internal error in request %s",
            request_id,
            exc_info=(type(original), original, original.__traceback__),
        )
        body = error_body("INTERNAL", f"internal error; quote request id {request_id} to support", request_id)
    if error.path:
        body["path"] = error.path
    if error.locations:
        body["locations"] = [{"line": loc.line, "column": loc.column} for loc in error.locations]
    return body


def _document_error(
    error: GraphQLError, request_id: str, plugin_of_field: Mapping[tuple[str, str], str]
) -> dict[str, Any]:
    match = UNKNOWN_FIELD.match(error.message)
    if match:
        plugin = plugin_of_field.get((match.group(2), match.group(1)))
        if plugin is not None:
            return error_body(
                "PLUGIN_NOT_ENABLED",
                f"{match.group(2)}.{match.group(1)} comes from the plugin {plugin!r}, "
                "which this tenant has not enabled",
                request_id,
                plugin=plugin,
            )
    return error_body("BAD_USER_INPUT", error.message, request_id)
