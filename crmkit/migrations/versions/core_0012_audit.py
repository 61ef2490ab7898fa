"""audit: a journal for events whose chain head is taken; the head advanced by a trigger

A transaction that finds its tenant's chain head locked by another no longer waits for
it: its events go to ``audit_journal``, committed with it, and the head's next holder
moves them onto the chain. Each keeps its canonical JSON around its sequence number
(``before_seq``, ``after_seq``), from which the database computes its hash once it is
chained. The application role may read, insert and delete journal rows (deleted only
as they are chained), never update them.

Every insert into ``audit_events`` advances ``audit_heads`` to its last event (a
trigger), so an append is one lock and one multi-row INSERT, with no UPDATE of the
head from the application.

On SQLite a trigger names the tables it touches: a later migration that rebuilds
``audit_heads`` in batch mode (copy, drop, rename) must drop this trigger first and
create it again after, or SQLite refuses the rename.

Revision ID: core_0012
Revises: core_0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from crmkit.migrations.rls import disable_tenant_rls, enable_tenant_rls

revision = "core_0012"
down_revision = "core_0011"  # after core_0011 rebuilds audit_heads on SQLite
branch_labels = None
depends_on = None

PG_ADVANCE = [
    """CREATE FUNCTION crmkit_audit_advance_head() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE audit_heads AS h SET seq = a.seq, hash = a.hash
        FROM (SELECT DISTINCT ON (tenant_id) tenant_id, seq, hash FROM appended
              ORDER BY tenant_id, seq DESC) AS a
        WHERE h.tenant_id = a.tenant_id;
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER audit_events_advance_head AFTER INSERT ON audit_events
       REFERENCING NEW TABLE AS appended
       FOR EACH STATEMENT EXECUTE FUNCTION crmkit_audit_advance_head()""",
]

SQLITE_ADVANCE = [
    """CREATE TRIGGER audit_events_advance_head AFTER INSERT ON audit_events
       BEGIN UPDATE audit_heads SET seq = NEW.seq, hash = NEW.hash WHERE tenant_id = NEW.tenant_id; END""",
]


def upgrade() -> None:
    op.create_table(
        "audit_journal",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor_type", sa.String(length=20), nullable=False),
        sa.Column("actor_id", sa.String(length=200), nullable=False),
        sa.Column("action", sa.String(length=100), nullable=False),
        sa.Column("target_type", sa.String(length=100), nullable=False),
        sa.Column("target_ids", sa.JSON(), nullable=False),
        sa.Column("fields", sa.JSON(), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.Column("before_seq", sa.LargeBinary(), nullable=False),
        sa.Column("after_seq", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_audit_journal")),
    )
    enable_tenant_rls("audit_journal", "SELECT, INSERT, DELETE")
    postgres = op.get_bind().dialect.name == "postgresql"
    for statement in PG_ADVANCE if postgres else SQLITE_ADVANCE:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER audit_events_advance_head ON audit_events")
        op.execute("DROP FUNCTION crmkit_audit_advance_head()")
    else:
        op.execute("DROP TRIGGER audit_events_advance_head")
    disable_tenant_rls("audit_journal")
    op.drop_table("audit_journal")
