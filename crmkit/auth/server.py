"""The OAuth 2.0 authorization server: authlib's grants and endpoints on crmkit's tables.

authlib is synchronous. Each HTTP request builds its own :class:`AuthorizationServer`
around an :class:`OAuthContext` (nothing is shared between concurrent requests) and runs
it inside ``AsyncSession.run_sync``: authlib's calls into the database go through the
sync ``Session`` that SQLAlchemy drives on the event loop (greenlet), in the tenant's
transaction. Opaque credentials name their tenant, so the session is a tenant session
(row-level security applies) whenever tenant data is touched.

authlib's defaults that crmkit overrides:

* PKCE with S256 is required of every client, confidential ones included; ``plain``
  and a missing challenge are refused (:class:`RequireS256`).
* A scope the app may not ask for (or that the tenant did not grant it) is refused
  with ``invalid_scope``, never silently dropped.
* Refresh tokens rotate; presenting a spent one revokes its whole family.
* A code used twice revokes the tokens issued for its first use.
* Redirect URIs are compared exactly; one is always required.
* Only ``code`` (authorization) and ``authorization_code``, ``client_credentials``,
  ``refresh_token`` (token) are registered: no implicit, no password grant.
* Access tokens are :class:`~crmkit.auth.tokens.TokenService` JWTs (RFC 9068) with the
  lifetime from settings; authorization responses carry ``iss`` (RFC 9207).
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from authlib.common.encoding import to_bytes, to_unicode, urlsafe_b64encode
from authlib.common.urls import add_params_to_uri
from authlib.oauth2 import AuthorizationServer as _AuthorizationServer
from authlib.oauth2 import OAuth2Error, OAuth2Request
from authlib.oauth2.rfc6749 import (
    InvalidGrantError,
    InvalidRequestError,
    InvalidScopeError,
    OAuth2Payload,
    UnauthorizedClientError,
)
from authlib.oauth2.rfc6749.grants import (
    AuthorizationCodeGrant,
    ClientCredentialsGrant,
    RefreshTokenGrant,
)
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from authlib.oauth2.rfc9207 import IssuerParameter
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from crmkit.auth.models import (
    AppInstallation,
    AuthorizationCode,
    OAuthClient,
    RefreshToken,
    new_opaque,
    parse_opaque,
)
from crmkit.auth.tokens import AUDIENCE, TokenService
from crmkit.clock import utcnow
from crmkit.db import uuid7
from crmkit.principal import Principal
from crmkit.tenants.models import TenantStatus
from crmkit.tenants.revocation import is_revoked_sync, revoke_sync
from crmkit.tenants.service import TenantState
from crmkit.tenants.users import StaffUser, role_scopes

if TYPE_CHECKING:
    from crmkit.platform import Platform
    from crmkit.plugins.info import Scope
    from crmkit.settings import Settings

GRANT_TYPES = ["authorization_code", "client_credentials", "refresh_token"]
AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]
CONFIDENTIAL_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]


# --- litestar -> authlib --------------------------------------------------------------


class Payload(OAuth2Payload):
    """Request parameters: the query of an authorization request, the form of a
    token, revocation or introspection request."""

    def __init__(self, params: Mapping[str, list[str]]) -> None:
        self._datalist: defaultdict[str, list[str]] = defaultdict(
            list, {k: list(v) for k, v in params.items()}
        )
        self._data = {k: v[0] for k, v in params.items() if v}

    @property
    def data(self) -> dict[str, str]:
        return self._data

    @property
    def datalist(self) -> defaultdict[str, list[str]]:
        return self._datalist


class CrmkitOAuth2Request(OAuth2Request):
    """authlib's view of one HTTP request, built from a litestar request once its body
    has been read (:func:`crmkit.http.oauth.oauth_request`).

    authlib refuses a non-https URI; crmkit applies that rule itself
    (``transport_ok``: https, or development mode) so that a TLS-terminating proxy or
    a test client works the same.
    """

    def __init__(
        self, method: str, uri: str, headers: Mapping[str, str], params: Mapping[str, list[str]]
    ) -> None:
        checked = uri if uri.startswith("https://") else "https://" + uri.partition("://")[2]
        super().__init__(method, checked, headers=headers)
        self.uri = uri
        self.payload = Payload(params)

    @property
    def args(self) -> dict[str, str]:
        return self.payload.data

    @property
    def form(self) -> dict[str, str]:
        return self.payload.data


@dataclass
class OAuthResponse:
    """What authlib answers, before it becomes a litestar response."""

    status: int
    body: Any
    headers: list[tuple[str, str]]

    @property
    def location(self) -> str | None:
        return next((v for k, v in self.headers if k.lower() == "location"), None)

    @location.setter
    def location(self, value: str) -> None:
        self.headers = [(k, v) for k, v in self.headers if k.lower() != "location"] + [("Location", value)]


# --- per-request state ----------------------------------------------------------------


@dataclass
class PresentedToken:
    """A token sent to the revocation or introspection endpoint, as crmkit read it."""

    ctx: OAuthContext
    principal: Principal | None = None
    refresh: RefreshToken | None = None

    @property
    def client_id(self) -> str:
        if self.principal is not None:
            return self.principal.client_id
        assert self.refresh is not None
        return self.refresh.client_id

    def check_client(self, client: OAuthClient) -> bool:
        return hmac.compare_digest(self.client_id, client.client_id)

    def is_expired(self) -> bool:
        if self.refresh is not None:
            return self.refresh.is_expired()
        return False  # TokenService.verify refused an expired access token already

    def is_revoked(self) -> bool:
        ctx = self.ctx
        if not ctx.tenant_active:
            return True
        if self.principal is not None:
            p = self.principal
            return is_revoked_sync(ctx.session, p.tenant_id, p.revocation_keys(), p.issued_at)
        assert self.refresh is not None and ctx.tenant_id is not None
        return self.refresh.used_at is not None or ctx.family_revoked(self.refresh.grant_id)

    def revoke(self) -> None:
        ctx = self.ctx
        assert ctx.tenant_id is not None
        if self.principal is not None:
            expires = datetime.fromtimestamp(self.principal.expires_at, UTC)
            revoke_sync(ctx.session, ctx.tenant_id, f"jti:{self.principal.token_id}", expires_at=expires)
        else:
            assert self.refresh is not None
            ctx.revoke_family(self.refresh.grant_id)

    def introspection(self) -> dict[str, Any]:
        settings = self.ctx.settings
        if self.principal is not None:
            p = self.principal
            return {
                "active": True,
                "token_type": "Bearer",
                "client_id": p.client_id,
                "scope": " ".join(sorted(p.scopes)),
                "sub": p.subject,
                "tid": str(p.tenant_id),
                "iss": settings.issuer,
                "aud": AUDIENCE,
                "exp": p.expires_at,
                "iat": int(p.issued_at),
                "jti": p.token_id,
            }
        assert self.refresh is not None
        r = self.refresh
        return {
            "active": True,
            "token_type": "refresh_token",
            "client_id": r.client_id,
            "scope": r.scope,
            "sub": f"user:{r.user_id}",
            "tid": str(r.tenant_id),
            "iss": settings.issuer,
            "exp": int(r.expires_at.timestamp()),
            "iat": int(r.issued_at.timestamp()),
        }


@dataclass
class OAuthContext:
    """Everything one OAuth request works with; ``session`` is the sync face of the
    request's (tenant) session."""

    platform: Platform
    tokens: TokenService
    session: Session
    tenant_id: uuid.UUID | None = None
    state: TenantState | None = None
    installation: AppInstallation | None = None
    grant_id: uuid.UUID | None = None
    """The token family of the tokens being issued (authorization code grants)."""
    scopes: list[str] | None = None
    """The scopes decided for an authorization code (at the consent step)."""
    presented: PresentedToken | None = None

    @property
    def settings(self) -> Settings:
        return self.platform.settings

    @property
    def tenant_active(self) -> bool:
        return self.state is not None and self.state.status is TenantStatus.ACTIVE

    @cached_property
    def available_scopes(self) -> dict[str, Scope]:
        """The scopes usable in this tenant: the core's and its enabled plugins'."""
        assert self.state is not None
        return self.platform.registry.scopes(self.state.plugins)

    @cached_property
    def core_scopes(self) -> frozenset[str]:
        return frozenset(self.platform.registry.scopes(()))

    def user_scopes(self, user: StaffUser) -> frozenset[str]:
        return role_scopes(user.role, self.available_scopes, self.core_scopes)

    def find_installation(self, client_id: str) -> AppInstallation | None:
        if self.tenant_id is None:
            return None
        return self.session.scalar(select(AppInstallation).where(AppInstallation.client_id == client_id))

    def get_installation(self, installation_id: uuid.UUID) -> AppInstallation | None:
        assert self.tenant_id is not None
        return self.session.get(AppInstallation, (self.tenant_id, installation_id))

    def get_user(self, user_id: uuid.UUID) -> StaffUser | None:
        assert self.tenant_id is not None
        user = self.session.get(StaffUser, (self.tenant_id, user_id))
        return user if user is not None and user.active else None

    def family_revoked(self, grant_id: uuid.UUID) -> bool:
        assert self.tenant_id is not None
        return is_revoked_sync(self.session, self.tenant_id, [f"grant:{grant_id}"], 0)

    def revoke_family(self, grant_id: uuid.UUID) -> None:
        """Revoke every token of a family: its access tokens (by their ``gid``) and its
        refresh tokens (checked against the family on use)."""
        assert self.tenant_id is not None
        expires = utcnow() + timedelta(days=self.settings.refresh_token_days)
        revoke_sync(self.session, self.tenant_id, f"grant:{grant_id}", expires_at=expires)


