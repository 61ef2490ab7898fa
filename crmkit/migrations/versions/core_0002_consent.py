"""consent ledger

``consent_records`` is append-only, enforced by the database: UPDATE is always
refused, and DELETE is refused while the record's customer exists, so the only way a
record goes is with its customer (the ``ON DELETE CASCADE`` of erasure). PostgreSQL
uses one trigger function (plus a TRUNCATE guard); SQLite uses two triggers.

A later migration that rebuilds ``consent_records`` with SQLite's batch mode (copy and
rename) loses these triggers and must create them again (:func:`create_guards`).

Revision ID: core_0002
Revises: core_0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "core_0002"
down_revision = "core_0001"
branch_labels = None
depends_on = None

PG_FUNCTION = """
CREATE FUNCTION crmkit_consent_records_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF NOT EXISTS (
            SELECT 1 FROM customers WHERE tenant_id = OLD.tenant_id AND id = OLD.customer_id
        ) THEN
            RETURN OLD;  -- the cascade of deleting (erasing) the customer
        END IF;
    END IF;
    RAISE EXCEPTION 'consent_records is append-only: % refused; record a new decision instead',
        TG_OP
        USING ERRCODE = 'integrity_constraint_violation';
END
$$
"""

SQLITE_TRIGGERS = [
    """
CREATE TRIGGER consent_records_no_update BEFORE UPDATE ON consent_records
BEGIN
    SELECT RAISE(ABORT, 'consent_records is append-only: UPDATE refused; record a new decision instead');
END
""",
    """
CREATE TRIGGER consent_records_no_delete BEFORE DELETE ON consent_records
WHEN EXISTS (
    SELECT 1 FROM customers WHERE tenant_id = OLD.tenant_id AND id = OLD.customer_id
)
BEGIN
    SELECT RAISE(ABORT, 'consent_records is append-only: DELETE refused; record a new decision instead');
END
""",
]


def create_guards() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_FUNCTION)
        op.execute(
            "CREATE TRIGGER consent_records_append_only BEFORE UPDATE OR DELETE "
            "ON consent_records FOR EACH ROW "
            "EXECUTE FUNCTION crmkit_consent_records_append_only()"
        )
        op.execute(
            "CREATE TRIGGER consent_records_no_truncate BEFORE TRUNCATE "
            "ON consent_records FOR EACH STATEMENT "
            "EXECUTE FUNCTION crmkit_consent_records_append_only()"
        )
    else:
        for trigger in SQLITE_TRIGGERS:
            op.execute(trigger)


def drop_guards() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS consent_records_no_truncate ON consent_records")
        op.execute("DROP TRIGGER IF EXISTS consent_records_append_only ON consent_records")
        op.execute("DROP FUNCTION IF EXISTS crmkit_consent_records_append_only()")
    else:
        op.execute("DROP TRIGGER IF EXISTS consent_records_no_delete")
        op.execute("DROP TRIGGER IF EXISTS consent_records_no_update")


def upgrade() -> None:
    op.create_table(
        "consent_records",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("customer_id", sa.Uuid(), nullable=False),
        sa.Column("purpose", sa.String(length=64), nullable=False),
        sa.Column(
            "channel",
            sa.Enum(
                "email",
                "sms",
                "phone",
                "push",
                "in_app",
                "post",
                name="consentchannel",
                native_enum=False,
            ),
            nullable=False,
        ),
        sa.Column(
            "state",
            sa.Enum("granted", "denied", "withdrawn", name="consentstate", native_enum=False),
            nullable=False,
        ),
        sa.Column(
            "source",
            sa.Enum(
                "branch",
                "app",
                "web",
                "call_centre",
                "import",
                name="consentsource",
                native_enum=False,
            ),
            nullable=False,
        ),
        sa.Column("policy_version", sa.String(length=50), nullable=False),
        sa.Column(
            "legal_basis",
            sa.Enum(
                "consent",
                "contract",
                "legal_obligation",
                "legitimate_interest",
                "vital_interest",
                "public_task",
                name="legalbasis",
                native_enum=False,
            ),
            nullable=False,
        ),
        sa.Column("captured_by", sa.String(length=200), nullable=False),
        sa.Column("captured_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant_id", "customer_id"],
            ["customers.tenant_id", "customers.id"],
            name=op.f("fk_consent_records_tenant_id_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_consent_records")),
    )
    with op.batch_alter_table("consent_records", schema=None) as batch_op:
        batch_op.create_index(
            "ix_consent_records_tenant_id_customer_id_purpose_channel_id",
            ["tenant_id", "customer_id", "purpose", "channel", "id"],
            unique=False,
        )
    create_guards()


def downgrade() -> None:
    drop_guards()
    with op.batch_alter_table("consent_records", schema=None) as batch_op:
        batch_op.drop_index("ix_consent_records_tenant_id_customer_id_purpose_channel_id")
    op.drop_table("consent_records")
