"""The OAuth 2.0 endpoints on litestar: authorization (login and consent pages),
token, revocation, introspection, server metadata (RFC 8414) and the JWKS.

Each endpoint reads the HTTP request asynchronously, opens the right session (the
tenant's, named by the ``tenant`` parameter, a code, a refresh token or an access
token; a platform session when no tenant is named, which then reads platform tables
only) and runs authlib inside it with ``run_sync`` (:mod:`crmkit.auth.server`).

The authorization endpoint never keeps a login session: the login form checks the
staff user's password and answers with the consent page, which carries a signed
ticket (tenant, user, app, the exact authorization request, ten minutes) that the
consent form sends back.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import html
import json
import secrets
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode

from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import AccessDeniedError, InvalidScopeError, UnauthorizedClientError
from litestar import Request, Response, get, post
from litestar.middleware.rate_limit import get_remote_address
from sqlalchemy.orm import Session

from crmkit.auth.apps import find_installation
from crmkit.auth.models import parse_opaque
from crmkit.auth.server import (
    GRANT_TYPES,
    AuthorizationServer,
    CrmkitOAuth2Request,
    OAuthContext,
    OAuthResponse,
    PresentedToken,
    error_redirect,
)
from crmkit.auth.tokens import ALGORITHM, TokenService
from crmkit.errors import NotFound, Unauthenticated
from crmkit.inputs import unstorable
from crmkit.platform import Platform
from crmkit.principal import Principal
from crmkit.tenants.models import TenantStatus
from crmkit.tenants.revocation import spend_once_sync
from crmkit.tenants.service import get_tenant, load_state
from crmkit.tenants.users import (
    account_key,
    find_by_email,
    finish_login_attempt,
    role_scopes,
    start_login_attempt,
    verify_password,
)

AUTHORIZE = "/oauth/authorize"
TOKEN = "/oauth/token"  # noqa: S105  (a path)
REVOKE = "/oauth/revoke"
INTROSPECT = "/oauth/introspect"
JWKS = "/oauth/jwks"
METADATA = "/.well-known/oauth-authorization-server"
TICKET_SECONDS = 600
T = TypeVar("T")
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
}


# --- plumbing ---------------------------------------------------------------------------


def _state(request: Request[Any, Any, Any]) -> tuple[Platform, TokenService]:
    return request.app.state.platform, request.app.state.tokens


def _multi(items: list[tuple[str, str]]) -> dict[str, list[str]]:
    params: dict[str, list[str]] = {}
    for key, value in items:
        params.setdefault(key, []).append(value)
    return params


async def _form(request: Request[Any, Any, Any]) -> dict[str, list[str]]:
    form = await request.form()
    return _multi([(k, v) for k, v in form.multi_items() if isinstance(v, str)])


def oauth_request(
    request: Request[Any, Any, Any], params: Mapping[str, list[str]], *, path: str | None = None
) -> CrmkitOAuth2Request:
    """The litestar -> authlib adapter: method, URL, headers and the parameters read."""
    uri = str(request.url)
    if path is not None:
        uri = f"{base_url(request)}{path}"
    return CrmkitOAuth2Request(request.method, uri, request.headers, params)


def base_url(request: Request[Any, Any, Any]) -> str:
    """Where the endpoints are: the issuer when it is a URL, else this request's base."""
    platform, _ = _state(request)
    issuer = platform.settings.issuer
    if issuer.startswith(("https://", "http://")):
        return issuer.rstrip("/")
    return str(request.base_url).rstrip("/")


def _transport_ok(request: Request[Any, Any, Any]) -> bool:
    platform, _ = _state(request)
    return request.url.scheme == "https" or platform.settings.dev_mode


def to_response(result: OAuthResponse) -> Response[Any]:
    headers = dict(result.headers)
    if isinstance(result.body, dict):
        content: Any = json.dumps(result.body).encode()
        headers["Content-Type"] = "application/json"
    else:
        content = (result.body or "").encode()
    headers.setdefault("Cache-Control", "no-store")
    return Response(content=content, status_code=result.status, headers=headers)


def _oauth_error(error: str, description: str, status: int = 400) -> Response[Any]:
    return to_response(
        OAuthResponse(status, {"error": error, "error_description": description}, [("Pragma", "no-cache")])
    )