# --- grants -----------------------------------------------------------------------------


def _server(grant: Any) -> AuthorizationServer:
    server: AuthorizationServer = grant.server
    return server


def _requested(scope: str | None) -> set[str]:
    return set(scope.split()) if scope else set()


def _check_requested(client: OAuthClient, installation: AppInstallation | None, scope: str | None) -> None:
    """``invalid_scope`` naming what the app asked for beyond what it may have."""
    requested = _requested(scope)
    beyond = sorted(requested - set(client.scopes))
    if beyond:
        raise InvalidScopeError(f"the app may not ask for: {' '.join(beyond)}")
    if installation is not None:
        beyond = sorted(requested - set(installation.scopes))
        if beyond:
            raise InvalidScopeError(f"not granted to the app in this tenant: {' '.join(beyond)}")


def _compare_s256(verifier: str, challenge: str) -> bool:
    digest = hashlib.sha256(to_bytes(verifier, "ascii")).digest()
    return hmac.compare_digest(to_unicode(urlsafe_b64encode(digest)), challenge)


class RequireS256(CodeChallenge):
    """PKCE, S256 only, for every client (authlib accepts ``plain`` and lets a
    confidential client skip PKCE)."""

    DEFAULT_CODE_CHALLENGE_METHOD = "S256"
    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]
    CODE_CHALLENGE_METHODS = {"S256": _compare_s256}

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            raise InvalidRequestError("PKCE is required: send code_challenge with code_challenge_method=S256")
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("code_challenge_method must be S256 ('plain' is not accepted)")
        super().validate_code_challenge(grant, redirect_uri)

    def validate_code_verifier(self, grant: Any, result: Any) -> None:
        code = grant.request.authorization_code
        if not code.code_challenge and not grant.request.form.get("code_verifier"):
            raise InvalidGrantError("the code was issued without PKCE and cannot be exchanged")
        super().validate_code_verifier(grant, result)


