"""The OAuth 2.0 authorization server, driven through the real ASGI app with authlib's
own client: client credentials, authorization code with PKCE through the login and
consent pages, refresh rotation, revocation, introspection, metadata and JWKS; and
every refusal, one test each."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import secrets
import time
import uuid
import warnings
from dataclasses import dataclass
from datetime import timedelta
from html.parser import HTMLParser
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from crmkit.auth.apps import Registered, install_app, register_client
from crmkit.auth.models import AuthorizationCode, new_opaque, parse_opaque
from crmkit.clock import utcnow
from crmkit.db import uuid7
from crmkit.http.oauth import server_metadata
from crmkit.settings import Settings
from crmkit.tenants.models import TenantStatus
from crmkit.tenants.service import load_state, set_status
from crmkit.tenants.users import Role, create_user
from crmkit.testing import Env

with warnings.catch_warnings():  # authlib prefers the httpx2 package; httpx is what we have
    warnings.simplefilter("ignore")
    from authlib.integrations.httpx_client import AsyncOAuth2Client, OAuthError

BASE = "https://crmkit.test"
REDIRECT = "https://partner.example/cb"
TOKEN_URL = BASE + "/oauth/token"
AUTHORIZE_URL = BASE + "/oauth/authorize"
PASSWORD = "correct horse battery staple"
CUSTOMERS = "{ customers(first: 5) { nodes { id } } }"


# --- helpers ----------------------------------------------------------------------------


def asgi(env: Env) -> httpx.ASGITransport:
    return httpx.ASGITransport(app=env.client._transport.app)  # type: ignore[attr-defined]


@dataclass
class Partner:
    env: Env
    registered: Registered

    @property
    def client_id(self) -> str:
        return self.registered.client.client_id

    @property
    def secret(self) -> str | None:
        return self.registered.client_secret

    def client(self, **kwargs: Any) -> AsyncOAuth2Client:
        """authlib's OAuth 2.0 client, talking to the app in-process."""
        if self.secret is None:
            kwargs.setdefault("token_endpoint_auth_method", "none")
        return AsyncOAuth2Client(
            client_id=self.client_id,
            client_secret=self.secret,
            redirect_uri=REDIRECT,
            code_challenge_method="S256",
            transport=asgi(self.env),
            base_url=BASE,
            **kwargs,
        )

    @property
    def basic(self) -> tuple[str, str]:
        assert self.secret is not None
        return (self.client_id, self.secret)


async def partner(
    env: Env,
    *,
    scopes: tuple[str, ...] = ("customers:read", "customers:write", "activities:read", "pii:contact"),
    public: bool = False,
    redirect_uris: tuple[str, ...] = (REDIRECT,),
    name: str = "Partner",
) -> Partner:
    registered = await register_client(
        env.platform.db,
        env.platform.registry,
        name=name,
        redirect_uris=redirect_uris,
        scopes=scopes,
        confidential=not public,
        outbound=env.platform.outbound,
    )
    return Partner(env, registered)


async def install(env: Env, tenant: uuid.UUID, app: Partner, scopes: list[str]) -> uuid.UUID:
    async with env.platform.db.tenant_session(tenant) as session:
        state = await load_state(session, tenant)
        assert state is not None
        row = await install_app(
            session,
            env.platform.registry,
            state.plugins,
            client_id=app.client_id,
            scopes=scopes,
            installed_by="user:test",
        )
        return row.id


async def staff(env: Env, tenant: uuid.UUID, role: Role, email: str | None = None) -> tuple[str, uuid.UUID]:
    email = email or f"{role.value}-{uuid.uuid4().hex[:8]}@bank.example"
    async with env.platform.db.tenant_session(tenant) as session:
        user, _ = await create_user(
            session, email=email, display_name=f"A {role.value}", role=role, password=PASSWORD
        )
        return email, user.id


class Forms(HTMLParser):
    """The input fields of a page (the login and consent forms)."""

    def __init__(self) -> None:
        super().__init__()
        self.fields: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "input" and a.get("name") and a.get("type") != "password":
            self.fields[str(a["name"])] = a.get("value") or ""


def fields_of(page: str) -> dict[str, str]:
    parser = Forms()
    parser.feed(page)
    return parser.fields


def browser(env: Env) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=asgi(env), base_url=BASE, follow_redirects=False)


def verifier() -> str:
    return secrets.token_urlsafe(48)


def s256(value: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(value.encode()).digest()).rstrip(b"=").decode()


async def sign_in(
    env: Env,
    url: str,
    tenant: uuid.UUID,
    email: str,
    *,
    password: str = PASSWORD,
    decision: str = "approve",
) -> httpx.Response:
    """A staff user in a browser: the login page, then the consent page. The last answer."""
    async with browser(env) as b:
        page = await b.get(url)
        assert page.status_code == 200, page.text
        form = fields_of(page.text)
        assert form["step"] == "login"
        form.update(tenant=str(tenant), email=email, password=password)
        consent = await b.post("/oauth/authorize", data=form)
        if consent.status_code != 200 or "name=ticket" not in consent.text:
            return consent
        answer = fields_of(consent.text)
        answer["decision"] = decision
        return await b.post("/oauth/authorize", data=answer)