async def run_oauth(
    platform: Platform,
    tokens: TokenService,
    tenant_id: uuid.UUID | None,
    fn: Callable[[AuthorizationServer], T],
    *,
    prepare: Callable[[OAuthContext], None] | None = None,
) -> T:
    """Run authlib (``fn``) in one transaction: the tenant's session when a tenant is
    named, else a platform session (and ``OAuthContext`` touches no tenant table).

    What authlib writes (a spent code, a rotated refresh token, a revocation, even
    one that ends in an error answer such as a reused code) commits with it."""
    session_cm = (
        platform.db.platform_session() if tenant_id is None else platform.db.tenant_session(tenant_id)
    )
    async with session_cm as session:
        state = await load_state(session, tenant_id) if tenant_id is not None else None

        def call(sync_session: Session) -> T:
            ctx = OAuthContext(platform, tokens, sync_session, tenant_id, state)
            if prepare is not None:
                prepare(ctx)
            return fn(AuthorizationServer(ctx))

        return await session.run_sync(call)


def _tenant_in_token(tokens: TokenService, token: str) -> tuple[uuid.UUID | None, Principal | None]:
    """The tenant a presented token names: an access token's ``tid`` (verified) or the
    prefix of a refresh token."""
    if token.count(".") == 2:
        try:
            principal = tokens.verify(token)
        except Unauthenticated:
            return None, None
        return principal.tenant_id, principal
    parsed = parse_opaque(token)
    return (parsed[0], None) if parsed else (None, None)


async def _resolve_tenant(platform: Platform, name: str | None) -> uuid.UUID | None:
    if not name:
        return None
    try:
        return (await get_tenant(platform.db, name)).id
    except NotFound:
        return None


# --- token, revocation, introspection -------------------------------------------------------


@post(TOKEN, status_code=200, include_in_schema=False)
async def token_endpoint(request: Request[Any, Any, Any]) -> Response[Any]:
    platform, tokens = _state(request)
    if not _transport_ok(request):
        return _oauth_error("invalid_request", "OAuth 2.0 requires https")
    params = await _form(request)
    data = {k: v[0] for k, v in params.items() if v}
    grant_type = data.get("grant_type")
    tenant_id: uuid.UUID | None = None
    if grant_type == "client_credentials":
        tenant_id = await _resolve_tenant(platform, data.get("tenant"))
    elif grant_type in {"authorization_code", "refresh_token"}:
        parsed = parse_opaque(data.get("code" if grant_type == "authorization_code" else "refresh_token", ""))
        tenant_id = parsed[0] if parsed else None
    oauth = oauth_request(request, params)
    result = await run_oauth(platform, tokens, tenant_id, lambda server: server.create_token_response(oauth))
    return to_response(result)


async def _token_endpoint_call(request: Request[Any, Any, Any], name: str) -> Response[Any]:
    platform, tokens = _state(request)
    if not _transport_ok(request):
        return _oauth_error("invalid_request", "OAuth 2.0 requires https")
    params = await _form(request)
    oauth = oauth_request(request, params)
    token = (params.get("token") or [""])[0]
    tenant_id, principal = _tenant_in_token(tokens, token)

    def prepare(ctx: OAuthContext) -> None:
        if tenant_id is None:
            return
        if principal is not None:
            ctx.presented = PresentedToken(ctx, principal=principal)
            return
        from crmkit.auth.models import RefreshToken

        parsed = parse_opaque(token)
        row = ctx.session.get(RefreshToken, parsed) if parsed else None
        if row is not None:
            ctx.presented = PresentedToken(ctx, refresh=row)

    result = await run_oauth(
        platform,
        tokens,
        tenant_id,
        lambda server: server.create_endpoint_response(name, oauth),
        prepare=prepare,
    )
    return to_response(result)


@post(REVOKE, status_code=200, include_in_schema=False)
async def revocation_endpoint(request: Request[Any, Any, Any]) -> Response[Any]:
    return await _token_endpoint_call(request, "revocation")


@post(INTROSPECT, status_code=200, include_in_schema=False)
async def introspection_endpoint(request: Request[Any, Any, Any]) -> Response[Any]:
    return await _token_endpoint_call(request, "introspection")


# --- metadata and keys --------------------------------------------------------------------


def server_metadata(platform: Platform, base: str) -> dict[str, Any]:
    """RFC 8414 authorization server metadata."""
    return {
        "issuer": platform.settings.issuer,
        "authorization_endpoint": base + AUTHORIZE,
        "token_endpoint": base + TOKEN,
        "jwks_uri": base + JWKS,
        "revocation_endpoint": base + REVOKE,
        "introspection_endpoint": base + INTROSPECT,
        "scopes_supported": sorted(platform.registry.scopes()),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": GRANT_TYPES,
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "code_challenge_methods_supported": ["S256"],
        "authorization_response_iss_parameter_supported": True,
    }


