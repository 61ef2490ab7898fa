"""The audit trail: automatic, free of personal values, tamper-evident, concurrent-safe."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable
from typing import Any

import pytest
import rfc8785
import sqlalchemy
from crmkit_notes.models import Note
from sqlalchemy import delete, func, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError

from crmkit.core.audit.chain import checkpoint, verify
from crmkit.core.audit.models import AuditEvent, AuditHead, AuditJournal
from crmkit.core.audit.trail import UnauditedWrite, canonical, hashed_fields, link_hash, note, seal
from crmkit.core.customers import service
from crmkit.core.customers.models import Customer, CustomerKind, LifecycleStage
from crmkit.core.events import OutboxEvent, emit
from crmkit.db import uuid7
from crmkit.testing import Env, StatementCounter

ADD_NOTE = 'mutation($id: UUID!) { addNote(customerId: $id, body: "Secret plan: call on Monday") { id } }'


async def events(env: Env, tenant: uuid.UUID) -> list[AuditEvent]:
    await env.queue.drain()
    async with env.platform.db.tenant_session(tenant) as session:
        return list((await session.scalars(select(AuditEvent).order_by(AuditEvent.seq))).all())


async def journaled(env: Env, tenant: uuid.UUID) -> int:
    """How many of the tenant's events wait in the journal to be chained."""
    async with env.platform.db.tenant_session(tenant) as session:
        return await session.scalar(select(func.count()).select_from(AuditJournal)) or 0


async def tamper(env: Env, statement: str, **params: object) -> None:
    """Run SQL on audit_events as the database owner would, with its guard triggers off."""
    async with env.owner_engine.begin() as conn:
        if env.backend == "postgresql":
            await conn.execute(text("ALTER TABLE audit_events DISABLE TRIGGER USER"))
            await conn.execute(text(statement), params)
            await conn.execute(text("ALTER TABLE audit_events ENABLE TRIGGER USER"))
        else:  # SQLite runs DDL outside the transaction: put the triggers back whatever happens
            triggers = (
                await conn.execute(
                    text(
                        "SELECT name, sql FROM sqlite_master WHERE type='trigger' AND tbl_name='audit_events'"
                    )
                )
            ).all()
            for name, _ in triggers:
                await conn.execute(text(f"DROP TRIGGER {name}"))
            try:
                await conn.execute(text(statement), params)
            finally:
                for _, sql in triggers:
                    await conn.execute(text(sql))


async def audited_tenant(env: Env, changes: int = 4) -> uuid.UUID:
    tenant = await env.tenant("notes")
    for i in range(changes):
        await env.create_customer(tenant, givenName=f"Au{i}")
    await env.queue.drain()
    return tenant


async def test_a_plugin_mutation_is_audited_without_plugin_code(env: Env) -> None:
    tenant = await env.tenant("notes")
    customer = await env.create_customer(tenant, givenName="Ana", email="ana@example.com")
    note = await env.gql(ADD_NOTE, {"id": customer["id"]}, tenant=tenant)
    note_id = note["data"]["addNote"]["id"]
    trail = await events(env, tenant)
    created = next(e for e in trail if e.action == "notes.create")
    assert created.target_type == "Note" and created.target_ids == [note_id]
    assert {"body", "customer_id", "author"} <= set(created.fields)
    assert (created.actor_type, created.actor_id) == ("user", "test")
    assert created.request_id
    customer_event = next(e for e in trail if e.action == "customers.create")
    assert customer_event.target_ids == [customer["id"]]
    everything = " ".join(str(hashed_fields(e)) for e in trail)
    assert "Secret plan" not in everything and "ana@example.com" not in everything and "Ana" not in everything