def query_of(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


async def code_flow(
    env: Env, app: Partner, tenant: uuid.UUID, email: str, *, scope: str | None = None
) -> tuple[AsyncOAuth2Client, dict[str, Any]]:
    """Authorization code + PKCE with authlib's client; its client and token."""
    client = app.client()
    code_verifier = verifier()
    kwargs: dict[str, Any] = {"tenant": str(tenant)}
    if scope is not None:
        kwargs["scope"] = scope
    url, state = client.create_authorization_url(AUTHORIZE_URL, code_verifier=code_verifier, **kwargs)
    answer = await sign_in(env, url, tenant, email)
    assert answer.status_code == 302, answer.text
    location = answer.headers["location"]
    params = query_of(location)
    assert params["state"] == state and params["iss"] == env.platform.settings.issuer, params
    token = await client.fetch_token(
        TOKEN_URL, authorization_response=location, code_verifier=code_verifier, state=state
    )
    return client, dict(token)


async def authorize_code(
    env: Env, app: Partner, tenant: uuid.UUID, email: str, **extra: str
) -> tuple[str, str]:
    """The code and verifier of a completed authorization (raw, without authlib)."""
    code_verifier = verifier()
    params = {
        "response_type": "code",
        "client_id": app.client_id,
        "redirect_uri": REDIRECT,
        "state": "xyz",
        "code_challenge": s256(code_verifier),
        "code_challenge_method": "S256",
        **extra,
    }
    answer = await sign_in(env, f"/oauth/authorize?{urlencode(params)}", tenant, email)
    assert answer.status_code == 302, answer.text
    return query_of(answer.headers["location"])["code"], code_verifier


async def token_request(
    env: Env, data: dict[str, str], auth: tuple[str, str] | None = None
) -> httpx.Response:
    async with browser(env) as b:
        return await b.post("/oauth/token", data=data, auth=auth)


async def setup(env: Env, *plugins: str, public: bool = False) -> tuple[uuid.UUID, Partner, str]:
    """A tenant, a partner app installed there, a relationship manager."""
    tenant = await env.tenant(*plugins)
    app = await partner(env, public=public)
    await install(env, tenant, app, ["customers:read", "customers:write", "pii:contact"])
    email, _ = await staff(env, tenant, Role.RELATIONSHIP_MANAGER)
    return tenant, app, email


# --- the grants -------------------------------------------------------------------------


async def test_client_credentials(env: Env) -> None:
    tenant = await env.tenant()
    app = await partner(env)
    installation = await install(env, tenant, app, ["customers:read", "activities:read"])
    async with app.client() as client:
        token = await client.fetch_token(TOKEN_URL, grant_type="client_credentials", tenant=str(tenant))
        assert token["token_type"] == "Bearer" and token["expires_in"] == 60 * 60
        assert token["scope"] == "activities:read customers:read" and "refresh_token" not in token
        narrowed = await client.fetch_token(
            TOKEN_URL, grant_type="client_credentials", tenant=str(tenant), scope="customers:read"
        )
        assert narrowed["scope"] == "customers:read"
    principal = env.tokens.verify(token["access_token"])
    assert principal.subject == f"app:{installation}" and principal.tenant_id == tenant
    assert principal.client_id == app.client_id
    body = await env.gql(CUSTOMERS, token=token["access_token"])
    assert body["data"]["customers"]["nodes"] == []
    refused = await env.gql(
        "mutation($id: UUID!) { archiveCustomer(id: $id) { id } }",
        {"id": str(uuid7())},
        token=token["access_token"],
    )
    assert refused["errors"][0]["extensions"]["code"] == "FORBIDDEN"


async def test_authorization_code_with_pkce_through_login_and_consent(env: Env) -> None:
    tenant, app, email = await setup(env)
    client, token = await code_flow(env, app, tenant, email, scope="customers:read customers:write")
    assert token["scope"] == "customers:read customers:write" and token["refresh_token"]
    principal = env.tokens.verify(token["access_token"])
    assert principal.subject.startswith("user:") and principal.client_id == app.client_id
    assert (await env.gql(CUSTOMERS, token=token["access_token"]))["data"]["customers"]["nodes"] == []
    # without a scope the app gets what the tenant granted it, within the user's role
    _, everything = await code_flow(env, app, tenant, email)
    assert everything["scope"] == "customers:read customers:write pii:contact"
    await client.aclose()


async def test_the_scope_is_the_apps_grant_within_the_users_role(env: Env) -> None:
    tenant, app, _ = await setup(env)
    analyst, _ = await staff(env, tenant, Role.ANALYST)
    _, token = await code_flow(env, app, tenant, analyst)
    assert token["scope"] == "customers:read"  # not customers:write, not pii:contact


async def test_refresh_tokens_rotate_and_reuse_revokes_the_family(env: Env) -> None:
    tenant, app, email = await setup(env)
    client, first = await code_flow(env, app, tenant, email)
    second = await client.refresh_token(TOKEN_URL, refresh_token=first["refresh_token"])
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    assert (await env.gql(CUSTOMERS, token=second["access_token"]))["data"] is not None
    narrowed = await client.refresh_token(
        TOKEN_URL, refresh_token=second["refresh_token"], scope="customers:read"
    )
    assert narrowed["scope"] == "customers:read"
    # the spent first refresh token again: someone holds a copy; the whole family goes
    with pytest.raises(OAuthError) as replay:
        await client.refresh_token(TOKEN_URL, refresh_token=first["refresh_token"])
    assert replay.value.error == "invalid_grant"
    with pytest.raises(OAuthError) as latest:
        await client.refresh_token(TOKEN_URL, refresh_token=narrowed["refresh_token"])
    assert latest.value.error == "invalid_grant"
    for access in (first, second, narrowed):
        await env.gql(CUSTOMERS, token=access["access_token"], status=401)
    await client.aclose()


async def test_a_refresh_may_not_widen_the_scope(env: Env) -> None:
    tenant, app, email = await setup(env)
    client, token = await code_flow(env, app, tenant, email, scope="customers:read")
    with pytest.raises(OAuthError) as wider:
        await client.refresh_token(TOKEN_URL, refresh_token=token["refresh_token"], scope="customers:write")
    assert wider.value.error == "invalid_scope"
    # refused before it was spent: the token still works
    again = await client.refresh_token(TOKEN_URL, refresh_token=token["refresh_token"])
    assert again["scope"] == "customers:read"
    await client.aclose()


async def test_concurrent_refreshes_with_one_token_let_one_win_then_revoke(env: Env) -> None:
    """authlib runs synchronously inside the request's AsyncSession (run_sync): five
    simultaneous refreshes with one token spend it exactly once."""
    tenant, app, email = await setup(env)
    client, token = await code_flow(env, app, tenant, email)
    data = {"grant_type": "refresh_token", "refresh_token": token["refresh_token"]}
    answers = await asyncio.gather(*(token_request(env, data, auth=app.basic) for _ in range(5)))
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [200, 400, 400, 400, 400], [a.text for a in answers]
    winner = next(a.json() for a in answers if a.status_code == 200)
    # the losers presented a spent token: reuse, so the winner's family is revoked too
    await env.gql(CUSTOMERS, token=winner["access_token"], status=401)
    late = await token_request(
        env, {"grant_type": "refresh_token", "refresh_token": winner["refresh_token"]}, auth=app.basic
    )
    assert late.json()["error"] == "invalid_grant"
    await client.aclose()


async def test_concurrent_token_requests_keep_their_tenants(env: Env) -> None:
    app = await partner(env)
    tenants = [await env.tenant() for _ in range(3)]
    for tenant in tenants:
        await install(env, tenant, app, ["customers:read"])
    wanted = [tenants[i % 3] for i in range(12)]
    answers = await asyncio.gather(
        *(
            token_request(env, {"grant_type": "client_credentials", "tenant": str(t)}, auth=app.basic)
            for t in wanted
        )
    )
    for tenant, answer in zip(wanted, answers, strict=True):
        assert answer.status_code == 200, answer.text
        assert env.tokens.verify(answer.json()["access_token"]).tenant_id == tenant


# --- revocation, introspection, metadata --------------------------------------------------


async def test_revoked_access_token_is_refused_by_graphql(env: Env) -> None:
    tenant = await env.tenant()
    app = await partner(env)
    await install(env, tenant, app, ["customers:read"])
    async with app.client() as client:
        token = await client.fetch_token(TOKEN_URL, grant_type="client_credentials", tenant=str(tenant))
        other = await client.fetch_token(TOKEN_URL, grant_type="client_credentials", tenant=str(tenant))
        await env.gql(CUSTOMERS, token=token["access_token"])
        revoked = await client.revoke_token(
            BASE + "/oauth/revoke", token=token["access_token"], token_type_hint="access_token"
        )
        assert revoked.status_code == 200
    body = await env.gql(CUSTOMERS, token=token["access_token"], status=401)
    assert "revoked" in body["errors"][0]["message"]
    await env.gql(CUSTOMERS, token=other["access_token"])  # only that one token


async def test_revoking_a_refresh_token_revokes_its_family(env: Env) -> None:
    tenant, app, email = await setup(env)
    client, token = await code_flow(env, app, tenant, email)
    answer = await client.revoke_token(BASE + "/oauth/revoke", token=token["refresh_token"])
    assert answer.status_code == 200
    await env.gql(CUSTOMERS, token=token["access_token"], status=401)
    with pytest.raises(OAuthError):
        await client.refresh_token(TOKEN_URL, refresh_token=token["refresh_token"])
    await client.aclose()


async def test_introspection_of_active_and_revoked_tokens(env: Env) -> None:
    tenant, app, email = await setup(env)
    client, token = await code_flow(env, app, tenant, email)
    url = BASE + "/oauth/introspect"
    active = (await client.introspect_token(url, token=token["access_token"])).json()
    assert active["active"] is True and active["client_id"] == app.client_id
    assert active["scope"] == token["scope"] and active["sub"].startswith("user:")
    assert active["tid"] == str(tenant) and active["token_type"] == "Bearer"
    refresh = (await client.introspect_token(url, token=token["refresh_token"])).json()
    assert refresh["active"] is True and refresh["token_type"] == "refresh_token"
    await client.revoke_token(BASE + "/oauth/revoke", token=token["access_token"])
    assert (await client.introspect_token(url, token=token["access_token"])).json() == {"active": False}
    assert (await client.introspect_token(url, token="not-a-token")).json() == {"active": False}
    await client.aclose()


async def test_a_partner_cannot_introspect_another_partners_token(env: Env) -> None:
    tenant, app_a, email = await setup(env)
    app_b = await partner(env, name="Other partner")
    await install(env, tenant, app_b, ["customers:read"])
    client_a, token = await code_flow(env, app_a, tenant, email)
    async with app_b.client() as client_b:
        for value in (token["access_token"], token["refresh_token"]):
            seen = await client_b.introspect_token(BASE + "/oauth/introspect", token=value)
            assert seen.json() == {"active": False}
        # nor revoke it
        refused = await client_b.revoke_token(BASE + "/oauth/revoke", token=token["access_token"])
        assert refused.status_code == 400
    await env.gql(CUSTOMERS, token=token["access_token"])
    await client_a.aclose()


async def test_metadata_and_jwks_verify_a_token(env: Env) -> None:
    tenant = await env.tenant()
    app = await partner(env)
    await install(env, tenant, app, ["customers:read"])
    async with browser(env) as b:
        metadata = (await b.get("/.well-known/oauth-authorization-server")).json()
        keys = (await b.get(metadata["jwks_uri"])).json()
    assert metadata["issuer"] == env.platform.settings.issuer
    assert metadata["token_endpoint"] == TOKEN_URL and metadata["authorization_endpoint"] == AUTHORIZE_URL
    assert metadata["code_challenge_methods_supported"] == ["S256"]
    assert metadata["response_types_supported"] == ["code"]
    assert "password" not in metadata["grant_types_supported"]
    assert "implicit" not in metadata["grant_types_supported"]
    assert metadata["authorization_response_iss_parameter_supported"] is True
    assert all("d" not in key for key in keys["keys"])  # public keys only
    async with app.client() as client:
        token = await client.fetch_token(
            metadata["token_endpoint"], grant_type="client_credentials", tenant=str(tenant)
        )
    decoded = jwt.decode(token["access_token"], KeySet.import_key_set(keys), algorithms=["ES256"])
    assert decoded.header["kid"] == keys["keys"][0]["kid"] and decoded.header["typ"] == "at+jwt"
    assert decoded.claims["client_id"] == app.client_id and decoded.claims["iss"] == metadata["issuer"]


def test_metadata_is_valid_rfc8414_with_an_https_issuer(env: Env) -> None:
    from authlib.oauth2.rfc8414 import AuthorizationServerMetadata

    fake = SimpleNamespace(settings=Settings(issuer="https://crm.example"), registry=env.platform.registry)
    data = server_metadata(fake, "https://crm.example")  # type: ignore[arg-type]
    AuthorizationServerMetadata(data).validate()


# --- refusals ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "redirect_uri",
    [
        REDIRECT + "/extra",
        REDIRECT + "?next=1",
        "https://Partner.example/cb",
        "https://partner.example/CB",
        "https://user@partner.example/cb",
        REDIRECT + "/",
        "",
    ],
)
async def test_a_redirect_uri_must_match_exactly(env: Env, redirect_uri: str) -> None:
    tenant, app, _ = await setup(env)
    params = {
        "response_type": "code",
        "client_id": app.client_id,
        "state": "s",
        "code_challenge": s256(verifier()),
        "code_challenge_method": "S256",
        "tenant": str(tenant),
    }
    if redirect_uri:
        params["redirect_uri"] = redirect_uri
    async with browser(env) as b:
        answer = await b.get(f"/oauth/authorize?{urlencode(params)}")
    assert answer.status_code == 400 and "location" not in answer.headers  # never sent there
    assert "Redirect URI" in answer.text or "redirect_uri" in answer.text


