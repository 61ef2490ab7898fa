"""Partner apps: registered by an operator, installed in a tenant by its tenant admin.

Registration fixes what an app may ever ask for (its scopes) and where it may be sent
back to (its redirect URIs, compared exactly). Installing it in a tenant grants it a
subset of those scopes there; the app's tokens for that tenant never exceed the grant.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from sqlalchemy import select

from crmkit.auth.models import AppInstallation, OAuthClient, hash_secret
from crmkit.db import Database, TenantSession
from crmkit.errors import BadUserInput, NotFound
from crmkit.outbound import BlockedDestination, OutboundPolicy
from crmkit.tenants.revocation import revoke

if TYPE_CHECKING:
    from crmkit.platform.registry import PluginRegistry

LOOPBACK = {"127.0.0.1", "::1", "localhost"}


@dataclass(frozen=True)
class Registered:
    client: OAuthClient
    client_secret: str | None
    """Shown once; only its hash is stored. None for a public client."""


def check_redirect_uri(uri: str) -> str:
    """An absolute https URI (http on a loopback host) without fragment or user info."""
    try:
        parts = urlsplit(uri)
        _ = parts.port  # raises on a malformed port
    except ValueError:
        raise BadUserInput(f"redirect URI {uri!r} is malformed", field="redirect_uris") from None
    secure = parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in LOOPBACK)
    if not secure or not parts.hostname:
        raise BadUserInput(
            f"redirect URI {uri!r} must be an absolute https URI (http only on a loopback host)",
            field="redirect_uris",
        )
    if parts.fragment or "#" in uri:
        raise BadUserInput(f"redirect URI {uri!r} must not have a fragment", field="redirect_uris")
    if parts.username is not None or parts.password is not None:
        raise BadUserInput(f"redirect URI {uri!r} must not carry user info", field="redirect_uris")
    return uri


async def register_client(
    db: Database,
    registry: PluginRegistry,
    *,
    name: str,
    redirect_uris: Iterable[str],
    scopes: Iterable[str],
    confidential: bool = True,
    webhook_url: str | None = None,
    outbound: OutboundPolicy,
) -> Registered:
    """Register a partner app (operator tool). Its webhook URL must be a destination
    ``outbound`` allows (checked again at every delivery)."""
    name = name.strip()
    if not name or len(name) > 200:
        raise BadUserInput("an app needs a name of 1 to 200 characters", field="name")
    uris = [check_redirect_uri(u) for u in redirect_uris]
    wanted = sorted(set(scopes))
    known = registry.scopes()
    unknown = [s for s in wanted if s not in known]
    if unknown:
        raise BadUserInput(f"unknown scopes: {', '.join(unknown)}", field="scopes")
    if not wanted:
        raise BadUserInput("name the scopes the app may ask for", field="scopes")
    if webhook_url is not None:
        try:
            await outbound.resolve(webhook_url)
        except BlockedDestination as exc:
            raise BadUserInput(f"webhook URL: {exc.message}", field="webhook_url") from None
    secret = secrets.token_urlsafe(32) if confidential else None
    client = OAuthClient(
        client_id=f"app_{secrets.token_urlsafe(12)}",
        secret_hash=hash_secret(secret) if secret else None,
        name=name,
        redirect_uris=uris,
        scopes=wanted,
        webhook_url=webhook_url,
        confidential=confidential,
    )
    async with db.platform_session() as session:
        session.add(client)
    return Registered(client, secret)


async def get_client(session: TenantSession, client_id: str) -> OAuthClient:
    client = await session.get(OAuthClient, client_id)
    if client is None or not client.active:
        raise NotFound(f"no app {client_id!r}")
    return client


async def find_installation(session: TenantSession, client_id: str) -> AppInstallation | None:
    return await session.scalar(select(AppInstallation).where(AppInstallation.client_id == client_id))


async def install_app(
    session: TenantSession,
    registry: PluginRegistry,
    plugins: Iterable[str],
    *,
    client_id: str,
    scopes: Iterable[str],
    installed_by: str,
) -> AppInstallation:
    """Install an app in the session's tenant, or change the scopes it is granted
    (which revokes its access tokens issued until now)."""
    tenant_id = session.tenant_id
    assert tenant_id is not None
    client = await get_client(session, client_id)
    wanted = sorted(set(scopes))
    if not wanted:
        raise BadUserInput("grant the app at least one scope", field="scopes")
    beyond_app = [s for s in wanted if s not in client.scopes]
    if beyond_app:
        raise BadUserInput(
            f"the app may not ask for: {', '.join(beyond_app)} (it may ask for {', '.join(client.scopes)})",
            field="scopes",
        )
    available = registry.scopes(plugins)
    unavailable = [s for s in wanted if s not in available]
    if unavailable:
        raise BadUserInput(
            f"not available in this tenant (plugin not enabled?): {', '.join(unavailable)}", field="scopes"
        )
    installation = await find_installation(session, client_id)
    if installation is None:
        installation = AppInstallation(
            tenant_id=tenant_id, client_id=client_id, scopes=wanted, installed_by=installed_by
        )
        session.add(installation)
        await session.flush()
    elif installation.scopes != wanted:
        installation.scopes = wanted
        await session.flush()
        await revoke(session, tenant_id, f"ins:{installation.id}", expires_at=None)
    return installation


async def uninstall_app(session: TenantSession, client_id: str) -> uuid.UUID:
    """Remove an app from the tenant: its tokens stop working at once."""
    installation = await find_installation(session, client_id)
    if installation is None:
        raise NotFound(f"app {client_id!r} is not installed")
    await session.delete(installation)
    await session.flush()
    await revoke(session, installation.tenant_id, f"ins:{installation.id}", expires_at=None)
    return installation.id


async def list_installations(session: TenantSession) -> list[tuple[AppInstallation, OAuthClient]]:
    rows = await session.execute(
        select(AppInstallation, OAuthClient)
        .join(OAuthClient, OAuthClient.client_id == AppInstallation.client_id)
        .order_by(AppInstallation.id)
    )
    return [(row[0], row[1]) for row in rows]