@pytest.mark.parametrize(
    "value",
    [
        "plain",
        'quote " backslash \\ controls \x00\x08\t\n\x0c\r\x1f delete \x7f',
        "é ü 中文 \u2028 \u2029 😀 \ufeff",
        ["b", "a", "\x01"],
        [],
        None,
        2**53 - 1,
        2**53,  # beyond a double's exact integers: rfc8785 refuses it
        1.5,
        True,
        {"nested": ["x"]},
        "\ud800",  # a lone surrogate: rfc8785 refuses it
    ],
)
def test_canonical_json_is_rfc_8785(value: Any) -> None:
    """The trail's own fast serialisation gives rfc8785's bytes, or its refusal."""
    for fields in ({"seq": 7, "z": "last", "a": value}, {"seq": 7, "é": "a key beyond ASCII", "a": value}):
        try:
            expected = rfc8785.dumps(fields)
        except rfc8785.CanonicalizationError as refused:
            with pytest.raises(type(refused)):
                canonical(fields)
        else:
            assert canonical(fields) == expected


async def test_updates_record_changed_field_names_only(env: Env) -> None:
    tenant = await env.tenant()
    customer = await env.create_customer(tenant, givenName="Bo")
    await env.gql(
        'mutation($id: UUID!) { updateCustomer(id: $id, input: {email: "bo@example.com"}) { id } }',
        {"id": customer["id"]},
        tenant=tenant,
    )
    update = next(e for e in await events(env, tenant) if e.action == "customers.update")
    assert "email" in update.fields and "given_name" not in update.fields


async def test_a_refused_write_leaves_no_audit_event(env: Env) -> None:
    tenant = await env.tenant()
    body = await env.gql(
        'mutation { createCustomer(input: {kind: PERSON, givenName: "X", email: "bad"}) { id } }',
        tenant=tenant,
    )
    assert body["errors"]
    assert [e.action for e in await events(env, tenant)] == []


async def test_untouched_chain_verifies_with_and_without_checkpoint(env: Env) -> None:
    tenant = await audited_tenant(env)
    signer = env.platform.audit_signer
    result = await verify(env.platform.db, tenant, signer)
    assert result.ok and result.checked == len(await events(env, tenant))
    async with env.platform.db.tenant_session(tenant) as session:
        signed = await checkpoint(session, signer)
    assert signed is not None
    await env.create_customer(tenant, givenName="After")
    result = await verify(env.platform.db, tenant, signer)
    assert result.ok and result.checkpoint_seq == signed.seq


async def test_audit_rows_cannot_be_updated_or_deleted(env: Env) -> None:
    tenant = await audited_tenant(env, 1)
    for statement in ("UPDATE audit_events SET action = 'x'", "DELETE FROM audit_events"):
        with pytest.raises(DBAPIError, match="append-only"):
            async with env.owner_engine.begin() as conn:
                await conn.execute(text(statement + " WHERE tenant_id = :t"), {"t": _id(env, tenant)})
    if env.backend == "postgresql":
        with pytest.raises(DBAPIError, match="append-only"):
            async with env.owner_engine.begin() as conn:
                await conn.execute(text("TRUNCATE audit_events"))


def _id(env: Env, tenant: uuid.UUID) -> object:
    return tenant if env.backend == "postgresql" else tenant.hex


@pytest.mark.parametrize("kind", ["modify", "delete", "insert"])
async def test_tampering_is_found_at_the_first_bad_sequence_number(env: Env, kind: str) -> None:
    tenant = await audited_tenant(env)
    t = _id(env, tenant)
    last = len(await events(env, tenant))
    if kind == "modify":
        await tamper(
            env, "UPDATE audit_events SET actor_id = 'someone-else' WHERE tenant_id = :t AND seq = 2", t=t
        )
        bad = 2
    elif kind == "delete":
        await tamper(env, "DELETE FROM audit_events WHERE tenant_id = :t AND seq = 3", t=t)
        bad = 3
    else:
        await tamper(
            env,
            "INSERT INTO audit_events (tenant_id, seq, occurred_at, actor_type, actor_id, action, "
            "target_type, target_ids, fields, request_id, prev_hash, hash) SELECT tenant_id, seq + 1, "
            "occurred_at, actor_type, actor_id, 'customers.delete', target_type, target_ids, fields, "
            "request_id, hash, hash FROM audit_events WHERE tenant_id = :t AND seq = :last",
            t=t,
            last=last,
        )
        bad = last + 1
    result = await verify(env.platform.db, tenant, env.platform.audit_signer)
    assert not result.ok and result.first_bad_seq == bad, result