async def test_the_token_request_must_repeat_the_redirect_uri(env: Env) -> None:
    tenant, app, email = await setup(env)
    code, code_verifier = await authorize_code(env, app, tenant, email)
    answer = await token_request(
        env,
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT + "/other",
            "code_verifier": code_verifier,
        },
        auth=app.basic,
    )
    assert answer.json()["error"] == "invalid_grant"


@pytest.mark.parametrize("public", [False, True], ids=["confidential", "public"])
@pytest.mark.parametrize(
    "pkce",
    [{}, {"code_challenge_method": "S256"}, {"code_challenge_method": "plain"}, {"method": None}],
    ids=["missing", "no-challenge", "plain", "no-method"],
)
async def test_pkce_s256_is_required_of_every_client(env: Env, public: bool, pkce: dict[str, Any]) -> None:
    tenant, app, _ = await setup(env, public=public)
    params = {
        "response_type": "code",
        "client_id": app.client_id,
        "redirect_uri": REDIRECT,
        "state": "s",
        "tenant": str(tenant),
    }
    challenge = verifier()
    if pkce.get("code_challenge_method") == "plain":
        params.update(code_challenge=challenge, code_challenge_method="plain")
    elif "method" in pkce:
        params["code_challenge"] = s256(challenge)  # authlib would take this as plain
    else:
        params.update({k: v for k, v in pkce.items() if v})
    async with browser(env) as b:
        answer = await b.get(f"/oauth/authorize?{urlencode(params)}")
    assert answer.status_code == 302
    sent = query_of(answer.headers["location"])
    assert sent["error"] == "invalid_request" and sent["state"] == "s"
    assert sent["iss"] == env.platform.settings.issuer


