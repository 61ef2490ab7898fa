"""Bulk import: CSV and JSON Lines files through ``crmkit import`` and the GraphQL
mutations; refused rows reported, re-runs idempotent, crashed runs resumed, batches of
a fixed number of statements, audited per batch, one event per row, encrypted."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text

from crmkit.core.audit.models import AuditEvent
from crmkit.core.consent.models import ConsentRecord
from crmkit.core.customers.models import Activity, Customer
from crmkit.core.customers.service import CustomerFilter, list_customers
from crmkit.core.imports.files import FileFormat
from crmkit.core.imports.models import ImportKind, ImportRun
from crmkit.core.imports.runs import OpenScope, Summary, import_file
from crmkit.core.imports.service import MAX_ROWS, Row, import_rows
from crmkit.plugins.info import TenantContext
from crmkit.testing import Env, StatementCounter

CUSTOMERS_CSV = """externalRef,kind,givenName,familyName,organisationName,email,tags,lifecycleStage,timeZone
c1,person,Ada,Lovelace,,ada@example.com,"vip, gold",active,Europe/London
c2,person,Bob,,,not-an-address,,,
c3,organisation,,,,,,,
c4,ORGANISATION,,,Acme Ltd,info@acme.example,,,
c5,person,Cyd,Charisse,,,,nowhere,
c6,person,Dee,Dale,,,,,Nowhere/Land
"""


def scope_of(env: Env, tenant: uuid.UUID) -> OpenScope:
    @asynccontextmanager
    async def scope() -> AsyncIterator[TenantContext]:
        async with env.platform.tenant_scope(tenant) as opened:
            yield opened.ctx

    return scope


async def run_file(
    env: Env, tenant: uuid.UUID, kind: ImportKind, path: Path, *, batch_size: int = MAX_ROWS
) -> Summary:
    fmt = FileFormat.CSV if path.suffix == ".csv" else FileFormat.JSONL
    return await import_file(
        scope_of(env, tenant), kind, path, fmt, captured_by="operator:test", batch_size=batch_size
    )


async def count(env: Env, tenant: uuid.UUID, model: Any) -> int:
    async with env.platform.db.tenant_session(tenant) as session:
        return await session.scalar(select(func.count()).select_from(model)) or 0


def customer_rows(n: int, prefix: str = "r") -> list[Row]:
    return [
        (
            i,
            {
                "externalRef": f"{prefix}{i}",
                "givenName": f"Given{i}",
                "familyName": "Family",
                "tags": ["a", "b"],
            },
        )
        for i in range(1, n + 1)
    ]


async def import_batch(env: Env, tenant: uuid.UUID, kind: ImportKind, rows: list[Row]) -> Any:
    async with env.platform.tenant_scope(tenant) as scope:
        return await import_rows(scope.ctx, kind, rows, captured_by="operator:test")


async def test_csv_rows_refused_with_line_field_and_reason_and_the_rest_imported(
    env: Env, tmp_path: Path
) -> None:
    tenant = await env.tenant()
    path = tmp_path / "customers.csv"
    path.write_text(CUSTOMERS_CSV)
    summary = await run_file(env, tenant, ImportKind.CUSTOMERS, path)

    assert (summary.imported, summary.skipped, summary.refused_count) == (2, 0, 4)
    assert [(r.line, r.field) for r in summary.refused] == [
        (3, "email"),
        (4, "organisationName"),
        (6, "lifecycleStage"),
        (7, "timeZone"),
    ]
    assert "not an e-mail address" in summary.refused[0].reason
    async with env.platform.tenant_scope(tenant) as scope:
        found = await list_customers(scope.ctx, CustomerFilter(email="ADA@example.com"), after=None, limit=5)
        assert [(c.external_ref, c.personal.family_name, c.tag_names, c.time_zone) for c in found] == [
            ("c1", "Lovelace", ["gold", "vip"], "Europe/London")
        ]
        named = await list_customers(scope.ctx, CustomerFilter(text="acme"), after=None, limit=5)
        assert [c.personal.organisation_name for c in named] == ["Acme Ltd"]


async def test_jsonl_activities_and_a_second_run_imports_nothing(env: Env, tmp_path: Path) -> None:
    tenant = await env.tenant()
    await import_batch(env, tenant, ImportKind.CUSTOMERS, customer_rows(2))
    lines = [
        {
            "externalRef": "a1",
            "customerExternalRef": "r1",
            "kind": "transaction",
            "channel": "app",
            "occurredAt": "2026-01-01T10:00:00+01:00",
            "amount": "12.50",
            "currency": "EUR",
            "attributes": {"mcc": "5411"},
        },
        {"externalRef": "a2", "customerExternalRef": "nobody", "kind": "login", "channel": "web"},
        "not json",
        {"externalRef": "a3", "customerExternalRef": "r2", "kind": "login", "channel": "web", "colour": 1},
        {
            "externalRef": "a4",
            "customerExternalRef": "r2",
            "kind": "login",
            "channel": "web",
            "occurredAt": "2026-01-01T10:00:00",
        },
        {"externalRef": "a5", "customerExternalRef": "r2", "kind": "contact", "channel": "phone"},
    ]
    path = tmp_path / "activities.jsonl"
    path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n")

    first = await run_file(env, tenant, ImportKind.ACTIVITIES, path)
    assert (first.imported, first.skipped) == (2, 0)
    assert [(r.line, r.field) for r in first.refused] == [
        (2, "customerExternalRef"),
        (3, None),
        (4, "colour"),
        (5, "occurredAt"),
    ]
    second = await run_file(env, tenant, ImportKind.ACTIVITIES, path)
    assert (second.imported, second.skipped, second.refused_count) == (0, 2, 4)
    assert await count(env, tenant, Activity) == 2
    async with env.platform.db.tenant_session(tenant) as session:
        amount = await session.scalar(select(Activity.amount).where(Activity.external_ref == "a1"))
    assert str(amount) == "12.5000"


async def crash_and_resume(env: Env, tmp_path: Path, *, overlap: bool) -> None:
    tenant = await env.tenant()
    path = tmp_path / "customers.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for _, row in customer_rows(45)))
    opened = 0

    @asynccontextmanager
    async def crashing() -> AsyncIterator[TenantContext]:
        nonlocal opened
        opened += 1
        number = opened
        async with scope_of(env, tenant)() as ctx:
            yield ctx
            if number == 4:  # the start, then batches 1 and 2; batch 3 dies before its commit
                raise RuntimeError("crash")

    with pytest.raises(RuntimeError):
        await import_file(
            crashing,
            ImportKind.CUSTOMERS,
            path,
            FileFormat.JSONL,
            captured_by="x",
            batch_size=10,
            overlap=overlap,
        )
    assert await count(env, tenant, Customer) == 20 == await lines_done(env, tenant)

    resumed = await run_file(env, tenant, ImportKind.CUSTOMERS, path, batch_size=10)
    assert resumed.resumed_after == 20
    assert (resumed.imported, resumed.skipped) == (45, 0)
    assert await count(env, tenant, Customer) == 45


async def test_a_crashed_run_resumes_after_the_last_committed_batch(env: Env, tmp_path: Path) -> None:
    await crash_and_resume(env, tmp_path, overlap=False)


@pytest.mark.postgres_only
async def test_overlapping_batches_commit_in_order(env: Env, tmp_path: Path) -> None:
    """Batch 4 is written while batch 3 fails: it must not commit, nor its progress."""
    await crash_and_resume(env, tmp_path, overlap=True)


async def test_statements_per_batch_do_not_grow_with_its_size(
    env: Env, sql_statements: StatementCounter
) -> None:
    tenant = await env.tenant()
    await import_batch(env, tenant, ImportKind.CUSTOMERS, customer_rows(1, "warm-"))  # keys, audit head
    own, whole = [], []
    for size in (5, 50):
        await env.drain()  # the previous batch's event deliveries send statements too
        sql_statements.clear()
        async with env.platform.tenant_scope(tenant) as scope:
            before = sql_statements.count
            rows = customer_rows(size, f"s{size}-")
            result = await import_rows(scope.ctx, ImportKind.CUSTOMERS, rows, captured_by="x")
            # the transaction's first statement may be PostgreSQL's set_config of the tenant
            own.append(sum("set_config" not in sql for sql in sql_statements.statements[before:]))
        whole.append(sql_statements.count)  # with the scope's own and the audit append at commit
        assert len(result.imported) == size
    # SELECT the refs present; INSERT customers, keys, name tokens, tags, outbox events
    assert own == [6, 6]
    assert whole[0] == whole[1]


async def test_one_audit_event_per_batch_naming_every_row_and_one_event_per_row(env: Env) -> None:
    tenant = await env.tenant()
    result = await import_batch(env, tenant, ImportKind.CUSTOMERS, customer_rows(12))
    ids = sorted(str(i) for _, i in result.imported)
    async with env.platform.db.tenant_session(tenant) as session:
        audited = (
            await session.scalars(select(AuditEvent).where(AuditEvent.target_type == "Customer"))
        ).all()
    assert [(e.action, sorted(e.target_ids), e.actor_type) for e in audited] == [
        ("customers.create", ids, "system")
    ]
    assert {"given_name", "family_name", "tags"} <= set(audited[0].fields)
    events = await env.events(tenant, "customer_created")
    assert sorted(e.subject_id for e in events) == ids


async def test_the_plugins_validation_refuses_rows_like_single_writes(env: Env) -> None:
    tenant = await env.tenant("recorder")
    customers = await import_batch(
        env, tenant, ImportKind.CUSTOMERS, [*customer_rows(2), (3, {"externalRef": "v", "givenName": "Veto"})]
    )
    assert [(r.line, r.field, r.reason) for r in customers.refused] == [
        (3, "givenName", "the recorder refuses customers named Veto")
    ]
    activity = {"customerExternalRef": "r1", "kind": "login", "channel": "web"}
    activities = await import_batch(
        env,
        tenant,
        ImportKind.ACTIVITIES,
        [
            (1, {**activity, "externalRef": "a1"}),
            (2, {**activity, "externalRef": "a2", "attributes": {"veto": 1}}),
        ],
    )
    assert [r.line for r in activities.refused] == [2]
    assert len(activities.imported) == 1


async def test_personal_data_is_encrypted_at_rest(env: Env) -> None:
    tenant = await env.tenant()
    await import_batch(
        env,
        tenant,
        ImportKind.CUSTOMERS,
        [(1, {"externalRef": "x1", "givenName": "Zebedee", "email": "zebedee@example.com"})],
    )
    async with env.owner_engine.connect() as conn:
        rows = (await conn.execute(text("SELECT * FROM customers"))).all()
        tokens = (await conn.execute(text("SELECT token FROM customer_name_tokens"))).all()
    assert rows and tokens
    dump = repr(rows).encode() + repr(tokens).encode()
    assert b"Zebedee" not in dump and b"zebedee" not in dump and b"example.com" not in dump


async def test_tenants_keep_apart(env: Env) -> None:
    first, second = await env.tenant(), await env.tenant()
    await import_batch(env, first, ImportKind.CUSTOMERS, customer_rows(3))
    again = await import_batch(env, second, ImportKind.CUSTOMERS, customer_rows(3))
    assert len(again.imported) == 3  # the same refs in another tenant are other customers
    activity = {
        "externalRef": "a1",
        "customerId": str(again.imported[0][1]),
        "kind": "login",
        "channel": "web",
    }
    refused = await import_batch(env, first, ImportKind.ACTIVITIES, [(1, activity)])
    assert [(r.field, r.reason) for r in refused.refused] == [
        ("customerId", f"no customer {again.imported[0][1]}")
    ]
    assert await count(env, first, Customer) == 3 and await count(env, second, Customer) == 3


async def test_consents_keep_their_evidence_and_import_once(env: Env) -> None:
    tenant = await env.tenant()
    await import_batch(env, tenant, ImportKind.CUSTOMERS, customer_rows(1))
    base = {
        "customerExternalRef": "r1",
        "purpose": "marketing",
        "channel": "email",
        "policyVersion": "v3",
        "legalBasis": "consent",
        "source": "branch",
    }
    rows: list[Row] = [
        (1, {**base, "state": "granted", "capturedAt": "2025-01-01T09:00:00Z", "capturedBy": "clerk 7"}),
        (2, {**base, "state": "withdrawn", "capturedAt": "2025-06-01T09:00:00Z"}),
        (3, {**base, "state": "granted", "capturedAt": "2025-03-01T09:00:00Z"}),
        (4, {**base, "state": "granted"}),
    ]
    first = await import_batch(env, tenant, ImportKind.CONSENTS, rows)
    assert [r.line for r in first.refused] == [3, 4]
    assert [r.field for r in first.refused] == ["capturedAt", "capturedAt"]
    again = await import_batch(env, tenant, ImportKind.CONSENTS, rows[:2])
    assert (len(again.imported), sorted(again.skipped)) == (0, [1, 2])
    async with env.platform.db.tenant_session(tenant) as session:
        records = (await session.scalars(select(ConsentRecord).order_by(ConsentRecord.captured_at))).all()
    assert [(r.state.value, r.source.value, r.policy_version, r.captured_by) for r in records] == [
        ("granted", "branch", "v3", "clerk 7"),
        ("withdrawn", "branch", "v3", "operator:test"),
    ]
    events = await env.events(tenant, "consent_changed")
    assert [(e.data["state"], e.data["previous_state"]) for e in events] == [
        ("granted", None),
        ("withdrawn", "granted"),
    ]


IMPORT = """
mutation($rows: [JSON!]!) {
  importCustomers(rows: $rows) { imported { line id } skipped refused { line field reason } }
}"""


async def test_graphql_import_and_its_limits(env: Env) -> None:
    tenant = await env.tenant()
    rows = [{"externalRef": "g1", "givenName": "Gil"}, {"externalRef": "g2"}, 7]
    body = await env.gql(IMPORT, {"rows": rows}, tenant=tenant, scopes=["import:write"])
    assert "errors" not in body, body
    result = body["data"]["importCustomers"]
    assert [r["line"] for r in result["imported"]] == [1]
    assert [(r["line"], r["field"]) for r in result["refused"]] == [(2, "givenName"), (3, None)]

    too_many = [{"externalRef": f"m{i}", "givenName": "M"} for i in range(MAX_ROWS + 1)]
    body = await env.gql(IMPORT, {"rows": too_many}, tenant=tenant, scopes=["import:write"])
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert "at most 1,000 rows per call; got 1,001" in body["errors"][0]["message"]
    forbidden = await env.gql(IMPORT, {"rows": rows[:1]}, tenant=tenant, scopes=["customers:write"])
    assert forbidden["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert await count(env, tenant, Customer) == 1


@pytest.mark.postgres_only
async def test_a_killed_crmkit_import_reruns_to_every_row_once(env: Env, tmp_path: Path) -> None:
    tenant = await env.tenant()
    rows = 300
    path = tmp_path / "customers.csv"
    path.write_text("externalRef,givenName\n" + "".join(f"k{i},Name{i}\n" for i in range(rows)))
    settings = env.platform.settings
    environ = {
        **os.environ,
        "CRMKIT_DATABASE_URL": str(settings.database_url),
        "CRMKIT_DATA_DIR": str(settings.data_dir),
        "CRMKIT_DEV_MODE": "true",
    }
    environ.pop("CRMKIT_REDIS_URL", None)
    command = [str(Path(sys.executable).with_name("crmkit")), "import", "customers", str(tenant), str(path)]
    process = await asyncio.create_subprocess_exec(
        *command, "--batch-size", "5", env=environ, stdout=asyncio.subprocess.DEVNULL
    )
    try:
        while await lines_done(env, tenant) < 50:
            assert process.returncode is None, "the import ended before it could be killed"
            await asyncio.sleep(0.02)
    finally:
        process.send_signal(signal.SIGKILL)
        await process.wait()
    killed_at = await count(env, tenant, Customer)
    assert 50 <= killed_at < rows

    rerun = await asyncio.create_subprocess_exec(
        *command, env=environ, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await rerun.communicate()
    assert rerun.returncode == 0, err.decode()
    assert f"resumed after line {killed_at + 1}" in out.decode()
    async with env.platform.db.tenant_session(tenant) as session:
        refs = (await session.scalars(select(Customer.external_ref))).all()
    assert sorted(str(ref) for ref in refs) == sorted(f"k{i}" for i in range(rows))


async def lines_done(env: Env, tenant: uuid.UUID) -> int:
    async with env.platform.db.tenant_session(tenant) as session:
        return await session.scalar(select(func.max(ImportRun.lines_done))) or 0