async def test_rewriting_every_hash_is_caught_by_the_signed_checkpoint(env: Env) -> None:
    tenant = await audited_tenant(env)
    async with env.platform.db.tenant_session(tenant) as session:
        signed = await checkpoint(session, env.platform.audit_signer)
    assert signed is not None
    trail = await events(env, tenant)
    # an attacker changes event 2 and recomputes every later hash consistently
    trail[1].actor_id = "someone-else"
    prev = trail[0].hash
    for row in trail[1:]:
        row.prev_hash = prev
        row.hash = link_hash(prev, hashed_fields(row))
        prev = row.hash
        await tamper(
            env,
            "UPDATE audit_events SET actor_id = :actor, prev_hash = :p, hash = :h WHERE tenant_id = :t AND seq = :s",
            actor=row.actor_id,
            p=row.prev_hash,
            h=row.hash,
            t=_id(env, tenant),
            s=row.seq,
        )
    async with env.owner_engine.begin() as conn:
        await conn.execute(
            text("UPDATE audit_heads SET hash = :h WHERE tenant_id = :t"), {"h": prev, "t": _id(env, tenant)}
        )
    result = await verify(env.platform.db, tenant, env.platform.audit_signer)
    assert not result.ok and result.first_bad_seq == signed.seq
    assert "checkpoint" in (result.reason or "")


@pytest.mark.postgres_only  # SQLite serialises writers itself; the lock matters on PostgreSQL
async def test_concurrent_writers_keep_one_unbroken_chain(env: Env) -> None:
    tenant = await env.tenant()

    async def writer(n: int) -> None:
        for i in range(3):
            async with env.platform.tenant_scope(tenant) as scope:
                await service.create_customer(scope.ctx, kind=CustomerKind.PERSON, given_name=f"W{n}-{i}")

    await asyncio.gather(*(writer(n) for n in range(8)))
    # verify first chains what found the head taken and waits in the journal
    assert (await verify(env.platform.db, tenant, env.platform.audit_signer)).ok
    trail = await events(env, tenant)
    assert [e.seq for e in trail] == list(range(1, len(trail) + 1))
    assert len([e for e in trail if e.action == "customers.create"]) == 24
    assert await journaled(env, tenant) == 0