@pytest.mark.parametrize("public", [False, True], ids=["confidential", "public"])
async def test_the_code_verifier_is_required_and_checked(env: Env, public: bool) -> None:
    tenant, app, email = await setup(env, public=public)
    auth = None if public else app.basic
    extra = {"client_id": app.client_id} if public else {}
    code, code_verifier = await authorize_code(env, app, tenant, email)
    base = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT, **extra}
    missing = await token_request(env, base, auth=auth)
    assert missing.json()["error"] == "invalid_request"
    wrong = await token_request(env, {**base, "code_verifier": verifier()}, auth=auth)
    assert wrong.json()["error"] == "invalid_grant"
    right = await token_request(env, {**base, "code_verifier": code_verifier}, auth=auth)
    assert right.status_code == 200, right.text


async def test_a_verifier_without_a_challenge_is_refused(env: Env) -> None:
    """A code issued without PKCE (none can be, but say an old one) cannot be exchanged,
    and a verifier sent for it is refused (RFC 9700 4.8)."""
    tenant, app, email = await setup(env)
    code = new_opaque(tenant)
    async with env.platform.db.tenant_session(tenant) as session:
        from crmkit.auth.apps import find_installation
        from crmkit.tenants.users import find_by_email

        user = await find_by_email(session, email)
        installation = await find_installation(session, app.client_id)
        assert user is not None and installation is not None
        parsed = parse_opaque(code)
        assert parsed is not None
        session.add(
            AuthorizationCode(
                tenant_id=tenant,
                code_hash=parsed[1],
                client_id=app.client_id,
                installation_id=installation.id,
                user_id=user.id,
                redirect_uri=REDIRECT,
                scope="customers:read",
                grant_id=uuid7(),
                expires_at=utcnow() + timedelta(minutes=5),
            )
        )
    base = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT}
    with_verifier = await token_request(env, {**base, "code_verifier": verifier()}, auth=app.basic)
    assert with_verifier.json()["error"] == "invalid_request"
    assert "code_challenge" in with_verifier.json()["error_description"]
    without = await token_request(env, base, auth=app.basic)
    assert without.json()["error"] == "invalid_grant"


