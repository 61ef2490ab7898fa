"""Benchmark: bulk import of customers through ``crmkit import`` against the driver's limit.

On PostgreSQL, the platform connecting as a login role in ``crmkit_app`` (row-level
security on, as in production; ``bench/postgres_setup.py``):

1. **Import**: a CSV of ``--rows`` customers (names, e-mail, phone, two tags each) is
   imported into a fresh tenant by the ``crmkit import customers`` command, run as a
   subprocess, as an operator runs it: the wall time from start to exit, the Python
   start included. Every row is checked, its personal data encrypted under a data
   key of its own and blind-indexed, and written with its key, name tokens, tags,
   its ``customer_created`` event and one audit event per batch.
2. **Ceiling**: the rows that import wrote, read back already encrypted (customers,
   customer_keys, customer_name_tokens, customer_tags, outbox_events), are written
   into a second tenant with asyncpg's ``copy_records_to_table`` (COPY; as the
   superuser, since COPY FROM is not supported under row-level security): the
   same bytes into the same tables and indexes with no checking, no cryptography and
   no SQL per row.
3. Printed: both times, rows/s, and the ratio COPY time ÷ import time (the goal:
   0.2 or better); then that the same file imported again leaves ``--rows``
   customers (every row skipped as present), and that an import killed with SIGKILL
   halfway (once the run's progress row has passed the middle of the file) and run
   again ends with every customer exactly once.

Run: ``.venv/bin/python bench/import_customers.py [--rows 100000]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import asyncpg
import postgres_setup

from crmkit.tenants.service import create_tenant

COPIED = ("customers", "customer_keys", "customer_name_tokens", "customer_tags", "outbox_events")


def write_csv(path: Path, rows: int) -> None:
    with path.open("w", encoding="utf-8") as out:
        out.write("externalRef,givenName,familyName,email,phone,tags,lifecycleStage\n")
        for i in range(rows):
            contact = f"person{i}@example.com,+4420{i:08d}"
            out.write(f'c{i},Given{i % 997},Family{i},{contact},"retail,s{i % 7}",active\n')


def crmkit_command() -> str:
    return str(Path(sys.executable).with_name("crmkit"))


def start_import(env: dict[str, str], tenant: str, path: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [crmkit_command(), "import", "customers", tenant, str(path)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def run_import(env: dict[str, str], tenant: str, path: Path) -> tuple[float, str]:
    began = time.perf_counter()
    process = start_import(env, tenant, path)
    output, _ = process.communicate()
    seconds = time.perf_counter() - began
    if process.returncode != 0:
        raise SystemExit(f"crmkit import failed ({process.returncode}): {output.decode()}")
    return seconds, output.decode().strip()


async def count(owner: asyncpg.Connection, tenant_id: uuid.UUID) -> tuple[int, int]:
    row = await owner.fetchrow(
        "SELECT count(*), count(DISTINCT external_ref) FROM customers WHERE tenant_id = $1", tenant_id
    )
    return row[0], row[1]


async def copy_ceiling(owner: asyncpg.Connection, source: uuid.UUID, target: uuid.UUID) -> float:
    """Seconds to COPY the rows ``source``'s import wrote into tenant ``target``."""
    tables = {}
    for table in COPIED:
        records = await owner.fetch(f"SELECT * FROM {table} WHERE tenant_id = $1", source)
        columns = list(records[0].keys()) if records else []
        at = columns.index("tenant_id") if records else 0
        tables[table] = (columns, [(*r[:at], target, *r[at + 1 :]) for r in records])
    began = time.perf_counter()
    async with owner.transaction():
        for table, (columns, records) in tables.items():
            if records:
                await owner.copy_records_to_table(table, records=records, columns=columns)
    return time.perf_counter() - began


async def lines_done(owner: asyncpg.Connection, tenant_id: uuid.UUID) -> int:
    done = await owner.fetchval("SELECT max(lines_done) FROM import_runs WHERE tenant_id = $1", tenant_id)
    return int(done or 0)


async def measure(args: argparse.Namespace, workdir: Path) -> None:
    async with postgres_setup.migrated_platform("import", workdir) as ready:
        if ready is None:
            return
        platform, owner_url = ready
        env = {
            **os.environ,
            "CRMKIT_DATABASE_URL": str(platform.settings.database_url),
            "CRMKIT_DATA_DIR": str(workdir),
            "CRMKIT_DEV_MODE": "true",
        }
        tenants = [await create_tenant(platform.db, f"bank-{n}", f"Bank {n}") for n in range(3)]
        path = workdir / "customers.csv"
        write_csv(path, args.rows)
        owner = await asyncpg.connect(owner_url.replace("postgresql+asyncpg", "postgresql"))
        try:
            seconds, output = run_import(env, tenants[0].slug, path)
            print(f"crmkit import: {args.rows:,} customers in {seconds:.2f} s ({args.rows / seconds:,.0f}/s)")
            print(f"  {output}")
            ceiling = await copy_ceiling(owner, tenants[0].id, tenants[1].id)
            print(f"COPY of the same encrypted rows: {ceiling:.2f} s ({args.rows / ceiling:,.0f}/s)")
            print(f"ratio COPY / import: {ceiling / seconds:.3f} (goal 0.2 or better)")

            _, again = run_import(env, tenants[0].slug, path)
            total, distinct = await count(owner, tenants[0].id)
            print(f"the same file again: {again}; customers {total:,} ({distinct:,} distinct externalRefs)")

            process = start_import(env, tenants[2].slug, path)
            while await lines_done(owner, tenants[2].id) < args.rows // 2:
                if process.poll() is not None:
                    output = process.stdout.read().decode() if process.stdout else ""
                    raise SystemExit(f"the import ended before it could be killed halfway: {output}")
                await asyncio.sleep(0.02)
            process.send_signal(signal.SIGKILL)
            process.wait()
            killed_at, _ = await count(owner, tenants[2].id)
            _, resumed = run_import(env, tenants[2].slug, path)
            total, distinct = await count(owner, tenants[2].id)
            print(f"SIGKILL at {killed_at:,} customers, then: {resumed}")
            print(f"  customers {total:,} ({distinct:,} distinct externalRefs; expected {args.rows:,} once)")
        finally:
            await owner.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    postgres_setup.run(measure, parser.parse_args())