async def test_audit_events_query_is_for_the_audit_scope(env: Env) -> None:
    tenant = await env.tenant()
    customer = await env.create_customer(tenant, givenName="Cy")
    query = "query($id: String!) { auditEvents(filter: {targetId: $id}) { nodes { action fields actorId } } }"
    refused = await env.gql(query, {"id": customer["id"]}, token=env.token(tenant, ["customers:read"]))
    assert refused["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    body = await env.gql(query, {"id": customer["id"]}, tenant=tenant)
    actions = [n["action"] for n in body["data"]["auditEvents"]["nodes"]]
    # newest first: the read of the created customer's names, its data key, its row
    assert actions == ["read", "customer_keys.create", "customers.create"]


async def add_notes(env: Env, tenant: uuid.UUID, customer_id: str, count: int) -> list[str]:
    """``count`` notes on the customer, added through GraphQL; their ids, sorted."""
    replies = [await env.gql(ADD_NOTE, {"id": customer_id}, tenant=tenant) for _ in range(count)]
    return sorted(reply["data"]["addNote"]["id"] for reply in replies)


async def test_a_plugins_bulk_delete_on_erasure_names_the_deleted_notes(env: Env) -> None:
    tenant = await env.tenant("notes")
    customer = await env.create_customer(tenant, givenName="Erin")
    notes = await add_notes(env, tenant, customer["id"], 2)
    erased = await env.gql(
        "mutation($id: UUID!) { eraseCustomer(id: $id) { id } }", {"id": customer["id"]}, tenant=tenant
    )
    assert "errors" not in erased, erased
    [deleted] = [e for e in await events(env, tenant) if e.action == "notes.delete"]
    assert deleted.target_type == "Note" and deleted.target_ids == notes and deleted.fields == []
    assert (deleted.actor_type, deleted.actor_id) == ("user", "test") and deleted.request_id
    assert (await verify(env.platform.db, tenant, env.platform.audit_signer)).ok


async def test_bulk_updates_of_a_plugin_table_record_ids_and_field_names(env: Env) -> None:
    tenant = await env.tenant("notes")
    customer = await env.create_customer(tenant, givenName="Upton")
    notes = await add_notes(env, tenant, customer["id"], 2)
    table = Note.__table__
    async with env.platform.tenant_scope(tenant) as scope:
        # (not body: a personal column takes no bulk values, they would bypass its encryption)
        orm = update(Note).where(Note.customer_id == uuid.UUID(customer["id"])).values(author="Redacted")
        assert (await scope.session.execute(orm)).rowcount == 2  # the caller's result is intact
        core = update(table).where(table.c.id == uuid.UUID(notes[0])).values(author="someone")
        await scope.session.execute(core)
        returning = (
            update(Note).where(Note.id == uuid.UUID(notes[1])).values(author="x").returning(Note.author)
        )
        assert (await scope.session.execute(returning)).scalars().all() == ["x"]
        await scope.session.execute(update(Note).where(Note.author == "nobody").values(author="-"))  # no row
    updates = [e for e in await events(env, tenant) if e.action == "notes.update"]
    assert [(e.target_ids, e.fields) for e in updates] == [
        (notes, ["author"]),
        ([notes[0]], ["author"]),
        ([notes[1]], ["author"]),
    ]
    assert all(e.target_type == "Note" for e in updates)
    assert (await verify(env.platform.db, tenant, env.platform.audit_signer)).ok


async def test_bulk_inserts_record_the_rows_they_inserted(env: Env) -> None:
    """Many parameter sets, multi-row values() and ON CONFLICT DO NOTHING with the
    caller's own returning(): one create event per statement, naming the rows inserted
    (not those skipped), the caller's result intact; a returning() without the key is
    refused rather than left unaudited."""
    tenant = await env.tenant("notes")
    customer = uuid.UUID((await env.create_customer(tenant, givenName="Ina"))["id"])
    ids = sorted(uuid7() for _ in range(6))
    row = {"tenant_id": tenant, "customer_id": customer, "author": "bulk", "body": b"sealed elsewhere"}
    insert_ = postgresql.insert if env.platform.db.engine.dialect.name == "postgresql" else sqlite.insert
    async with env.platform.tenant_scope(tenant) as scope:
        session = scope.session
        await session.execute(sqlalchemy.insert(Note), [{**row, "id": ids[0]}, {**row, "id": ids[1]}])
        await session.execute(sqlalchemy.insert(Note).values([{**row, "id": ids[2]}]))
        by_table = [{**row, "id": ids[4]}, {**row, "id": ids[5]}]
        await session.execute(sqlalchemy.insert(Note.__table__), by_table)
        again = insert_(Note).on_conflict_do_nothing(index_elements=["tenant_id", "id"]).returning(Note.id)
        written = await session.scalars(again, [{**row, "id": ids[0]}, {**row, "id": ids[3]}])
        assert list(written) == [ids[3]]
        with pytest.raises(UnauditedWrite, match="must return its key"):
            await session.execute(sqlalchemy.insert(Note).returning(Note.author), [{**row, "id": uuid7()}])
    creates = [e for e in await events(env, tenant) if e.action == "notes.create"]
    assert [(e.target_ids, e.fields) for e in creates] == [
        ([str(ids[0]), str(ids[1])], ["author", "body", "customer_id", "id", "tenant_id"]),
        ([str(ids[2])], ["author", "body", "customer_id", "id", "tenant_id"]),
        ([str(ids[4]), str(ids[5])], ["author", "body", "customer_id", "id", "tenant_id"]),
        ([str(ids[3])], ["author", "body", "customer_id", "id", "tenant_id"]),
    ]
    assert (await verify(env.platform.db, tenant, env.platform.audit_signer)).ok


async def test_a_bulk_write_that_rolls_back_leaves_no_audit_event(env: Env) -> None:
    tenant = await env.tenant("notes")
    customer = await env.create_customer(tenant, givenName="Rollo")
    await env.gql(ADD_NOTE, {"id": customer["id"]}, tenant=tenant)
    with pytest.raises(RuntimeError, match="changed my mind"):
        async with env.platform.tenant_scope(tenant) as scope:
            await scope.session.execute(delete(Note))
            raise RuntimeError("changed my mind")
    assert not [e for e in await events(env, tenant) if e.action == "notes.delete"]


async def test_a_bulk_update_cannot_write_encrypted_columns_unaudited(env: Env) -> None:
    tenant = await env.tenant()
    await env.create_customer(tenant, givenName="Crypt")
    async with env.platform.tenant_scope(tenant) as scope:
        with pytest.raises(UnauditedWrite, match="Customer"):
            await scope.session.execute(update(Customer).values(pii=b"garbage"))
        stage = update(Customer).values(lifecycle_stage=LifecycleStage.ACTIVE)
        assert (await scope.session.execute(stage)).rowcount == 1
    [staged] = [e for e in await events(env, tenant) if e.action == "customers.update"]
    assert staged.fields == ["lifecycle_stage"]


async def test_the_target_id_filter_matches_whole_ids_only(env: Env) -> None:
    tenant = await env.tenant()
    ids = ["a%c", "abc", "a_c", "aXc", 'q"uote', "ü-1", "a%c-longer"]
    async with env.platform.tenant_scope(tenant) as scope:
        for target in ids:
            note(scope.session, tenant, "thing.read", "Thing", [target])
        note(scope.session, tenant, "thing.read", "Thing", ["abc", "zzz"])
    query = "query($id: String!) { auditEvents(filter: {targetId: $id}) { nodes { targetIds } } }"
    for target in ids:
        body = await env.gql(query, {"id": target}, tenant=tenant)
        found = [n["targetIds"] for n in body["data"]["auditEvents"]["nodes"]]
        expected = [["abc", "zzz"], ["abc"]] if target == "abc" else [[target]]
        assert found == expected, target


async def test_events_of_any_text_are_hashed_by_the_database_as_crmkit_verifies_them(env: Env) -> None:
    tenant = await env.tenant()
    odd = ['q"uote', "back\\slash", "ü-1 ☃ 😀", "tab\tnew\nline", "\u2028", "ctl\x01\x1f", '"seq":0']
    async with env.platform.tenant_scope(tenant) as scope:  # several events in one append
        for target in odd:
            note(scope.session, tenant, f"thing.{target}", f"T{target}", [target], [target, "seq"])
    assert (await verify(env.platform.db, tenant, env.platform.audit_signer)).ok
    trail = [e for e in await events(env, tenant) if e.action.startswith("thing.")]
    assert [e.target_ids for e in trail] == [[target] for target in odd]


def trail_statements(sql: StatementCounter) -> list[str]:
    """The audit trail's statements among those counted, each as its first words."""
    return [" ".join(s.split()[:3]) for s in sql.statements if "audit_" in s]


def trail_cost(env: Env) -> list[str]:
    """The statements of an append: on PostgreSQL one, taking the head and inserting the
    events; on SQLite the head's upsert, then the INSERT (the head advances by trigger)."""
    if env.backend == "postgresql":
        return ["WITH RECURSIVE head"]
    return ["INSERT INTO audit_heads", "INSERT INTO audit_events"]


async def test_an_audited_update_takes_the_head_and_inserts_once_as_its_last_statements(env: Env) -> None:
    """On PostgreSQL the append also inserts the update's outbox event: emitting costs the
    transaction no statement of its own (SQLite flushes the event's INSERT)."""
    tenant = await env.tenant()
    customer = uuid.UUID((await env.create_customer(tenant, givenName="Stan"))["id"])
    sent: list[tuple[int, str]] = []  # (connection, statement), COMMIT included

    def statement(conn: Any, cursor: Any, sql: str, *args: Any) -> None:
        sent.append((id(conn), sql))

    def commit(conn: Any) -> None:
        sent.append((id(conn), "COMMIT"))

    engine = env.platform.db.sync_engine
    for n in range(2):  # the first warms the caches up
        sent.clear()
        sqlalchemy.event.listen(engine, "before_cursor_execute", statement)
        sqlalchemy.event.listen(engine, "commit", commit)
        try:
            async with env.platform.tenant_scope(tenant) as scope:
                await service.update_customer(scope.ctx, customer, email=f"s{n}@example.com")
        finally:
            sqlalchemy.event.remove(engine, "before_cursor_execute", statement)
            sqlalchemy.event.remove(engine, "commit", commit)
    [conn] = {c for c, sql in sent if sql.startswith("UPDATE customers")}
    update = [sql for c, sql in sent if c == conn]
    update = update[: update.index("COMMIT") + 1]  # the update's transaction (the relay's follow)
    trail = [sql for sql in update if "audit_" in sql]
    cost = trail_cost(env)
    assert len(trail) == len(cost), trail
    # the append's statements come last, right before COMMIT
    last = update[-1 - len(cost) : -1]
    assert all(sql.startswith(start) for sql, start in zip(last, cost, strict=True)), last
    assert [e.action for e in await events(env, tenant)][-1] == "customers.update"
    own = [sql for sql in update if sql.startswith("INSERT INTO outbox_events")]
    assert len(own) == {"postgresql": 0, "sqlite": 1}[env.backend], own
    # postgresql: the tenant set for row-level security, the customer, its tags, UPDATE, append
    assert len(update) - 1 == {"postgresql": 5, "sqlite": 6}[env.backend], update
    [emitted] = (await env.events(tenant, "customer_updated"))[-1:]
    assert emitted.subject_id == str(customer) and emitted.data == {"changed": ["email"]}


async def test_an_emitted_event_is_written_once_whether_or_not_the_append_writes_it(env: Env) -> None:
    tenant = await env.tenant()
    customer = uuid.UUID((await env.create_customer(tenant, givenName="Otto"))["id"])
    updated = select(func.count()).select_from(OutboxEvent).where(OutboxEvent.type == "customer_updated")
    async with env.platform.tenant_scope(tenant) as scope:
        await service.update_customer(scope.ctx, customer, email="otto@example.com")
        row = emit(scope.ctx, "customer_updated", "Customer", customer, changed=["phone"])
        assert await scope.session.scalar(updated) == 2  # its own transaction sees them (autoflush)
        emit(scope.ctx, "customer_updated", "Customer", customer, changed=["notes"])  # by the append
    async with env.platform.tenant_scope(tenant) as scope:  # no audit event: by commit's flush
        emit(scope.ctx, "customer_updated", "Customer", customer, changed=["tags"])
    written = await env.events(tenant, "customer_updated")
    assert [e.data["changed"] for e in written] == [["email"], ["phone"], ["notes"], ["tags"]]
    assert (written[1].id, written[1].occurred_at) == (row.id, row.created_at)  # set by emit
    assert (await verify(env.platform.db, tenant, env.platform.audit_signer)).ok


async def test_a_tenants_first_audited_transaction_writes_its_events_once(env: Env) -> None:
    """No chain head yet: the append finds none and the head is created after it, its
    outbox events kept."""
    tenant = await env.tenant()
    async with env.platform.db.tenant_session(tenant) as session:
        assert await session.scalar(select(func.count()).select_from(AuditHead)) == 0
    async with env.platform.tenant_scope(tenant) as scope:
        await service.create_customer(scope.ctx, kind=CustomerKind.PERSON, given_name="First")
    assert len(await env.events(tenant, "customer_created")) == 1
    assert sorted(e.action for e in await events(env, tenant)) == ["customer_keys.create", "customers.create"]
    assert (await verify(env.platform.db, tenant, env.platform.audit_signer)).ok


async def test_a_read_showing_personal_data_costs_one_append(
    env: Env, sql_statements: StatementCounter
) -> None:
    tenant = await env.tenant()
    customer = await env.create_customer(tenant, givenName="Rhea", email="rhea@example.com")
    query = "query($id: UUID!) { customer(id: $id) { displayName email } }"
    await env.gql(query, {"id": customer["id"]}, tenant=tenant)
    sql_statements.clear()
    body = await env.gql(query, {"id": customer["id"]}, tenant=tenant)
    assert body["data"]["customer"]["email"] == "rhea@example.com"
    assert len(trail_statements(sql_statements)) == len(trail_cost(env)), sql_statements.statements
    [read] = [e for e in await events(env, tenant) if e.action == "read"][-1:]
    assert read.target_ids == [customer["id"]] and read.fields == ["display_name", "email"]


async def test_a_transaction_of_many_flushes_appends_its_events_once(
    env: Env, sql_statements: StatementCounter
) -> None:
    tenant = await env.tenant()
    await env.create_customer(tenant, givenName="First")
    before = len(await events(env, tenant))
    sql_statements.clear()
    async with env.platform.tenant_scope(tenant) as scope:
        for i in range(3):
            await service.create_customer(scope.ctx, kind=CustomerKind.PERSON, given_name=f"Flush{i}")
            await scope.session.flush()
    assert len(trail_statements(sql_statements)) == len(trail_cost(env)), trail_statements(sql_statements)
    appended = (await events(env, tenant))[before:]
    assert [e.action for e in appended].count("customers.create") == 3
    assert len({e.request_id for e in appended}) == 1 and len({e.occurred_at for e in appended}) == 1


@pytest.mark.postgres_only  # SQLite runs one writing transaction at a time whatever crmkit does
async def test_reads_and_writes_do_not_wait_for_a_transaction_holding_the_head(env: Env) -> None:
    tenant = await env.tenant()
    customer = await env.create_customer(tenant, givenName="Wanda", email="wanda@example.com")
    query = "query($id: UUID!) { customer(id: $id) { email } }"
    holder = env.platform.db.session_for(tenant)
    await holder.begin()
    await holder.run_sync(seal, tenant)  # takes the head and keeps it until it commits

    async def request_without_waiting(work: Awaitable[dict[str, Any]]) -> dict[str, Any]:
        """``work``, checking while it runs that no backend of this database waits for a lock."""
        task = asyncio.ensure_future(work)
        async with env.owner_engine.connect() as conn:
            while not task.done():
                waiting = await conn.scalar(
                    text(
                        "SELECT count(*) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                    )
                )
                if waiting:
                    await holder.rollback()  # let it finish, then fail
                    await task
                    pytest.fail("a request waited for the transaction holding the chain head")
                await asyncio.sleep(0.005)
        return await task

    read = await request_without_waiting(env.gql(query, {"id": customer["id"]}, tenant=tenant))
    assert read["data"]["customer"]["email"] == "wanda@example.com"
    written = await request_without_waiting(
        env.gql(
            'mutation($id: UUID!) { updateCustomer(id: $id, input: {email: "w2@example.com"}) { id } }',
            {"id": customer["id"]},
            tenant=tenant,
        )
    )
    assert "errors" not in written, written
    assert await journaled(env, tenant) == 2  # the read's record and the update's
    assert len(await env.events(tenant, "customer_updated")) == 1  # its event all the same
    await holder.commit()
    await holder.close()
    # chained by the next holder of the head (here the next write) before its own events,
    # in the order they occurred, gap-free
    async with env.platform.tenant_scope(tenant) as scope:
        await service.update_customer(scope.ctx, uuid.UUID(customer["id"]), email="w3@example.com")
    assert await journaled(env, tenant) == 0
    trail = await events(env, tenant)
    assert [e.action for e in trail[-3:]] == ["read", "customers.update", "customers.update"]
    assert [e.seq for e in trail] == list(range(1, len(trail) + 1))
    assert (await verify(env.platform.db, tenant, env.platform.audit_signer)).ok
    # once chained, a journaled event is as tamper-evident as any
    await tamper(
        env,
        "UPDATE audit_events SET fields = '[]' WHERE tenant_id = :t AND seq = :s",
        t=tenant,
        s=trail[-3].seq,
    )
    result = await verify(env.platform.db, tenant, env.platform.audit_signer)
    assert not result.ok and result.first_bad_seq == trail[-3].seq