class CodeGrant(AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = AUTH_METHODS

    def validate_requested_scope(self) -> None:
        _check_requested(self.request.client, _server(self).ctx.installation, self.request.payload.scope)

    def generate_authorization_code(self) -> str:
        ctx = _server(self).ctx
        assert ctx.tenant_id is not None
        return new_opaque(ctx.tenant_id)

    def save_authorization_code(self, code: str, request: Any) -> None:
        ctx = _server(self).ctx
        parsed = parse_opaque(code)
        assert parsed is not None and ctx.installation is not None and ctx.scopes
        data = request.payload.data
        ctx.session.add(
            AuthorizationCode(
                tenant_id=ctx.tenant_id,
                code_hash=parsed[1],
                client_id=request.client.client_id,
                installation_id=ctx.installation.id,
                user_id=request.user.id,
                redirect_uri=request.payload.redirect_uri,
                scope=" ".join(sorted(ctx.scopes)),
                code_challenge=data.get("code_challenge"),
                code_challenge_method=data.get("code_challenge_method"),
                grant_id=uuid7(),
                expires_at=utcnow() + timedelta(seconds=ctx.settings.authorization_code_seconds),
            )
        )
        ctx.session.flush()

    def validate_token_request(self) -> None:
        ctx = _server(self).ctx
        if not ctx.tenant_active:
            # a code of a suspended (or unknown) tenant: still authenticate the client first
            self.authenticate_token_endpoint_client()
            raise InvalidGrantError("the code is not valid (or its tenant is not active)")
        super().validate_token_request()

    def query_authorization_code(self, code: str, client: OAuthClient) -> AuthorizationCode | None:
        ctx = _server(self).ctx
        parsed = parse_opaque(code)
        if parsed is None or parsed[0] != ctx.tenant_id:
            return None
        row = ctx.session.get(AuthorizationCode, parsed)
        if row is None or not hmac.compare_digest(row.client_id, client.client_id):
            return None
        if row.used_at is not None:  # used twice: the first use's tokens go too
            ctx.revoke_family(row.grant_id)
            return None
        if row.is_expired():
            return None
        return row

    def authenticate_user(self, authorization_code: AuthorizationCode) -> StaffUser | None:
        """Runs once the request is fully validated (PKCE included): spend the code,
        atomically, and find its user and installation."""
        ctx = _server(self).ctx
        code = authorization_code
        spent = ctx.session.execute(
            update(AuthorizationCode)
            .where(
                AuthorizationCode.tenant_id == code.tenant_id,
                AuthorizationCode.code_hash == code.code_hash,
                AuthorizationCode.used_at.is_(None),
            )
            .values(used_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        if getattr(spent, "rowcount", 0) != 1:  # a concurrent use won
            ctx.revoke_family(code.grant_id)
            raise InvalidGrantError("the code was already used")
        ctx.installation = ctx.get_installation(code.installation_id)
        if ctx.installation is None:
            raise InvalidGrantError("the app is no longer installed in this tenant")
        ctx.grant_id = code.grant_id
        return ctx.get_user(code.user_id)

    def delete_authorization_code(self, authorization_code: AuthorizationCode) -> None:
        """Kept (spent) until it expires, to recognise a second use."""


class AppCredentialsGrant(ClientCredentialsGrant):
    """The app itself, for one installation: the tenant is named by ``tenant``."""

    TOKEN_ENDPOINT_AUTH_METHODS = CONFIDENTIAL_AUTH_METHODS

    def validate_requested_scope(self) -> None:
        ctx = _server(self).ctx
        client: OAuthClient = self.request.client
        installation = ctx.find_installation(client.client_id) if ctx.tenant_active else None
        if installation is None:
            raise UnauthorizedClientError(
                "the app is not installed in this tenant (or the tenant is unknown or not active); "
                "name the tenant with the 'tenant' parameter"
            )
        ctx.installation = installation
        _check_requested(client, installation, self.request.payload.scope)


class RotatingRefreshGrant(RefreshTokenGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = AUTH_METHODS
    INCLUDE_NEW_REFRESH_TOKEN = True

    def authenticate_refresh_token(self, refresh_token: str) -> RefreshToken | None:
        ctx = _server(self).ctx
        parsed = parse_opaque(refresh_token)
        if parsed is None or parsed[0] != ctx.tenant_id or not ctx.tenant_active:
            return None
        row = ctx.session.get(RefreshToken, parsed)
        client: OAuthClient = self.request.client
        if row is None or not row.check_client(client):
            return None  # another client's token is not spent by its presentation
        if ctx.family_revoked(row.grant_id) or row.is_expired():
            return None
        if row.used_at is not None:  # a spent token again: someone has a copy
            ctx.revoke_family(row.grant_id)
            return None
        requested = _requested(self.request.payload.scope)
        if requested - set(row.scope.split()):
            raise InvalidScopeError("a refresh may only narrow the scope originally granted")
        spent = ctx.session.execute(
            update(RefreshToken)
            .where(
                RefreshToken.tenant_id == row.tenant_id,
                RefreshToken.token_hash == row.token_hash,
                RefreshToken.used_at.is_(None),
            )
            .values(used_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        if getattr(spent, "rowcount", 0) != 1:  # a concurrent refresh won
            ctx.revoke_family(row.grant_id)
            return None
        ctx.grant_id = row.grant_id
        return row

    def authenticate_user(self, refresh_token: RefreshToken) -> StaffUser | None:
        ctx = _server(self).ctx
        ctx.installation = ctx.get_installation(refresh_token.installation_id)
        if ctx.installation is None:
            raise InvalidGrantError("the app is no longer installed in this tenant")
        user = ctx.get_user(refresh_token.user_id)
        if user is None:
            raise InvalidGrantError("the user is no longer active")
        return user

    def revoke_old_credential(self, refresh_token: RefreshToken) -> None:
        """Spent already, atomically, in :meth:`authenticate_refresh_token`."""


# --- endpoints --------------------------------------------------------------------------


class Revocation(RevocationEndpoint):
    """RFC 7009. A refresh token revokes its whole family; an access token itself."""

    CLIENT_AUTH_METHODS = AUTH_METHODS

    def query_token(self, token_string: str, token_type_hint: str | None) -> PresentedToken | None:
        return _server(self).ctx.presented

    def revoke_token(self, token: PresentedToken, request: Any) -> None:
        token.revoke()


class Introspection(IntrospectionEndpoint):
    """RFC 7662, for confidential clients, about their own tokens only: any other
    token reads as ``active: false``."""

    CLIENT_AUTH_METHODS = CONFIDENTIAL_AUTH_METHODS

    def query_token(self, token_string: str, token_type_hint: str | None) -> PresentedToken | None:
        return _server(self).ctx.presented

    def check_permission(self, token: PresentedToken, client: OAuthClient, request: Any) -> bool:
        return token.check_client(client)

    def introspect_token(self, token: PresentedToken) -> dict[str, Any]:
        return token.introspection()


class Issuer(IssuerParameter):
    def __init__(self, issuer: str) -> None:
        self.issuer = issuer

    def get_issuer(self) -> str:
        return self.issuer


# --- the server ------------------------------------------------------------------------


class AuthorizationServer(_AuthorizationServer):
    """One request's authorization server (see the module docstring)."""

    def __init__(self, ctx: OAuthContext) -> None:
        super().__init__()
        self.ctx = ctx
        self.register_token_generator("default", self._generate_token)
        self.register_grant(CodeGrant, [RequireS256(required=True)])
        self.register_grant(AppCredentialsGrant)
        self.register_grant(RotatingRefreshGrant)
        self.register_endpoint(Revocation(self))
        self.register_endpoint(Introspection(self))
        self.register_extension(Issuer(ctx.settings.issuer))

    def query_client(self, client_id: str) -> OAuthClient | None:
        if not client_id or len(client_id) > 64:
            return None
        client = self.ctx.session.get(OAuthClient, client_id)
        return client if client is not None and client.active else None

    def create_oauth2_request(self, request: Any) -> OAuth2Request:
        assert isinstance(request, OAuth2Request), "build it with crmkit.http.oauth.oauth_request"
        return request

    def create_json_request(self, request: Any) -> Any:
        raise NotImplementedError("crmkit's OAuth endpoints take form parameters only")

    def handle_response(self, status: int, body: Any, headers: Any) -> OAuthResponse:
        return OAuthResponse(status, body, list(headers))

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        pass

    def _generate_token(
        self,
        grant_type: str,
        client: OAuthClient,
        user: StaffUser | None = None,
        scope: str | None = None,
        expires_in: int | None = None,
        include_refresh_token: bool = True,
    ) -> dict[str, Any]:
        """A TokenService JWT. Its scope: what was asked (or else everything granted),
        within the installation's grant and the tenant's scopes, and for a user within
        the user's role. A request beyond the grant was refused before this point; a
        grant that shrank since a code or refresh token was issued narrows silently."""
        ctx = self.ctx
        installation = ctx.installation
        assert installation is not None and ctx.tenant_id is not None
        granted = set(installation.scopes) & set(client.scopes) & ctx.available_scopes.keys()
        requested = _requested(scope) or granted
        effective = requested & granted
        if user is not None:
            effective &= ctx.user_scopes(user)
            subject = user.subject
        else:
            subject = installation.subject
        if not effective:
            raise InvalidScopeError("none of the requested scopes can be granted")
        lifetime = ctx.settings.access_token_minutes * 60
        access_token = ctx.tokens.issue(
            tenant_id=ctx.tenant_id,
            subject=subject,
            scopes=effective,
            client_id=client.client_id,
            lifetime_seconds=lifetime,
            grant_id=str(ctx.grant_id) if ctx.grant_id else None,
            installation_id=str(installation.id),
        )
        token: dict[str, Any] = {
            "token_type": "Bearer",
            "access_token": access_token,
            "expires_in": lifetime,
            "scope": " ".join(sorted(effective)),
        }
        if include_refresh_token and user is not None and ctx.grant_id is not None:
            token["refresh_token"] = new_opaque(ctx.tenant_id)
        return token

    def save_token(self, token: dict[str, Any], request: Any) -> None:
        ctx = self.ctx
        refresh = token.get("refresh_token")
        if not refresh:
            return
        parsed = parse_opaque(refresh)
        assert parsed is not None and ctx.installation is not None and ctx.grant_id is not None
        ctx.session.add(
            RefreshToken(
                tenant_id=ctx.tenant_id,
                token_hash=parsed[1],
                grant_id=ctx.grant_id,
                client_id=request.client.client_id,
                installation_id=ctx.installation.id,
                user_id=request.user.id,
                scope=token["scope"],
                expires_at=utcnow() + timedelta(days=ctx.settings.refresh_token_days),
            )
        )
        ctx.session.flush()


def error_redirect(redirect_uri: str, error: OAuth2Error, state: str | None, issuer: str) -> str:
    """An error answered at the client's (validated) redirect URI, with ``iss``."""
    params = [("error", error.error)]
    if error.description:
        params.append(("error_description", error.description))
    if state:
        params.append(("state", state))
    params.append(("iss", issuer))
    return add_params_to_uri(redirect_uri, params)


__all__ = [
    "GRANT_TYPES",
    "AuthorizationServer",
    "CrmkitOAuth2Request",
    "OAuthContext",
    "OAuthResponse",
    "PresentedToken",
    "error_redirect",
]
