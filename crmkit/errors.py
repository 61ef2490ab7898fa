"""Errors a person can act on. Each carries the GraphQL ``extensions.code`` it maps to.

Raise these from resolvers, validation hooks and services; anything else that escapes
is masked as ``INTERNAL`` with a request id.
"""

from __future__ import annotations

from typing import Any


class CrmError(Exception):
    code = "INTERNAL"

    def __init__(self, message: str, **extensions: Any) -> None:
        super().__init__(message)
        self.message = message
        self.extensions = extensions


class Unauthenticated(CrmError):
    code = "UNAUTHENTICATED"


class Forbidden(CrmError):
    code = "FORBIDDEN"


class NotFound(CrmError):
    """Also what another tenant's id reads as, so existence never leaks."""

    code = "NOT_FOUND"


class BadUserInput(CrmError):
    code = "BAD_USER_INPUT"


class PluginNotEnabled(CrmError):
    code = "PLUGIN_NOT_ENABLED"


class ConsentRequired(CrmError):
    code = "CONSENT_REQUIRED"


class Conflict(CrmError):
    code = "CONFLICT"


class RateLimited(CrmError):
    code = "RATE_LIMITED"


class PermanentJobError(Exception):
    """Raised by a job or event handler when retrying cannot help: the failure is recorded."""
