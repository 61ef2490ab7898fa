"""The progress of importing one file, which makes a crashed import resumable."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import String, UniqueConstraint, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from crmkit.clock import utcnow
from crmkit.db import Model, TenantOwned, str_enum, uuid7


class ImportKind(enum.StrEnum):
    CUSTOMERS = "customers"
    ACTIVITIES = "activities"
    CONSENTS = "consents"


class ImportRun(TenantOwned, Model):
    """One file (by its SHA-256) imported into one tenant as one kind: the last line
    whose batch committed, so a re-run after a crash starts after it."""

    __tablename__ = "import_runs"
    __audited__ = False  # bookkeeping: the rows each batch imports are audited
    __table_args__ = (UniqueConstraint("tenant_id", "kind", "file_sha256"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid7)
    kind: Mapped[ImportKind] = mapped_column(str_enum(ImportKind))
    file_name: Mapped[str] = mapped_column(String(300))
    file_sha256: Mapped[str] = mapped_column(String(64))
    lines_done: Mapped[int] = mapped_column(default=0)
    """The last line of the file whose batch committed."""
    imported: Mapped[int] = mapped_column(default=0)
    skipped: Mapped[int] = mapped_column(default=0)
    refused: Mapped[int] = mapped_column(default=0)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column()
