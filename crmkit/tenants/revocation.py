"""Revoked tokens, checked on every authenticated request.

Cost: a primary-key lookup of at most five keys (``tenant_id, key IN (jti, grant,
subject, installation, tenant:all)``) in ``oauth_revocations``, on the request's own
connection and transaction; GraphQL requests ask it once per token and cache window
(:mod:`crmkit.tenants.cache`), which every revocation made through crmkit empties in
every process as it commits.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Select, String, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, Session, mapped_column

from crmkit.clock import utcnow
from crmkit.db import Model, TenantOwned, TenantSession


class Revocation(TenantOwned, Model):
    """Tokens revoked before their expiry, by key: ``jti:<id>`` (one access token),
    ``grant:<id>`` (a token family), ``sub:<subject>`` (a user's tokens),
    ``ins:<id>`` (an uninstalled app's tokens), ``tenant:all`` (every token of a
    suspended tenant). A token is revoked when a row matches
    one of its keys and ``revoked_at`` is not before the token was issued."""

    __tablename__ = "oauth_revocations"
    __audited__ = False

    key: Mapped[str] = mapped_column(String(120), primary_key=True)
    revoked_at: Mapped[datetime] = mapped_column()
    expires_at: Mapped[datetime | None] = mapped_column()
    """After this no token the row matches can still be valid: the row may go."""


def revoked_query(tenant_id: uuid.UUID, keys: Sequence[str], issued_at: float) -> Select[Any]:
    issued = datetime.fromtimestamp(issued_at, UTC)
    return (
        select(Revocation.key)
        .where(
            Revocation.tenant_id == tenant_id,
            Revocation.key.in_(list(keys)),
            Revocation.revoked_at >= issued,
        )
        .limit(1)
    )


def _upsert(dialect: str, tenant_id: uuid.UUID, key: str, expires_at: datetime | None) -> Any:
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(Revocation).values(
        tenant_id=tenant_id, key=key, revoked_at=utcnow(), expires_at=expires_at
    )
    return statement.on_conflict_do_update(
        index_elements=["tenant_id", "key"],
        set_={"revoked_at": statement.excluded.revoked_at, "expires_at": statement.excluded.expires_at},
    )


async def is_revoked(
    session: TenantSession, tenant_id: uuid.UUID, keys: Sequence[str], issued_at: float
) -> bool:
    return await session.scalar(revoked_query(tenant_id, keys, issued_at)) is not None


def is_revoked_sync(session: Session, tenant_id: uuid.UUID, keys: Sequence[str], issued_at: float) -> bool:
    return session.scalar(revoked_query(tenant_id, keys, issued_at)) is not None


async def revoke(
    session: TenantSession, tenant_id: uuid.UUID, key: str, *, expires_at: datetime | None
) -> None:
    await session.execute(_upsert(session.get_bind().dialect.name, tenant_id, key, expires_at))


def spend_once_sync(session: Session, tenant_id: uuid.UUID, key: str, *, expires_at: datetime) -> bool:
    """Record ``key`` as used; False if it was used before. Single-use credentials
    (consent tickets) are spent this way, in the transaction that acts on them: of two
    concurrent spends, the second waits for the first's commit and finds it used."""
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    statement = (
        insert(Revocation)
        .values(tenant_id=tenant_id, key=key, revoked_at=utcnow(), expires_at=expires_at)
        .on_conflict_do_nothing(index_elements=["tenant_id", "key"])
        .returning(Revocation.key)
    )
    return session.execute(statement).first() is not None


def revoke_sync(session: Session, tenant_id: uuid.UUID, key: str, *, expires_at: datetime | None) -> None:
    session.execute(_upsert(session.get_bind().dialect.name, tenant_id, key, expires_at))