@get(METADATA, include_in_schema=False)
async def metadata_endpoint(request: Request[Any, Any, Any]) -> dict[str, Any]:
    platform, _ = _state(request)
    return server_metadata(platform, base_url(request))


def jwks(tokens: TokenService) -> dict[str, Any]:
    key = dict(tokens.key.as_dict(private=False))
    key.update({"kid": tokens.kid, "use": "sig", "alg": ALGORITHM})
    return {"keys": [key]}


@get(JWKS, include_in_schema=False)
async def jwks_endpoint(request: Request[Any, Any, Any]) -> dict[str, Any]:
    _, tokens = _state(request)
    return jwks(tokens)


# --- authorization: login and consent --------------------------------------------------------


@dataclass
class Checked:
    """An authorization request authlib found valid (the redirect URI included)."""

    client_id: str
    client_name: str
    redirect_uri: str
    state: str | None
    scope: str | None


def _validate(server: AuthorizationServer, oauth: CrmkitOAuth2Request) -> Checked | OAuthResponse:
    try:
        grant = server.get_consent_grant(oauth)
    except OAuth2Error as error:
        return _error_answer(server, oauth, error)
    client = grant.client
    return Checked(
        client.client_id, client.name, grant.redirect_uri, oauth.payload.state, oauth.payload.scope
    )


def _error_answer(
    server: AuthorizationServer, oauth: CrmkitOAuth2Request, error: OAuth2Error
) -> OAuthResponse:
    """At the client's redirect URI once authlib validated it; otherwise a page here
    (never a redirect to an unverified URI)."""
    if error.redirect_uri:
        location = error_redirect(error.redirect_uri, error, oauth.payload.state, server.ctx.settings.issuer)
        return OAuthResponse(302, "", [("Location", location)])
    return OAuthResponse(400, _page("Request refused", f"<p>{_e(error.description or error.error)}</p>"), [])


def _redirect_error(checked: Checked, error: OAuth2Error, issuer: str) -> Response[Any]:
    return Response(
        content=b"",
        status_code=302,
        headers={
            "Location": error_redirect(checked.redirect_uri, error, checked.state, issuer),
            **PAGE_HEADERS,
        },
    )


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _page(title: str, body: str) -> str:
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<meta name=viewport content='width=device-width'><title>{_e(title)}</title>"
        "<style>body{font-family:sans-serif;max-width:28rem;margin:3rem auto;padding:0 1rem}"
        "label,input,button{display:block;margin:.4rem 0;width:100%}li{margin:.2rem 0}</style>"
        f"</head><body><h1>{_e(title)}</h1>{body}</body></html>"
    )


def _html(content: str, status: int = 200) -> Response[Any]:
    return Response(content=content, status_code=status, media_type="text/html", headers=PAGE_HEADERS)


def rate_limited_page(message: str, headers: Mapping[str, str]) -> Response[Any]:
    """The login form's answer to a client over its rate limit (429, ``Retry-After``)."""
    return Response(
        content=_page("Too many requests", f"<p role=alert>{_e(message)}</p>"),
        status_code=429,
        media_type="text/html",
        headers={**PAGE_HEADERS, **headers},
    )


def login_page(
    checked: Checked, request_string: str, *, tenant: str = "", email: str = "", error: str = ""
) -> str:
    problem = f"<p role=alert><strong>{_e(error)}</strong></p>" if error else ""
    return _page(
        f"Sign in to authorize {checked.client_name}",
        f"{problem}<form method=post action='{AUTHORIZE}'>"
        f"<input type=hidden name=step value=login>"
        f"<input type=hidden name=request value='{_e(request_string)}'>"
        f"<label>Institution<input name=tenant value='{_e(tenant)}' required></label>"
        f"<label>E-mail<input name=email type=email value='{_e(email)}' autocomplete=username required>"
        "</label>"
        "<label>Password<input name=password type=password autocomplete=current-password required></label>"
        "<button type=submit>Sign in</button></form>",
    )


def consent_page(
    checked: Checked, request_string: str, ticket: str, user_name: str, scopes: list[tuple[str, str]]
) -> str:
    items = "".join(f"<li><code>{_e(name)}</code>: {_e(text)}</li>" for name, text in scopes)
    return _page(
        f"Authorize {checked.client_name}?",
        f"<p>{_e(checked.client_name)} asks to act as <strong>{_e(user_name)}</strong> with:</p>"
        f"<ul>{items}</ul><form method=post action='{AUTHORIZE}'>"
        "<input type=hidden name=step value=consent>"
        f"<input type=hidden name=request value='{_e(request_string)}'>"
        f"<input type=hidden name=ticket value='{_e(ticket)}'>"
        "<button type=submit name=decision value=approve>Allow</button>"
        "<button type=submit name=decision value=deny>Deny</button></form>",
    )


