"""bulk import: each file's progress, so a crashed import resumes where it stopped

Revision ID: core_0010
Revises: core_0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from crmkit.migrations.rls import disable_tenant_rls, enable_tenant_rls

revision = "core_0010"
down_revision = "core_0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "import_runs",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column(
            "kind",
            sa.Enum("customers", "activities", "consents", name="importkind", native_enum=False, length=10),
            nullable=False,
        ),
        sa.Column("file_name", sa.String(length=300), nullable=False),
        sa.Column("file_sha256", sa.String(length=64), nullable=False),
        sa.Column("lines_done", sa.Integer(), nullable=False),
        sa.Column("imported", sa.Integer(), nullable=False),
        sa.Column("skipped", sa.Integer(), nullable=False),
        sa.Column("refused", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_import_runs")),
        sa.UniqueConstraint(
            "tenant_id", "kind", "file_sha256", name=op.f("uq_import_runs_tenant_id_kind_file_sha256")
        ),
    )
    enable_tenant_rls("import_runs")


def downgrade() -> None:
    disable_tenant_rls("import_runs")
    op.drop_table("import_runs")
