"""What invites customers without staff: the tenant's triggers (settings ``triggers``).

Each trigger invites once per cause (``trigger_ref``: the activity, the case, the
schedule's period), so a redelivered event or a second cron run invites no one twice;
a customer without consent, inside the fatigue window or erased is skipped.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date

import crmkit
from sqlalchemy import select

from crmkit_surveys import service
from crmkit_surveys.models import Survey
from crmkit_surveys.segments import members
from crmkit_surveys.settings import NAME, SurveysSettings, Trigger, TriggerKind

EPOCH = date(1970, 1, 1).toordinal()


def _triggers(ctx: crmkit.TenantContext, kind: TriggerKind) -> list[Trigger]:
    return [t for t in ctx.settings_as(SurveysSettings).triggers if t.on is kind]


async def _survey(ctx: crmkit.TenantContext, key: str) -> Survey | None:
    return await ctx.session.scalar(select(Survey).where(Survey.key == key))


async def after_activity(ctx: crmkit.TenantContext, activity_id: uuid.UUID) -> None:
    """``activity_recorded``: invite for each trigger matching the activity's kind and
    channel. The plugin's own follow-up activities invite no one."""
    triggers = _triggers(ctx, TriggerKind.ACTIVITY)
    if not triggers:
        return
    activity = await ctx.session.get(crmkit.Activity, (ctx.tenant_id, activity_id))
    if activity is None or (activity.external_ref or "").startswith(f"{NAME}:"):
        return
    for trigger in triggers:
        if trigger.kind != activity.kind or trigger.channel not in (None, activity.channel):
            continue
        survey = await _survey(ctx, trigger.survey)
        if survey is not None:
            await service.try_invite(
                ctx,
                survey=survey,
                customer_id=activity.customer_id,
                trigger=TriggerKind.ACTIVITY.value,
                trigger_ref=f"activity:{activity.id}",
                locale=trigger.locale,
                channel=activity.channel.value,
            )


async def after_case_closed(ctx: crmkit.TenantContext, case_id: str, customer_id: str) -> None:
    """The cases plugin's ``cases_closed``: invite for each case-closed trigger."""
    for trigger in _triggers(ctx, TriggerKind.CASE_CLOSED):
        survey = await _survey(ctx, trigger.survey)
        if survey is not None:
            await service.try_invite(
                ctx,
                survey=survey,
                customer_id=uuid.UUID(customer_id),
                trigger=TriggerKind.CASE_CLOSED.value,
                trigger_ref=f"case:{case_id}",
                locale=trigger.locale,
            )


async def scheduled(ctx: crmkit.TenantContext) -> None:
    """Daily cron, per tenant: each schedule trigger invites its segment once per
    period of ``every_days`` days (periods counted from 1970-01-01, UTC)."""
    settings = ctx.settings_as(SurveysSettings)
    day = crmkit.utcnow().astimezone(UTC).date().toordinal()
    for trigger in _triggers(ctx, TriggerKind.SCHEDULE):
        survey = await _survey(ctx, trigger.survey)
        if survey is None or survey.latest_version == 0:
            continue
        assert trigger.segment is not None and trigger.every_days is not None  # validated
        period = (day - EPOCH) // trigger.every_days
        segment = members(settings.segment(trigger.segment)).subquery()
        for customer_id in list(await ctx.session.scalars(select(segment.c.customer_id))):
            await service.try_invite(
                ctx,
                survey=survey,
                customer_id=customer_id,
                trigger=TriggerKind.SCHEDULE.value,
                trigger_ref=f"schedule:{trigger.segment}:{trigger.every_days}:{period}",
                locale=trigger.locale,
            )