def _ticket_key(tokens: TokenService) -> bytes:
    return hashlib.sha256(b"crmkit oauth consent ticket\x00" + tokens.key.as_pem(private=True)).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_ticket(
    tokens: TokenService, tenant_id: uuid.UUID, user_id: uuid.UUID, client_id: str, request: str
) -> str:
    payload = {
        "t": tenant_id.hex,
        "u": user_id.hex,
        "c": client_id,
        "r": hashlib.sha256(request.encode()).hexdigest(),
        "n": secrets.token_urlsafe(16),
        "exp": int(time.time()) + TICKET_SECONDS,
    }
    body = _b64(json.dumps(payload, separators=(",", ":")).encode())
    return body + "." + _b64(hmac.new(_ticket_key(tokens), body.encode(), "sha256").digest())


@dataclass(frozen=True)
class Ticket:
    """A verified consent ticket: who signed in, and its single-use nonce."""

    tenant_id: uuid.UUID
    user_id: uuid.UUID
    nonce: str
    expires_at: datetime


def read_ticket(tokens: TokenService, ticket: str, client_id: str, request: str) -> Ticket | None:
    body, _, signature = ticket.partition(".")
    expected = _b64(hmac.new(_ticket_key(tokens), body.encode(), "sha256").digest())
    if not hmac.compare_digest(signature, expected):
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        tenant_id, user_id = uuid.UUID(hex=payload["t"]), uuid.UUID(hex=payload["u"])
        nonce, expires = str(payload["n"]), datetime.fromtimestamp(int(payload["exp"]), UTC)
    except (ValueError, KeyError, TypeError, OverflowError):
        return None
    if payload.get("exp", 0) < time.time() or payload.get("c") != client_id:
        return None
    if not hmac.compare_digest(str(payload.get("r")), hashlib.sha256(request.encode()).hexdigest()):
        return None
    return Ticket(tenant_id, user_id, nonce, expires)


@get(AUTHORIZE, include_in_schema=False)
async def authorize_page(request: Request[Any, Any, Any]) -> Response[Any]:
    platform, tokens = _state(request)
    if not _transport_ok(request):
        return _html(_page("Request refused", "<p>OAuth 2.0 requires https.</p>"), 400)
    items = list(request.query_params.multi_items())
    request_string = urlencode(items)
    oauth = oauth_request(request, _multi(items))
    checked = await run_oauth(platform, tokens, None, lambda server: _validate(server, oauth))
    if isinstance(checked, OAuthResponse):
        return _answer(checked)
    tenant = dict(items).get("tenant", "")
    return _html(login_page(checked, request_string, tenant=tenant))


def _answer(result: OAuthResponse) -> Response[Any]:
    if result.status == 302:
        return Response(
            content=b"", status_code=302, headers={"Location": result.location or "", **PAGE_HEADERS}
        )
    return _html(str(result.body), result.status)


@post(AUTHORIZE, status_code=200, include_in_schema=False)
async def authorize_submit(request: Request[Any, Any, Any]) -> Response[Any]:
    platform, tokens = _state(request)
    if not _transport_ok(request):
        return _html(_page("Request refused", "<p>OAuth 2.0 requires https.</p>"), 400)
    form = {k: v[0] for k, v in (await _form(request)).items() if v}
    if any(unstorable(value) for value in form.values()):  # NUL or a lone surrogate: no one typed it
        return _html(_page("Request refused", "<p>The form holds characters that cannot be text.</p>"), 400)
    request_string = form.get("request", "")
    items = parse_qsl(request_string, keep_blank_values=True)
    oauth = oauth_request(request, _multi(items), path=AUTHORIZE + "?" + request_string)
    checked = await run_oauth(platform, tokens, None, lambda server: _validate(server, oauth))
    if isinstance(checked, OAuthResponse):
        return _answer(checked)
    if form.get("step") == "consent":
        return await _consent(platform, tokens, oauth, checked, request_string, form)
    return await _login(request, checked, request_string, form)


