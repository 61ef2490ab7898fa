"""Row-level security, the second wall (PostgreSQL): every tenant-owned table, core and
plugin, is isolated by the database itself for the application's role, whatever SQL
reaches it; the tenant setting lives for one transaction only."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from sqlalchemy import Executable, Table, select, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from crmkit.core.audit.chain import checkpoint
from crmkit.core.audit.trail import AUDITED_BY_CALLER
from crmkit.core.events import OutboxEvent
from crmkit.db import Database, Model, TenantOwned
from crmkit.jobs.delivery import DELIVER_EVENT, DISPATCH_EVENT
from crmkit.jobs.runner import Outcome
from crmkit.migrations.rls import APP_ROLE, POLICY, SETTING
from crmkit.platform.registry import load_registry
from crmkit.plugins.models import HandlerFailure
from crmkit.testing import PG_APP_ROLE, Env
from tests.test_audit import ADD_NOTE
from tests.test_consent import CURRENT, HISTORY, RECORD, decision, record
from tests.test_customers_graphql import PAGE
from tests.test_personal_data import READ

pytestmark = pytest.mark.postgres_only

CORE_AND_NOTES = {
    "customers",
    "customer_tags",
    "customer_keys",
    "customer_name_tokens",
    "activities",
    "outbox_events",
    "tenant_plugins",
    "handler_failures",
    "event_deliveries",
    "tenant_keys",
    "consent_records",
    "audit_events",
    "audit_heads",
    "audit_checkpoints",
    "notes",
}
"""Tenant-owned tables a populated tenant has rows in (others' new tables are checked
too, from the metadata, wherever rows exist)."""
APPEND_ONLY = {"audit_events", "consent_records"}
REFUSED = re.compile("row-level security|permission denied")
ACTIVITY = (
    "mutation($id: UUID!) { recordActivity(input: {customerId: $id, kind: LOGIN, channel: APP}) { id } }"
)


def tenant_tables() -> list[Table]:
    """Every tenant-owned table: subclasses of TenantOwned, plugins' included."""
    load_registry()  # imports every installed plugin's models
    tables = {m.local_table for m in Model.registry.mappers if issubclass(m.class_, TenantOwned)}
    assert all(isinstance(t, Table) for t in tables)
    return sorted((t for t in tables if isinstance(t, Table)), key=lambda t: t.name)


async def test_every_tenant_owned_table_has_its_policy_and_forces_it(env: Env) -> None:
    tables = tenant_tables()
    assert {t.name for t in tables} >= CORE_AND_NOTES
    async with env.owner_engine.connect() as conn:
        for table in tables:
            row = (
                await conn.execute(
                    text(
                        "SELECT c.relrowsecurity, c.relforcerowsecurity, pg_get_userbyid(c.relowner), "
                        "p.cmd, p.qual, p.with_check FROM pg_class c LEFT JOIN pg_policies p "
                        "ON p.schemaname = current_schema() AND p.tablename = c.relname "
                        "AND p.policyname = :policy "
                        "WHERE c.oid = to_regclass(:table)"
                    ),
                    {"table": table.name, "policy": POLICY},
                )
            ).one_or_none()
            assert row is not None, f"{table.name} does not exist"
            enabled, forced, owner, cmd, qual, check = row
            assert enabled and forced, f"{table.name}: row level security enabled={enabled} forced={forced}"
            assert cmd == "ALL", f"{table.name} lacks the {POLICY} policy"
            for clause in (qual, check):
                assert f"current_setting('{SETTING}'" in clause and "tenant_id" in clause, (
                    table.name,
                    clause,
                )
            assert owner not in {APP_ROLE, PG_APP_ROLE}
            app_is_owner = await conn.scalar(
                text(
                    "SELECT pg_has_role(:role, c.relowner, 'USAGE') FROM pg_class c WHERE c.oid = to_regclass(:t)"
                ),
                {"role": APP_ROLE, "t": table.name},
            )
            assert not app_is_owner, f"{APP_ROLE} acts as the owner of {table.name}"
            for privilege in ("UPDATE", "DELETE", "TRUNCATE"):
                allowed = await conn.scalar(
                    text("SELECT has_table_privilege(:role, :t, :p)"),
                    {"role": APP_ROLE, "t": table.name, "p": privilege},
                )
                expected = privilege != "TRUNCATE" and table.name not in APPEND_ONLY
                if table.name in CORE_AND_NOTES or privilege == "TRUNCATE":
                    assert allowed is expected, (table.name, privilege)
                # a plugin's table may grant less (loyalty's ledger is append-only)
        role = (
            await conn.execute(
                text("SELECT rolsuper, rolbypassrls, rolcanlogin FROM pg_roles WHERE rolname = :r"),
                {"r": APP_ROLE},
            )
        ).one()
        assert tuple(role) == (False, False, False)
    # and the platform really connects as a member of it, no more
    async with env.platform.db.engine.connect() as conn:
        who = (
            await conn.execute(
                text(
                    "SELECT current_user, r.rolsuper, r.rolbypassrls, pg_has_role(current_user, :app, 'MEMBER') "
                    "FROM pg_roles r WHERE r.rolname = current_user"
                ),
                {"app": APP_ROLE},
            )
        ).one()
    assert tuple(who) == (PG_APP_ROLE, False, False, True)