async def test_a_reused_code_is_refused_and_its_tokens_revoked(env: Env) -> None:
    tenant, app, email = await setup(env)
    code, code_verifier = await authorize_code(env, app, tenant, email)
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "code_verifier": code_verifier,
    }
    first = await token_request(env, data, auth=app.basic)
    assert first.status_code == 200, first.text
    tokens = first.json()
    await env.gql(CUSTOMERS, token=tokens["access_token"])
    again = await token_request(env, data, auth=app.basic)
    assert again.json()["error"] == "invalid_grant"
    await env.gql(CUSTOMERS, token=tokens["access_token"], status=401)
    refresh = await token_request(
        env, {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}, auth=app.basic
    )
    assert refresh.json()["error"] == "invalid_grant"


async def test_a_code_for_another_client_is_refused(env: Env) -> None:
    tenant, app_a, email = await setup(env)
    app_b = await partner(env, name="Other partner")
    await install(env, tenant, app_b, ["customers:read"])
    code, code_verifier = await authorize_code(env, app_a, tenant, email)
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "code_verifier": code_verifier,
    }
    stolen = await token_request(env, data, auth=app_b.basic)
    assert stolen.json()["error"] == "invalid_grant"
    mine = await token_request(env, data, auth=app_a.basic)  # not spent by the attempt
    assert mine.status_code == 200, mine.text


async def test_no_password_or_implicit_grant(env: Env) -> None:
    _, app, email = await setup(env)
    password = await token_request(
        env, {"grant_type": "password", "username": email, "password": PASSWORD}, auth=app.basic
    )
    assert password.status_code == 400 and password.json()["error"] == "unsupported_grant_type"
    params = {"response_type": "token", "client_id": app.client_id, "redirect_uri": REDIRECT, "state": "s"}
    async with browser(env) as b:
        implicit = await b.get(f"/oauth/authorize?{urlencode(params)}")
    assert query_of(implicit.headers["location"])["error"] == "unsupported_response_type"
    assert "#" not in implicit.headers["location"]


def _sign(env: Env, header: dict[str, Any], claims: dict[str, Any]) -> str:
    return jwt.encode(header, claims, env.tokens.key, algorithms=["ES256"])


def _claims(env: Env, tenant: uuid.UUID, **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "iss": env.platform.settings.issuer,
        "aud": "crmkit",
        "sub": "app:test",
        "client_id": "someone",
        "tid": str(tenant),
        "scope": "customers:read",
        "iat": now,
        "exp": now + 600,
        "jti": uuid7().hex,
    }
    claims.update(changes)
    return claims


async def test_an_expired_token_is_refused(env: Env) -> None:
    tenant = await env.tenant()
    header = {"alg": "ES256", "typ": "at+jwt", "kid": env.tokens.kid}
    now = int(time.time())
    expired = _sign(env, header, _claims(env, tenant, iat=now - 7200, exp=now - 3600))
    body = await env.gql(CUSTOMERS, token=expired, status=401)
    assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    await env.gql(CUSTOMERS, token=_sign(env, header, _claims(env, tenant)))  # the same, in time


async def test_a_suspended_tenants_tokens_are_refused(env: Env) -> None:
    tenant, app, email = await setup(env)
    client, user_token = await code_flow(env, app, tenant, email)
    app_token = await client.fetch_token(TOKEN_URL, grant_type="client_credentials", tenant=str(tenant))
    await set_status(env.platform.db, str(tenant), TenantStatus.SUSPENDED)
    try:
        for token in (user_token, app_token):
            await env.gql(CUSTOMERS, token=token["access_token"], status=401)
            seen = await client.introspect_token(BASE + "/oauth/introspect", token=token["access_token"])
            assert seen.json() == {"active": False}
        with pytest.raises(OAuthError) as new_token:
            await client.fetch_token(TOKEN_URL, grant_type="client_credentials", tenant=str(tenant))
        assert new_token.value.error == "unauthorized_client"
        with pytest.raises(OAuthError) as refresh:
            await client.refresh_token(TOKEN_URL, refresh_token=user_token["refresh_token"])
        assert refresh.value.error == "invalid_grant"
    finally:
        await set_status(env.platform.db, str(tenant), TenantStatus.ACTIVE)
        await client.aclose()


async def test_a_scope_not_granted_is_refused_not_dropped(env: Env) -> None:
    tenant, app, email = await setup(env)
    async with app.client() as client:
        for scope in ("customers:read activities:read", "customers:read audit:read", "no:such"):
            with pytest.raises(OAuthError) as refused:
                await client.fetch_token(
                    TOKEN_URL, grant_type="client_credentials", tenant=str(tenant), scope=scope
                )
            assert refused.value.error == "invalid_scope", scope
    # in an authorization request: the app may not ask for audit:read at all
    params = {
        "response_type": "code",
        "client_id": app.client_id,
        "redirect_uri": REDIRECT,
        "state": "s",
        "scope": "customers:read audit:read",
        "code_challenge": s256(verifier()),
        "code_challenge_method": "S256",
    }
    async with browser(env) as b:
        answer = await b.get(f"/oauth/authorize?{urlencode(params)}")
    assert query_of(answer.headers["location"])["error"] == "invalid_scope"
    # it may ask for activities:read, but this tenant did not grant it
    params["scope"] = "customers:read activities:read"
    answer = await sign_in(env, f"/oauth/authorize?{urlencode(params)}", tenant, email)
    assert query_of(answer.headers["location"])["error"] == "invalid_scope"


async def test_an_app_not_installed_in_the_tenant_gets_nothing(env: Env) -> None:
    _, app, _ = await setup(env)
    elsewhere = await env.tenant()
    other_email, _ = await staff(env, elsewhere, Role.TENANT_ADMIN)
    async with app.client() as client:
        with pytest.raises(OAuthError) as refused:
            await client.fetch_token(TOKEN_URL, grant_type="client_credentials", tenant=str(elsewhere))
        assert refused.value.error == "unauthorized_client"
        with pytest.raises(OAuthError) as unnamed:
            await client.fetch_token(TOKEN_URL, grant_type="client_credentials")
        assert unnamed.value.error == "unauthorized_client"
        url, _ = client.create_authorization_url(AUTHORIZE_URL, code_verifier=verifier())
    answer = await sign_in(env, url, elsewhere, other_email)
    assert answer.status_code == 302
    assert query_of(answer.headers["location"])["error"] == "unauthorized_client"


