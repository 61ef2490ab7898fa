"""notes.body holds ciphertext (crmkit.PersonalText)

The body is personal data about the customer, so it is now encrypted under the
customer's data key: the column becomes ``LargeBinary``, the type ``PersonalText``
stores. A migration cannot encrypt rows itself: the keys are not in the database (the
master key is the platform's) and encryption binds each value to its row through the
ORM. So this revision converts an empty table and refuses one that holds notes in clear,
rather than lose them or leave them unprotected. A released plugin with data would
expand and contract instead: add the encrypted column beside the clear one, let a job
re-write every note through the ORM, then drop the clear column in a later revision.

Revision ID: notes_0002
Revises: notes_0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "notes_0002"
down_revision = "notes_0001"
branch_labels = None
depends_on = None


def _refuse_if_notes(direction: str) -> None:
    bind = op.get_bind()
    postgres = bind.dialect.name == "postgresql"
    if postgres:  # row-level security hides every tenant's rows, from the owner too
        op.execute("ALTER TABLE notes NO FORCE ROW LEVEL SECURITY")
    notes = bind.scalar(sa.text("SELECT count(*) FROM notes"))
    if postgres:
        op.execute("ALTER TABLE notes FORCE ROW LEVEL SECURITY")
    if notes:
        raise RuntimeError(
            f"notes_0002 {direction}: the notes table holds notes, and their body cannot "
            "change between clear text and ciphertext in SQL (see this revision's docstring)"
        )


def upgrade() -> None:
    _refuse_if_notes("upgrade")
    with op.batch_alter_table("notes", schema=None) as batch_op:
        batch_op.alter_column(
            "body",
            existing_type=sa.Text(),
            type_=sa.LargeBinary(),
            existing_nullable=False,
            postgresql_using="convert_to(body, 'UTF8')",
        )


def downgrade() -> None:
    _refuse_if_notes("downgrade")
    with op.batch_alter_table("notes", schema=None) as batch_op:
        batch_op.alter_column(
            "body",
            existing_type=sa.LargeBinary(),
            type_=sa.Text(),
            existing_nullable=False,
            postgresql_using="convert_from(body, 'UTF8')",
        )
