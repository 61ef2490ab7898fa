"""Alembic environment. crmkit runs it with a connection in ``config.attributes``."""

from __future__ import annotations

from alembic import context

import crmkit.auth.models
import crmkit.core.audit.models
import crmkit.core.consent.models
import crmkit.core.customers.models
import crmkit.core.events
import crmkit.plugins.models
import crmkit.tenants.models
import crmkit.tenants.revocation
import crmkit.tenants.users  # noqa: F401  (models register on the metadata)
from crmkit.db import Model

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Model.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