async def test_tampered_and_unsigned_tokens_are_refused(env: Env) -> None:
    tenant = await env.tenant()
    app = await partner(env)
    await install(env, tenant, app, ["customers:read"])
    async with app.client() as client:
        token = (await client.fetch_token(TOKEN_URL, grant_type="client_credentials", tenant=str(tenant)))[
            "access_token"
        ]
        header, payload, signature = token.split(".")
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        claims["scope"] = "customers:read customers:write audit:read"
        forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
        tampered = f"{header}.{forged}.{signature}"
        none_header = base64.urlsafe_b64encode(b'{"alg":"none","typ":"at+jwt"}').rstrip(b"=").decode()
        unsigned = f"{none_header}.{forged}."
        for bad in (tampered, unsigned, f"{none_header}.{payload}."):
            await env.gql(CUSTOMERS, token=bad, status=401)
            seen = await client.introspect_token(BASE + "/oauth/introspect", token=bad)
            assert seen.json() == {"active": False}
        await env.gql(CUSTOMERS, token=token)


async def test_wrong_password_shows_the_login_again_and_deny_says_access_denied(env: Env) -> None:
    tenant, app, email = await setup(env)
    async with app.client() as client:
        url, state = client.create_authorization_url(AUTHORIZE_URL, code_verifier=verifier())
    wrong = await sign_in(env, url, tenant, email, password="not the password at all")
    assert wrong.status_code == 200 and "not right" in wrong.text and "name=ticket" not in wrong.text
    denied = await sign_in(env, url, tenant, email, decision="deny")
    sent = query_of(denied.headers["location"])
    assert sent["error"] == "access_denied" and sent["state"] == state
    assert sent["iss"] == env.platform.settings.issuer


async def test_a_forged_consent_ticket_is_refused(env: Env) -> None:
    tenant, app, email = await setup(env)
    async with app.client() as client:
        url, _ = client.create_authorization_url(AUTHORIZE_URL, code_verifier=verifier())
    async with browser(env) as b:
        login = fields_of((await b.get(url)).text)
        login.update(tenant=str(tenant), email=email, password=PASSWORD)
        consent = fields_of((await b.post("/oauth/authorize", data=login)).text)
        body, _, signature = consent["ticket"].partition(".")
        forged = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        forged["u"] = uuid.uuid4().hex
        consent["ticket"] = (
            base64.urlsafe_b64encode(json.dumps(forged).encode()).rstrip(b"=").decode() + "." + signature
        )
        answer = await b.post("/oauth/authorize", data={**consent, "decision": "approve"})
    assert query_of(answer.headers["location"])["error"] == "access_denied"


@pytest.mark.parametrize(
    "hostile",
    ["%00", "%ED%A0%80", "%FF%FE", "a" * 5000],
    ids=["nul", "lone-surrogate", "bad-utf8", "very-long"],
)
async def test_the_login_form_refuses_hostile_text_without_an_internal_error(env: Env, hostile: str) -> None:
    """The login form is text from anyone: bytes no database column holds get the login
    page's own answer, never a 500."""
    tenant, app, email = await setup(env)
    async with app.client() as client:
        url, _ = client.create_authorization_url(AUTHORIZE_URL, code_verifier=verifier())
    async with browser(env) as b:
        login = fields_of((await b.get(url)).text)
        for field in ("email", "password", "tenant"):
            form = {**login, "tenant": str(tenant), "email": email, "password": PASSWORD}
            body = "&".join(f"{k}={quote(v)}" for k, v in form.items() if k != field) + f"&{field}={hostile}"
            answer = await b.post(
                "/oauth/authorize",
                content=body,
                headers={"content-type": "application/x-www-form-urlencoded"},
            )
            assert answer.status_code < 500, (field, answer.status_code, answer.text[:200])
            assert "name=ticket" not in answer.text


async def test_a_consent_ticket_is_single_use(env: Env) -> None:
    """A replayed consent form mints no second code (and no second token family),
    also when the replays race each other."""
    tenant, app, email = await setup(env)
    async with app.client() as client:
        url, _ = client.create_authorization_url(AUTHORIZE_URL, code_verifier=verifier())
    async with browser(env) as b:
        login = fields_of((await b.get(url)).text)
        login.update(tenant=str(tenant), email=email, password=PASSWORD)
        consent = fields_of((await b.post("/oauth/authorize", data=login)).text)
        form = {**consent, "decision": "approve"}
        answers = await asyncio.gather(*(b.post("/oauth/authorize", data=form) for _ in range(5)))
    codes = [query_of(a.headers["location"]).get("code") for a in answers]
    assert len([code for code in codes if code]) == 1, codes
    refused = [
        query_of(a.headers["location"]) for a in answers if "code" not in query_of(a.headers["location"])
    ]
    assert all(r["error"] == "access_denied" for r in refused)


async def test_a_public_client_has_no_client_credentials_grant(env: Env) -> None:
    tenant, app, _ = await setup(env, public=True)
    answer = await token_request(
        env, {"grant_type": "client_credentials", "tenant": str(tenant), "client_id": app.client_id}
    )
    assert answer.json()["error"] in {"invalid_client", "unauthorized_client"}


