"""The churn plugin's retention case: a request opened for a customer at risk of leaving.

Churn asks with its ``churn_action_requested`` event (kind ``case``); cases hears it
only where the tenant runs both plugins, and needs nothing of churn's to load.
"""

from __future__ import annotations

import uuid

import crmkit

from crmkit_cases import service
from crmkit_cases.models import Case
from crmkit_cases.settings import CaseKind, CasePriority

OPENED_BY = "crmkit:churn"
SUBJECT = "Retention: customer at risk of leaving"
_CASE_OF_ALERT = uuid.UUID("6a0c7f0e-5b1d-4c64-9a53-0c8f1d1e7c13")
"""The namespace of the case ids derived from alerts: one case per alert."""


def case_id_for(alert_id: str) -> uuid.UUID:
    """The retention case of a churn alert: the same id for every request about it."""
    return uuid.uuid5(_CASE_OF_ALERT, alert_id)


async def open_for_alert(ctx: crmkit.TenantContext, event: crmkit.DomainEvent) -> None:
    """Open a high-priority request, routed like any other, once per alert (the event's
    subject): a repeated delivery or a second request finds the case opened (two run at
    the same instant: the second fails on the case's key and its retry finds it). A
    customer erased meanwhile gets none."""
    if event.data.get("kind") != "case":
        return
    case_id = case_id_for(str(event.subject_id))
    if await ctx.session.get(Case, (ctx.tenant_id, case_id)) is not None:
        return
    try:
        await service.open_case(
            ctx,
            customer_id=uuid.UUID(str(event.data["customer_id"])),
            kind=CaseKind.REQUEST,
            channel=crmkit.Channel.OTHER,
            subject=SUBJECT,
            description=f"Opened by the churn playbook step {event.data.get('step')!r} "
            f"for alert {event.subject_id}.",
            opened_by=OPENED_BY,
            priority=CasePriority.HIGH,
            case_id=case_id,
        )
    except crmkit.NotFound:
        return
