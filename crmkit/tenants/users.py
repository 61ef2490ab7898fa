"""Staff users of a tenant, their roles, and the scopes each role carries.

A staff user belongs to exactly one tenant (:class:`StaffUser` is tenant-owned; the
e-mail address is unique within the tenant). Passwords are stored as argon2id hashes
(argon2-cffi's defaults: the RFC 9106 low-memory profile) and never leave this module.

:data:`ROLES` is the one table that says which scopes a role holds. Plugin scopes are
decided there too, by :class:`PluginAccess`: a tenant admin gets every scope of the
tenant's enabled plugins, a relationship manager those whose action is ``read`` or
``write`` (``notes:read``, ``notes:write``), everyone else none. A token for a user
never carries more than the role's scopes (an app's grant is intersected with them).
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import secrets
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import String, UniqueConstraint, Uuid, and_, case, delete, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from crmkit.clock import utcnow
from crmkit.db import Database, Model, TenantOwned, TenantSession, str_enum, uuid7
from crmkit.errors import BadUserInput, Conflict, NotFound

if TYPE_CHECKING:
    from crmkit.plugins.info import Scope

USERS_ADMIN = "users:admin"
"""Create staff users, change their roles, deactivate them."""
APPS_ADMIN = "apps:admin"
"""Install partner apps in the tenant and grant them scopes."""

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 1024


class Role(enum.StrEnum):
    TENANT_ADMIN = "tenant_admin"
    RELATIONSHIP_MANAGER = "relationship_manager"
    SERVICE_AGENT = "service_agent"
    ANALYST = "analyst"
    COMPLIANCE_OFFICER = "compliance_officer"


class PluginAccess(enum.Enum):
    NONE = "none"
    READ_WRITE = "read_write"
    """Plugin scopes named ``<plugin>:read`` or ``<plugin>:write``."""
    ALL = "all"


@dataclass(frozen=True)
class RoleGrant:
    core: frozenset[str]
    plugins: PluginAccess
    description: str


def _scopes(*names: str) -> frozenset[str]:
    return frozenset(names)


ROLES: dict[Role, RoleGrant] = {
    Role.TENANT_ADMIN: RoleGrant(
        _scopes(
            USERS_ADMIN,
            APPS_ADMIN,
            "customers:read",
            "customers:write",
            "activities:read",
            "activities:write",
            "consent:read",
            "consent:write",
            "audit:read",
            "privacy:export",
            "privacy:erase",
            "pii:identity",
            "pii:contact",
            "webhooks:subscribe",
            "import:write",
        ),
        PluginAccess.ALL,
        "Manages the tenant's staff and apps; every scope.",
    ),
    Role.RELATIONSHIP_MANAGER: RoleGrant(
        _scopes(
            "customers:read",
            "customers:write",
            "activities:read",
            "activities:write",
            "consent:read",
            "consent:write",
            "pii:identity",
            "pii:contact",
        ),
        PluginAccess.READ_WRITE,
        "Looks after customers: reads and changes them, sees their personal data.",
    ),
    Role.SERVICE_AGENT: RoleGrant(
        _scopes(
            "customers:read",
            "activities:read",
            "activities:write",
            "consent:read",
            "consent:write",
            "pii:identity",
            "pii:contact",
        ),
        PluginAccess.NONE,
        "Answers customers: reads them, records contacts and consent.",
    ),
    Role.ANALYST: RoleGrant(
        _scopes("customers:read", "activities:read", "pii:identity"),
        PluginAccess.NONE,
        "Reads customers and activities; contact data stays masked.",
    ),
    Role.COMPLIANCE_OFFICER: RoleGrant(
        _scopes(
            "audit:read",
            "customers:read",
            "activities:read",
            "consent:read",
            "privacy:export",
            "privacy:erase",
            "pii:identity",
            "pii:contact",
        ),
        PluginAccess.NONE,
        "Reads the audit trail and consent; answers data-subject requests.",
    ),
}
"""Role -> scopes: the only place that decides what a role may do."""


def role_scopes(role: Role, available: Mapping[str, Scope], core: Iterable[str]) -> frozenset[str]:
    """The scopes ``role`` holds in a tenant whose usable scopes are ``available``
    (the core's, named in ``core``, plus those of its enabled plugins): the core's by
    :data:`ROLES`, a plugin's by the roles its scope names, else by the role's
    :class:`PluginAccess`."""
    grant = ROLES[role]
    core = frozenset(core)
    held = set(grant.core & available.keys())
    for name, scope in available.items():
        if name in core:
            continue
        by_default = grant.plugins is PluginAccess.READ_WRITE and name.rpartition(":")[2] in {"read", "write"}
        if grant.plugins is PluginAccess.ALL or role in scope.roles or (not scope.roles and by_default):
            held.add(name)
    return frozenset(held)


class StaffUser(TenantOwned, Model):
    __tablename__ = "staff_users"
    __table_args__ = (UniqueConstraint("tenant_id", "email"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid7)
    email: Mapped[str] = mapped_column(String(254))
    """Stored lower-case; unique within the tenant."""
    display_name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str] = mapped_column(String(200))
    role: Mapped[Role] = mapped_column(str_enum(Role))
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    @property
    def subject(self) -> str:
        """The ``sub`` of this user's tokens."""
        return f"user:{self.id}"


# --- sign-in throttle -------------------------------------------------------------------

MAX_FAILED_LOGINS = 5
"""Wrong passwords in a row, per account and client address, before a lock."""
LOCK_MINUTES = 15
"""The first lock; each further lock without a successful sign-in doubles it."""
MAX_LOCK_MINUTES = 24 * 60


class LoginThrottle(Model):
    """Failed sign-ins of one account from one client address.

    A platform table keyed by what the login form names, not by a user row: an
    account that does not exist (unknown tenant or e-mail) is counted and locked
    exactly like one that does, so the answer never tells them apart. Keyed by the
    client address too, so an attacker's guesses lock the attacker out, not the
    owner signing in from elsewhere.
    """

    __tablename__ = "login_throttle"

    account: Mapped[str] = mapped_column(String(64), primary_key=True)
    """:func:`account_key`: a hash of the tenant and the e-mail address."""
    address: Mapped[str] = mapped_column(String(64), primary_key=True)
    failures: Mapped[int] = mapped_column(default=0)
    """Attempts counted since the last success or the end of the last lock."""
    lockouts: Mapped[int] = mapped_column(default=0)
    """Locks since the last successful sign-in: each doubles the next."""
    locked_until: Mapped[datetime | None] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


def account_key(tenant: uuid.UUID | str, email: str) -> str:
    """The throttle's name for an account: the tenant's id when it exists (else the
    name as typed) with the e-mail address, hashed (the table holds no address)."""
    name = tenant.hex if isinstance(tenant, uuid.UUID) else tenant.strip().lower()
    return hashlib.sha256(f"{name}\0{email.strip().lower()}".encode()).hexdigest()


def lock_minutes(lockouts: int) -> int:
    """How long lock number ``lockouts + 1`` lasts: doubling, at most a day."""
    return min(LOCK_MINUTES * 2 ** min(lockouts, 10), MAX_LOCK_MINUTES)


async def start_login_attempt(db: Database, account: str, address: str) -> int | None:
    """Count one sign-in attempt before its password is checked; its number since
    the last success, or None when the account is locked for this address (the
    password must then not be checked).

    One conditional ``UPDATE``: of concurrent attempts at most ``MAX_FAILED_LOGINS``
    get a number, whatever their order, because each sees the count the others left
    (PostgreSQL re-checks the condition on the row it waited for)."""
    now = utcnow()
    lock_ended = and_(LoginThrottle.locked_until.is_not(None), LoginThrottle.locked_until <= now)
    may_try = or_(
        lock_ended, and_(LoginThrottle.locked_until.is_(None), LoginThrottle.failures < MAX_FAILED_LOGINS)
    )
    async with db.platform_session() as session:
        insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
        await session.execute(
            insert(LoginThrottle)
            .values(account=account, address=address, failures=0, lockouts=0, updated_at=now)
            .on_conflict_do_nothing(index_elements=["account", "address"])
        )
        counted = await session.scalar(
            update(LoginThrottle)
            .where(LoginThrottle.account == account, LoginThrottle.address == address, may_try)
            .values(
                failures=case((lock_ended, 1), else_=LoginThrottle.failures + 1),
                locked_until=None,
                updated_at=now,
            )
            .returning(LoginThrottle.failures)
        )
    return counted


async def finish_login_attempt(db: Database, account: str, address: str, *, number: int, ok: bool) -> None:
    """Record how attempt ``number`` ended: a success clears the account's record for
    this address; the ``MAX_FAILED_LOGINS``-th failure in a row locks it."""
    async with db.platform_session() as session:
        where = (LoginThrottle.account == account, LoginThrottle.address == address)
        if ok:
            await session.execute(delete(LoginThrottle).where(*where))
        elif number >= MAX_FAILED_LOGINS:
            row = await session.get(LoginThrottle, (account, address), with_for_update=True)
            if row is not None:
                row.locked_until = utcnow() + timedelta(minutes=lock_minutes(row.lockouts))
                row.lockouts += 1


async def unlock_user(session: TenantSession, user_id: uuid.UUID) -> StaffUser:
    """End every sign-in lock of the user's account, from every address: the way back
    for an owner locked out by someone else's guesses."""
    user = await get_user(session, user_id)
    await session.execute(
        delete(LoginThrottle).where(LoginThrottle.account == account_key(user.tenant_id, user.email))
    )
    return user


# --- passwords ------------------------------------------------------------------------

HASHER = PasswordHasher()
"""argon2id (argon2-cffi's default type), RFC 9106 low-memory parameters."""
_DUMMY_HASH = HASHER.hash(secrets.token_urlsafe(16))
"""Verified against when the e-mail is unknown, so a miss takes as long as a hit."""


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise BadUserInput(f"a password needs at least {MIN_PASSWORD_LENGTH} characters", field="password")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise BadUserInput(f"a password has at most {MAX_PASSWORD_LENGTH} characters", field="password")


def verify_password(password_hash: str | None, password: str) -> bool:
    """Constant work whether or not there is a hash to check against."""
    if len(password) > MAX_PASSWORD_LENGTH:
        return False
    try:
        return HASHER.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def generate_password() -> str:
    """24 URL-safe characters (about 143 bits)."""
    return secrets.token_urlsafe(18)


def normalise_email(email: str) -> str:
    value = email.strip().lower()
    local, at, domain = value.partition("@")
    if not at or not local or "." not in domain or len(value) > 254 or any(c.isspace() for c in value):
        raise BadUserInput(f"{email!r} is not an e-mail address", field="email")
    return value


# --- service --------------------------------------------------------------------------


async def create_user(
    session: TenantSession,
    *,
    email: str,
    display_name: str,
    role: Role,
    password: str | None = None,
) -> tuple[StaffUser, str | None]:
    """A new active user; returns it with the generated password when none was given."""
    tenant_id = session.tenant_id
    assert tenant_id is not None, "create users in a tenant session"
    generated = None
    if password is None:
        password = generated = generate_password()
    check_password(password)
    name = display_name.strip()
    if not name or len(name) > 200:
        raise BadUserInput("a display name needs 1 to 200 characters", field="displayName")
    user = StaffUser(
        tenant_id=tenant_id,
        email=normalise_email(email),
        display_name=name,
        role=Role(role),
        password_hash=await asyncio.to_thread(HASHER.hash, password),
    )
    try:
        async with session.begin_nested():
            session.add(user)
            await session.flush()
    except IntegrityError:
        raise Conflict(f"a user with e-mail {user.email!r} already exists", field="email") from None
    return user, generated


async def get_user(session: TenantSession, user_id: uuid.UUID) -> StaffUser:
    assert session.tenant_id is not None
    user = await session.get(StaffUser, (session.tenant_id, user_id))
    if user is None:
        raise NotFound("no such user")
    return user


async def find_by_email(session: TenantSession, email: str) -> StaffUser | None:
    try:
        normalised = normalise_email(email)
    except BadUserInput:
        return None
    return await session.scalar(select(StaffUser).where(StaffUser.email == normalised))


async def list_users(
    session: TenantSession,
    *,
    after: uuid.UUID | None = None,
    limit: int,
    role: Role | None = None,
    active: bool | None = None,
) -> list[StaffUser]:
    query = select(StaffUser).order_by(StaffUser.id).limit(limit)
    if after is not None:
        query = query.where(StaffUser.id > after)
    if role is not None:
        query = query.where(StaffUser.role == role)
    if active is not None:
        query = query.where(StaffUser.active == active)
    return list(await session.scalars(query))


async def update_user(
    session: TenantSession,
    user_id: uuid.UUID,
    *,
    role: Role | None = None,
    active: bool | None = None,
    display_name: str | None = None,
) -> StaffUser:
    """Change a user's role, name or status. Deactivating a user (or changing the
    role) revokes the user's access tokens issued until now; refresh tokens then
    yield tokens for the new role only, or nothing for an inactive user. The last
    active tenant admin cannot be demoted or deactivated."""
    from crmkit.tenants.revocation import revoke

    user = await get_user(session, user_id)
    demoted = role is not None and role is not user.role and user.role is Role.TENANT_ADMIN
    deactivated = active is False and user.active
    if (demoted or deactivated) and user.role is Role.TENANT_ADMIN and user.active:
        admins = await session.scalar(
            select(func.count())
            .select_from(StaffUser)
            .where(StaffUser.role == Role.TENANT_ADMIN, StaffUser.active.is_(True))
        )
        if (admins or 0) <= 1:
            raise Conflict("the tenant's last active tenant admin cannot be demoted or deactivated")
    changed_access = deactivated or (role is not None and role is not user.role)
    if role is not None:
        user.role = Role(role)
    if active is not None:
        user.active = active
    if display_name is not None:
        name = display_name.strip()
        if not name or len(name) > 200:
            raise BadUserInput("a display name needs 1 to 200 characters", field="displayName")
        user.display_name = name
    await session.flush()
    if changed_access:
        await revoke(session, user.tenant_id, f"sub:{user.subject}", expires_at=None)
    return user