async def test_uninstalling_an_app_revokes_its_tokens(env: Env) -> None:
    tenant, app, email = await setup(env)
    client, user_token = await code_flow(env, app, tenant, email)
    app_token = await client.fetch_token(TOKEN_URL, grant_type="client_credentials", tenant=str(tenant))
    admin = env.token(tenant, ["apps:admin"])
    body = await env.gql(
        "mutation($c: String!) { uninstallApp(clientId: $c) }", {"c": app.client_id}, token=admin
    )
    assert "errors" not in body, body
    for token in (user_token, app_token):
        await env.gql(CUSTOMERS, token=token["access_token"], status=401)
    with pytest.raises(OAuthError):
        await client.refresh_token(TOKEN_URL, refresh_token=user_token["refresh_token"])
    await client.aclose()


async def test_tenant_admin_installs_apps_within_what_the_app_may_ask(env: Env) -> None:
    tenant = await env.tenant()
    app = await partner(env)
    admin = env.token(tenant, ["apps:admin"])
    install_app_ = (
        "mutation($c: String!, $s: [String!]!) { installApp(clientId: $c, scopes: $s) { appName scopes } }"
    )
    body = await env.gql(
        install_app_, {"c": app.client_id, "s": ["customers:read", "audit:read"]}, token=admin
    )
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    body = await env.gql(install_app_, {"c": app.client_id, "s": ["customers:read"]}, token=admin)
    assert body["data"]["installApp"] == {"appName": "Partner", "scopes": ["customers:read"]}
    listed = await env.gql("{ appInstallations { clientId scopes } }", token=admin)
    assert listed["data"]["appInstallations"] == [{"clientId": app.client_id, "scopes": ["customers:read"]}]
    forbidden = await env.gql(
        "{ appInstallations { clientId } }", token=env.token(tenant, ["customers:read"])
    )
    assert forbidden["errors"][0]["extensions"]["code"] == "FORBIDDEN"


async def test_expired_codes_refresh_tokens_and_revocations_are_purged(env: Env) -> None:
    from sqlalchemy import func, select

    from crmkit.auth.housekeeping import purge_expired
    from crmkit.auth.models import RefreshToken
    from crmkit.tenants.revocation import Revocation

    tenant, app, email = await setup(env)
    _, token = await code_flow(env, app, tenant, email)  # a spent code, a live refresh token
    past = utcnow() - timedelta(days=1)
    async with env.platform.db.tenant_session(tenant) as session:
        row = await session.scalar(select(RefreshToken))
        assert row is not None
        session.add(Revocation(tenant_id=tenant, key="jti:old", revoked_at=past, expires_at=past))
        session.add(Revocation(tenant_id=tenant, key="sub:user:kept", revoked_at=past, expires_at=None))
        for code in await session.scalars(select(AuthorizationCode)):
            code.expires_at = past
    async with env.platform.tenant_scope(tenant) as scope:
        assert await purge_expired(scope.ctx) == 2  # the code and the old revocation
    async with env.platform.db.tenant_session(tenant) as session:
        assert await session.scalar(select(func.count()).select_from(AuthorizationCode)) == 0
        assert await session.scalar(select(func.count()).select_from(RefreshToken)) == 1
        kept = [r.key for r in await session.scalars(select(Revocation))]
        # the consent ticket spent by the sign-in stays recorded until it would expire
        assert [k for k in kept if not k.startswith("ticket:")] == ["sub:user:kept"]
        assert len(kept) == 2
    assert "purge_oauth" in {spec.name for _, spec in env.platform.registry.jobs().values()}
    await env.gql(CUSTOMERS, token=token["access_token"])


