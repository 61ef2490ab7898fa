"""Events this plugin declares for other plugins (named by ``PluginInfo.hookspecs``).

Every event's subject is the case (``"Case"``, its id) and its data is plain JSON:
``customer_id``, ``kind`` (``enquiry``, ``request``, ``complaint``), ``priority`` and
``status``, plus what each adds below. No subject, description or reply travels in an
event: they are personal data and events reach webhooks and logs.
"""

from __future__ import annotations

import crmkit


@crmkit.event_hookspec(scope="cases:read")
def cases_opened(event: crmkit.DomainEvent, ctx: crmkit.TenantContext) -> None:
    """A case was opened (``team`` and ``assignee`` as routing chose them)."""


@crmkit.event_hookspec(scope="cases:read")
def cases_status_changed(event: crmkit.DomainEvent, ctx: crmkit.TenantContext) -> None:
    """A case moved from ``old_status`` to ``new_status``."""


@crmkit.event_hookspec(scope="cases:read")
def cases_sla_warning(event: crmkit.DomainEvent, ctx: crmkit.TenantContext) -> None:
    """A case used the tenant's warning share of a ``target`` (``first_response`` or
    ``resolution``); ``due_at`` is the deadline, ISO 8601."""


@crmkit.event_hookspec(scope="cases:read")
def cases_sla_breached(event: crmkit.DomainEvent, ctx: crmkit.TenantContext) -> None:
    """A case missed a ``target`` (``first_response`` or ``resolution``); ``due_at`` was
    the deadline and ``escalated_to`` the team lead it went to (or ``None``)."""


@crmkit.event_hookspec(scope="cases:read")
def cases_closed(event: crmkit.DomainEvent, ctx: crmkit.TenantContext) -> None:
    """A case was closed: ``resolution_code``, ``root_cause_code``, and whether its SLAs
    were met (``first_response_met``, ``resolution_met``)."""