async def _login(
    request: Request[Any, Any, Any],
    checked: Checked,
    request_string: str,
    form: dict[str, str],
) -> Response[Any]:
    """Check the staff user's password; the consent page, or the login page again.

    Whether the tenant and user exist or not, the attempt is counted and locked the
    same way and a password hash is verified (a dummy one for an unknown account), so
    neither the answer nor the work tells which accounts exist."""
    platform, tokens = _state(request)
    tenant_name, email, password = form.get("tenant", ""), form.get("email", ""), form.get("password", "")
    issuer = platform.settings.issuer
    tenant_id = await _resolve_tenant(platform, tenant_name.strip())
    account, address = account_key(tenant_id or tenant_name, email), get_remote_address(request)
    attempt = await start_login_attempt(platform.db, account, address)
    if attempt is None:
        error = "Too many failed attempts from here: try again later."
        return _html(login_page(checked, request_string, tenant=tenant_name, email=email, error=error))
    user = installation = state = None
    if tenant_id is not None:
        async with platform.db.tenant_session(tenant_id) as session:
            state = await load_state(session, tenant_id)
            user = await find_by_email(session, email)
            installation = await find_installation(session, checked.client_id)
    usable = (
        user if user is not None and user.active and state and state.status is TenantStatus.ACTIVE else None
    )
    ok = await asyncio.to_thread(verify_password, usable.password_hash if usable else None, password)
    await finish_login_attempt(platform.db, account, address, number=attempt, ok=ok)
    if not ok or usable is None or state is None or tenant_id is None:
        page = login_page(
            checked,
            request_string,
            tenant=tenant_name,
            email=email,
            error="The institution, e-mail address or password is not right.",
        )
        return _html(page)
    if installation is None:
        error = UnauthorizedClientError(f"{checked.client_name} is not installed for this institution")
        return _redirect_error(checked, error, issuer)
    requested = set(checked.scope.split()) if checked.scope else set(installation.scopes)
    beyond = sorted(requested - set(installation.scopes))
    if beyond:
        return _redirect_error(
            checked, InvalidScopeError(f"not granted to the app in this tenant: {' '.join(beyond)}"), issuer
        )
    registry = platform.registry
    available = registry.scopes(state.plugins)
    effective = requested & role_scopes(usable.role, available, registry.scopes(()))
    if not effective:
        return _redirect_error(
            checked, InvalidScopeError("the user's role allows none of the requested scopes"), issuer
        )
    ticket = make_ticket(tokens, tenant_id, usable.id, checked.client_id, request_string)
    scopes = [(name, available[name].description) for name in sorted(effective)]
    return _html(consent_page(checked, request_string, ticket, usable.display_name, scopes))


async def _consent(
    platform: Platform,
    tokens: TokenService,
    oauth: CrmkitOAuth2Request,
    checked: Checked,
    request_string: str,
    form: dict[str, str],
) -> Response[Any]:
    issuer = platform.settings.issuer
    ticket = read_ticket(tokens, form.get("ticket", ""), checked.client_id, request_string)
    if ticket is None:
        return _redirect_error(checked, AccessDeniedError("the sign-in expired; start again"), issuer)
    approve = form.get("decision") == "approve"

    def authorize(server: AuthorizationServer) -> OAuthResponse:
        ctx = server.ctx
        if not spend_once_sync(
            ctx.session, ticket.tenant_id, f"ticket:{ticket.nonce}", expires_at=ticket.expires_at
        ):
            return _error_answer(
                server, oauth, _at(checked, AccessDeniedError("this consent was already given"))
            )
        user = ctx.get_user(ticket.user_id)
        ctx.installation = ctx.find_installation(checked.client_id)
        if user is None or ctx.installation is None or not ctx.tenant_active:
            return _error_answer(
                server, oauth, _at(checked, AccessDeniedError("the authorization is no longer possible"))
            )
        requested = set(checked.scope.split()) if checked.scope else set(ctx.installation.scopes)
        ctx.scopes = sorted(requested & set(ctx.installation.scopes) & ctx.user_scopes(user))
        try:
            grant = server.get_consent_grant(oauth, end_user=user)
        except OAuth2Error as error:
            return _error_answer(server, oauth, error)
        if not ctx.scopes:
            return _error_answer(server, oauth, _at(checked, InvalidScopeError("no scope left to grant")))
        response: OAuthResponse = server.create_authorization_response(
            oauth, grant_user=user if approve else None, grant=grant
        )
        return response

    return _answer(await run_oauth(platform, tokens, ticket.tenant_id, authorize))


def _at(checked: Checked, error: OAuth2Error) -> OAuth2Error:
    error.redirect_uri = checked.redirect_uri
    return error


ROUTES = [
    authorize_page,
    authorize_submit,
    token_endpoint,
    revocation_endpoint,
    introspection_endpoint,
    metadata_endpoint,
    jwks_endpoint,
]