async def test_token_lifetimes_come_from_settings(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(env.platform.settings, "access_token_minutes", 7)
    monkeypatch.setattr(env.platform.settings, "refresh_token_days", 2)
    tenant, app, email = await setup(env)
    client, token = await code_flow(env, app, tenant, email)
    assert token["expires_in"] == 7 * 60
    claims = jwt.decode(token["access_token"], env.tokens.key, algorithms=["ES256"]).claims
    assert claims["exp"] - claims["iat"] == 7 * 60
    refresh = (await client.introspect_token(BASE + "/oauth/introspect", token=token["refresh_token"])).json()
    assert abs(refresh["exp"] - (time.time() + 2 * 86400)) < 60
    await client.aclose()


async def test_plain_http_is_refused_outside_development_mode(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant = await env.tenant()
    app = await partner(env)
    await install(env, tenant, app, ["customers:read"])
    monkeypatch.setattr(env.platform.settings, "dev_mode", False)
    data = {"grant_type": "client_credentials", "tenant": str(tenant)}
    plain = await env.client.post("/oauth/token", data=data, auth=app.basic)  # http://crmkit.test
    assert plain.status_code == 400 and "https" in plain.json()["error_description"]
    assert (await token_request(env, data, auth=app.basic)).status_code == 200


WRONG = "not the password at all"
LOCKED = "Too many failed attempts"


async def login(
    env: Env,
    url: str,
    tenant: uuid.UUID | str,
    email: str,
    *,
    password: str = WRONG,
    address: str = "127.0.0.1",
) -> str:
    """The login form posted from client ``address``: the page it answers with."""
    transport = httpx.ASGITransport(app=env.client._transport.app, client=(address, 40000))  # type: ignore[attr-defined]
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as b:
        form = fields_of((await b.get(url)).text)
        form.update(tenant=str(tenant), email=email, password=password)
        answer = await b.post("/oauth/authorize", data=form)
        assert answer.status_code == 200, answer.text
        return answer.text


async def authorize_url(app: Partner) -> str:
    async with app.client() as client:
        url, _ = client.create_authorization_url(AUTHORIZE_URL, code_verifier=verifier())
    return str(url)


async def test_repeated_wrong_passwords_lock_the_account_for_a_while(env: Env, clock: Any) -> None:
    from crmkit.tenants.users import LOCK_MINUTES, MAX_FAILED_LOGINS

    tenant, app, email = await setup(env)
    url = await authorize_url(app)
    for _ in range(MAX_FAILED_LOGINS):
        assert "not right" in await login(env, url, tenant, email)
    locked = await login(env, url, tenant, email, password=PASSWORD)  # the right password, refused
    assert LOCKED in locked and "name=ticket" not in locked
    clock.advance(minutes=LOCK_MINUTES + 1)  # the lock ends
    assert "name=ticket" in await login(env, url, tenant, email, password=PASSWORD)


async def test_each_lock_without_a_success_between_lasts_twice_as_long(env: Env, clock: Any) -> None:
    from crmkit.tenants.users import LOCK_MINUTES, MAX_FAILED_LOGINS

    tenant, app, email = await setup(env)
    url = await authorize_url(app)
    for minutes in (LOCK_MINUTES, 2 * LOCK_MINUTES):
        for _ in range(MAX_FAILED_LOGINS):
            assert "not right" in await login(env, url, tenant, email)
        clock.advance(minutes=minutes - 1)
        assert LOCKED in await login(env, url, tenant, email, password=PASSWORD)
        clock.advance(minutes=2)
    assert "name=ticket" in await login(env, url, tenant, email, password=PASSWORD)


@pytest.mark.postgres_only
async def test_concurrent_wrong_passwords_count_at_most_five(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """20 wrong passwords at once: at most five are checked (and counted); the rest,
    and then the right password, are refused as locked without a check."""
    from crmkit.tenants import users

    tenant, app, email = await setup(env)
    url = await authorize_url(app)
    checked = spy_on_password_checks(monkeypatch)
    answers = await asyncio.gather(*(login(env, url, tenant, email) for _ in range(20)))
    wrong = [a for a in answers if "not right" in a]
    assert len(wrong) <= users.MAX_FAILED_LOGINS and len(checked) == len(wrong), (len(wrong), len(checked))
    assert all(LOCKED in a for a in answers if a not in wrong)
    assert LOCKED in await login(env, url, tenant, email, password=PASSWORD)
    assert len(checked) == len(wrong)


class PasswordChecks:
    """argon2's hasher, recording the hash each check verifies against (the checks run)."""

    def __init__(self, hasher: Any) -> None:
        self.hasher = hasher
        self.hashes: list[str] = []

    def verify(self, password_hash: str, password: str) -> bool:
        self.hashes.append(password_hash)
        return bool(self.hasher.verify(password_hash, password))


def spy_on_password_checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The hash every password check verifies against, in order."""
    from crmkit.tenants import users

    checks = PasswordChecks(users.HASHER)
    monkeypatch.setattr(users, "HASHER", checks)
    return checks.hashes


async def test_unknown_accounts_answer_and_lock_like_known_ones(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Six wrong passwords for a known account, an unknown e-mail and an unknown
    institution: the same pages, and each attempt that is checked verifies a hash
    (the dummy one when there is no account)."""
    from crmkit.tenants import users

    tenant, app, email = await setup(env)
    url = await authorize_url(app)
    accounts = {
        "known": (str(tenant), email),
        "unknown e-mail": (str(tenant), f"nobody-{uuid.uuid4().hex[:8]}@bank.example"),
        "unknown institution": (f"ghost-{uuid.uuid4().hex[:8]}", email),
    }
    pages: dict[str, list[str]] = {}
    for name, (institution, address) in accounts.items():
        checked = spy_on_password_checks(monkeypatch)
        answers = [await login(env, url, institution, address) for _ in range(users.MAX_FAILED_LOGINS + 1)]
        pages[name] = [a.replace(institution, "T").replace(address, "E") for a in answers]
        assert len(checked) == users.MAX_FAILED_LOGINS, name  # the sixth is refused unchecked
        if name != "known":
            assert set(checked) == {users._DUMMY_HASH}, name
        monkeypatch.undo()
    assert pages["known"] == pages["unknown e-mail"] == pages["unknown institution"]
    assert LOCKED in pages["known"][-1] and "not right" in pages["known"][0]


async def test_a_lock_holds_the_guessing_address_not_the_owner(env: Env) -> None:
    from crmkit.tenants.users import MAX_FAILED_LOGINS

    tenant, app, email = await setup(env)
    url = await authorize_url(app)
    for _ in range(MAX_FAILED_LOGINS):
        await login(env, url, tenant, email, address="203.0.113.9")
    assert LOCKED in await login(env, url, tenant, email, password=PASSWORD, address="203.0.113.9")
    assert "name=ticket" in await login(env, url, tenant, email, password=PASSWORD, address="198.51.100.4")


async def test_a_tenant_admin_unlocks_a_user(env: Env) -> None:
    from crmkit.tenants.users import MAX_FAILED_LOGINS

    tenant, app, email = await setup(env)
    url = await authorize_url(app)
    for address in ("203.0.113.9", "203.0.113.10"):
        for _ in range(MAX_FAILED_LOGINS):
            await login(env, url, tenant, email, address=address)
    async with env.platform.db.tenant_session(tenant) as session:
        from crmkit.tenants.users import find_by_email

        user = await find_by_email(session, email)
        assert user is not None
    unlock = "mutation($id: UUID!) { unlockUser(id: $id) { email } }"
    refused = await env.gql(unlock, {"id": str(user.id)}, token=env.token(tenant, ["customers:read"]))
    assert refused["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert LOCKED in await login(env, url, tenant, email, password=PASSWORD, address="203.0.113.9")
    done = await env.gql(unlock, {"id": str(user.id)}, token=env.token(tenant, ["users:admin"]))
    assert done == {"data": {"unlockUser": {"email": email}}}, done
    for address in ("203.0.113.9", "203.0.113.10"):
        assert "name=ticket" in await login(env, url, tenant, email, password=PASSWORD, address=address)
    other = await env.tenant()  # another tenant's user id is not found
    missing = await env.gql(unlock, {"id": str(user.id)}, token=env.token(other, ["users:admin"]))
    assert missing["errors"][0]["extensions"]["code"] == "NOT_FOUND"