async def populate(env: Env, name: str) -> dict[str, Any]:
    """A tenant with a row in every tenant-owned table of the core and of notes."""
    tenant = await env.tenant("notes", "recorder")
    customer = await env.create_customer(tenant, givenName=name, tags=[f"{name.lower()}-tag"])
    for query in (ACTIVITY, ADD_NOTE):
        assert "errors" not in await env.gql(query, {"id": customer["id"]}, tenant=tenant)
    await record(env, tenant, customer["id"])
    await env.queue.drain()  # the recorder's deliveries
    async with env.platform.db.tenant_session(tenant) as session:
        session.add(HandlerFailure(plugin="recorder", job="recorder.x", attempt=1, gave_up=True, error="x"))
        await checkpoint(session, env.platform.audit_signer)
        event_id = await session.scalar(
            select(OutboxEvent.id).where(OutboxEvent.subject_id == customer["id"]).limit(1)
        )
    cursor = (await env.gql(PAGE, {"first": 1}, tenant=tenant))["data"]["customers"]["edges"][0]["cursor"]
    return {"tenant": tenant, "customer": customer["id"], "event": event_id, "cursor": cursor}


async def snapshot(env: Env, tenant: uuid.UUID) -> dict[str, list[Any]]:
    """All of a tenant's rows, as the owner sees them."""
    rows = {}
    async with env.owner_engine.connect() as conn:
        for table in tenant_tables():
            query = select(table).where(table.c.tenant_id == tenant).order_by(*table.primary_key.columns)
            rows[table.name] = [tuple(r) for r in (await conn.execute(query)).all()]
    return rows


class Attempts:
    """Each attempt on the other tenant's data, counted."""

    def __init__(self) -> None:
        self.names: list[str] = []

    async def refused(self, name: str, session: AsyncSession, statement: Executable, **params: Any) -> None:
        """``statement`` must be refused by the database, or change no row."""
        self.names.append(name)
        try:
            async with session.begin_nested():
                result = await session.execute(statement, params)
        except DBAPIError as exc:
            assert REFUSED.search(str(exc.orig)), (name, exc)
            return
        assert result.rowcount == 0, f"{name} changed {result.rowcount} rows"

    async def blocked(self, name: str, session: AsyncSession, statement: Executable) -> None:
        """``statement`` (an INSERT) must be refused by the database (it goes there as it
        is: the audit trail, which would refuse a bulk insert of personal columns
        first, is told the caller audits it)."""
        self.names.append(name)
        with pytest.raises(DBAPIError) as exc:
            async with session.begin_nested():
                await session.execute(statement.execution_options(**{AUDITED_BY_CALLER: True}))
        assert REFUSED.search(str(exc.value.orig)), (name, exc.value)


