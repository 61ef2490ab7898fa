"""surveys tables: surveys, their published versions, invitations, responses, answers

The first revision of the plugin's alembic branch. Every table is tenant-owned and gets
row-level security. Personal values (the invitation's token, free-text answers) are
``LargeBinary``: ``crmkit.PersonalText`` ciphertext.

Revision ID: surveys_0001
Revises:
"""

from __future__ import annotations

import crmkit
import sqlalchemy as sa
from alembic import op

revision = "surveys_0001"
down_revision = None
branch_labels = ("surveys",)
depends_on = "core_0001"

TABLES = (
    "survey_answers",
    "survey_responses",
    "survey_invitations",
    "survey_versions",
    "surveys",
)


def _when(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _fk(table: str, column: str, target: str) -> sa.ForeignKeyConstraint:
    """``(tenant_id, column)`` references ``target``'s key, within the tenant."""
    return sa.ForeignKeyConstraint(
        ["tenant_id", column],
        [f"{target}.tenant_id", f"{target}.id"],
        name=op.f(f"fk_{table}_tenant_id_{column}_{target}"),
        ondelete="CASCADE",
    )


def _keys() -> list[sa.Column[object]]:
    return [
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "surveys",
        *_keys(),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("draft", sa.JSON(), nullable=False),
        sa.Column("latest_version", sa.Integer(), nullable=False),
        _when("created_at"),
        _when("updated_at"),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_surveys")),
        sa.UniqueConstraint("tenant_id", "key", name=op.f("uq_surveys_tenant_id_key")),
    )
    op.create_table(
        "survey_versions",
        *_keys(),
        sa.Column("survey_id", sa.Uuid(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("definition", sa.JSON(), nullable=False),
        _when("published_at"),
        sa.Column("published_by", sa.String(length=200), nullable=False),
        _fk("survey_versions", "survey_id", "surveys"),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_survey_versions")),
        sa.UniqueConstraint(
            "tenant_id",
            "survey_id",
            "version",
            name=op.f("uq_survey_versions_tenant_id_survey_id_version"),
        ),
    )
    op.create_table(
        "survey_invitations",
        *_keys(),
        sa.Column("customer_id", sa.Uuid(), nullable=False),
        sa.Column("survey_id", sa.Uuid(), nullable=False),
        sa.Column("version_id", sa.Uuid(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("token", sa.LargeBinary(), nullable=True),
        sa.Column("locale", sa.String(length=16), nullable=False),
        sa.Column("trigger", sa.String(length=32), nullable=False),
        sa.Column("trigger_ref", sa.String(length=200), nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=True),
        _when("created_at"),
        _when("expires_at"),
        _when("responded_at", nullable=True),
        _fk("survey_invitations", "customer_id", "customers"),
        _fk("survey_invitations", "version_id", "survey_versions"),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_survey_invitations")),
        sa.UniqueConstraint(
            "tenant_id", "token_hash", name=op.f("uq_survey_invitations_tenant_id_token_hash")
        ),
        sa.UniqueConstraint(
            "tenant_id",
            "survey_id",
            "customer_id",
            "trigger_ref",
            name=op.f("uq_survey_invitations_tenant_id_survey_id_customer_id_trigger_ref"),
        ),
    )
    op.create_table(
        "survey_responses",
        *_keys(),
        sa.Column("invitation_id", sa.Uuid(), nullable=False),
        sa.Column("customer_id", sa.Uuid(), nullable=False),
        sa.Column("survey_id", sa.Uuid(), nullable=False),
        sa.Column("version_id", sa.Uuid(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=True),
        sa.Column("locale", sa.String(length=16), nullable=False),
        _when("submitted_at"),
        sa.Column("nps", sa.Integer(), nullable=True),
        sa.Column("csat", sa.Integer(), nullable=True),
        sa.Column("ces", sa.Integer(), nullable=True),
        _fk("survey_responses", "customer_id", "customers"),
        _fk("survey_responses", "invitation_id", "survey_invitations"),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_survey_responses")),
        sa.UniqueConstraint(
            "tenant_id", "invitation_id", name=op.f("uq_survey_responses_tenant_id_invitation_id")
        ),
    )
    op.create_table(
        "survey_answers",
        *_keys(),
        sa.Column("response_id", sa.Uuid(), nullable=False),
        sa.Column("customer_id", sa.Uuid(), nullable=False),
        sa.Column("question_key", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("dimension", sa.String(length=32), nullable=True),
        sa.Column("facet", sa.String(length=32), nullable=True),
        sa.Column("score", sa.Integer(), nullable=True),
        sa.Column("choices", sa.JSON(), nullable=True),
        sa.Column("text", sa.LargeBinary(), nullable=True),
        _fk("survey_answers", "customer_id", "customers"),
        _fk("survey_answers", "response_id", "survey_responses"),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_survey_answers")),
    )
    indexes = {
        "survey_invitations": [
            ("ix_survey_invitations_customer", ["tenant_id", "customer_id", "created_at"]),
            ("ix_survey_invitations_survey", ["tenant_id", "survey_id", "created_at"]),
        ],
        "survey_responses": [
            ("ix_survey_responses_survey", ["tenant_id", "survey_id", "submitted_at"]),
            ("ix_survey_responses_customer", ["tenant_id", "customer_id"]),
        ],
        "survey_answers": [("ix_survey_answers_response", ["tenant_id", "response_id"])],
    }
    for table, table_indexes in indexes.items():
        with op.batch_alter_table(table, schema=None) as batch_op:
            for name, columns in table_indexes:
                batch_op.create_index(name, columns)
    for table in TABLES:
        crmkit.enable_tenant_rls(table)


def downgrade() -> None:
    for table in TABLES:
        crmkit.disable_tenant_rls(table)
        op.drop_table(table)