async def test_the_database_keeps_tenants_apart_whatever_sql_reaches_it(env: Env) -> None:
    a, b = await populate(env, "Alice"), await populate(env, "Bob")
    async with env.owner_engine.begin() as conn:  # A's event waits to be relayed
        await conn.execute(update(OutboxEvent).where(OutboxEvent.id == a["event"]).values(relayed_at=None))
    before = await snapshot(env, a["tenant"])
    assert {name for name, rows in before.items() if rows} >= CORE_AND_NOTES
    attempts = Attempts()
    tables = tenant_tables()

    # raw SQL, no tenant filter, through B's session: B's rows only; A's are out of reach
    async with env.platform.db.tenant_session(b["tenant"]) as session:
        for table in tables:
            attempts.names.append(f"read all {table.name}")
            seen = set(await session.scalars(text(f"SELECT DISTINCT tenant_id FROM {table.name}")))
            assert seen <= {b["tenant"]}, table.name
            attempts.names.append(f"read A's {table.name}")
            count = f"SELECT count(*) FROM {table.name} WHERE tenant_id = :a"
            assert await session.scalar(text(count), {"a": a["tenant"]}) == 0, table.name
            for verb, sql in (
                ("update", f"UPDATE {table.name} SET tenant_id = tenant_id WHERE tenant_id = :a"),
                ("delete", f"DELETE FROM {table.name} WHERE tenant_id = :a"),
                ("move B's rows to A", f"UPDATE {table.name} SET tenant_id = :a WHERE tenant_id = :b"),
            ):
                await attempts.refused(
                    f"{verb} {table.name}", session, text(sql), a=a["tenant"], b=b["tenant"]
                )
            for row in before[table.name][:1]:
                await attempts.blocked(f"insert A's {table.name}", session, table.insert().values(row))

    # no tenant set (a platform session): no tenant-owned row at all, and no writes
    async with env.platform.db.platform_session() as session:
        for table in tables:
            attempts.names.append(f"read {table.name} without a tenant")
            assert await session.scalar(text(f"SELECT count(*) FROM {table.name}")) == 0, table.name
            for row in before[table.name][:1]:
                await attempts.blocked(
                    f"insert {table.name} without a tenant", session, table.insert().values(row)
                )
            await attempts.refused(
                f"delete {table.name} without a tenant", session, text(f"DELETE FROM {table.name}")
            )

    # jobs for B whose payloads name A's event or customer touch nothing of A
    runner = env.platform.runner
    for job, payload in (
        (DISPATCH_EVENT, {"event_id": str(a["event"])}),
        (DELIVER_EVENT, {"event_id": str(a["event"]), "plugin": "recorder"}),
        ("notes.add_archive_note", {"customer_id": a["customer"], "event_id": str(uuid.uuid4())}),
    ):
        attempts.names.append(f"job {job}")
        assert (await runner.run(job, b["tenant"], payload, 1)).outcome is Outcome.DONE
    await env.queue.drain()

    # GraphQL as B: A's customer by id, filter and cursor is not found / empty
    for name, query, variables in (
        ("read customer", READ, {"id": a["customer"]}),
        ("read consents", CURRENT, {"id": a["customer"]}),
        ("consent history", HISTORY, {"id": a["customer"]}),
        ("add note", ADD_NOTE, {"id": a["customer"]}),
        ("record activity", ACTIVITY, {"id": a["customer"]}),
        ("record consent", RECORD, {"input": decision(a["customer"])}),
    ):
        attempts.names.append(f"graphql {name}")
        body = await env.gql(query, variables, tenant=b["tenant"])
        assert body["data"] is None and body["errors"][0]["extensions"]["code"] == "NOT_FOUND", (name, body)
        assert "Alice" not in str(body)
    for variables in (
        {"filter": {"tag": "alice-tag"}},
        {"filter": {"text": "alice"}},
        {"after": a["cursor"]},
    ):
        attempts.names.append(f"graphql customers {variables}")
        body = await env.gql(PAGE, variables, tenant=b["tenant"])
        names = [n["displayName"] for n in body["data"]["customers"]["nodes"]]
        assert names == (["Bob"] if "after" in variables else []), variables
        assert "Alice" not in str(body)

    assert await snapshot(env, a["tenant"]) == before  # A's data, every table, untouched
    # per table: 2 reads, 3 writes, then a read and a delete without a tenant; an insert
    # each way per table the tenant has rows in; 3 jobs; 6 + 3 GraphQL operations
    populated = sum(1 for rows in before.values() if rows)
    expected = 7 * len(tables) + 2 * populated + 3 + 6 + 3
    print(f"\nrow-level security: {len(attempts.names)} cross-tenant attempts, all refused or empty")
    assert len(attempts.names) == expected, attempts.names


async def test_the_tenant_setting_ends_with_its_transaction(env: Env) -> None:
    tenant = await env.tenant()
    await env.create_customer(tenant, givenName="Pooled")
    url = env.platform.settings.resolved_database_url
    engine = create_async_engine(url, pool_size=1, max_overflow=0)  # one connection, reused
    db = Database(engine)
    current = text(f"SELECT pg_backend_pid(), current_setting('{SETTING}', true), count(*) FROM customers")
    try:
        async with db.tenant_session(tenant) as session:
            pid, setting, count = (await session.execute(current)).one()
        assert (setting, count) == (str(tenant), 1)
        async with engine.connect() as conn:  # the same connection, no tenant: nothing
            assert tuple((await conn.execute(current)).one()) == (pid, "", 0)
        async with db.platform_session() as session:
            assert tuple((await session.execute(current)).one()) == (pid, "", 0)
        with pytest.raises(RuntimeError):  # a rolled-back tenant transaction leaves nothing either
            async with db.tenant_session(tenant) as session:
                assert (await session.execute(current)).one()[1:] == (str(tenant), 1)
                raise RuntimeError
        async with engine.connect() as conn:
            assert tuple((await conn.execute(current)).one()) == (pid, "", 0)
    finally:
        await engine.dispose()
