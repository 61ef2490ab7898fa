"""Routing of new cases: the tenant's rules pick a team, round-robin picks an agent of it
who is under their open-case limit; when every agent is full the case waits unassigned
in the team's queue."""

from __future__ import annotations

import crmkit
from sqlalchemy import func, select

from crmkit_cases.models import Case, CustomerTier, RoutingCursor
from crmkit_cases.settings import OPEN_STATUSES, CaseKind, CasesSettings, RoutingRule


def _matches(
    rule: RoutingRule, kind: CaseKind, channel: str, tier: str | None, tags: list[str]
) -> bool:
    return (
        (not rule.kinds or kind in rule.kinds)
        and (not rule.channels or channel in rule.channels)
        and (not rule.tiers or tier in rule.tiers)
        and (not rule.tags or bool(set(rule.tags) & set(tags)))
    )


async def choose_team(
    ctx: crmkit.TenantContext,
    settings: CasesSettings,
    kind: CaseKind,
    channel: str,
    customer: crmkit.Customer,
) -> str | None:
    """The first rule that matches the case and its customer names the team."""
    tier = None
    if any(rule.tiers for rule in settings.routing):
        tier = await ctx.session.scalar(
            select(CustomerTier.tier).where(CustomerTier.customer_id == customer.id)
        )
    for rule in settings.routing:
        if _matches(rule, kind, channel, tier, customer.tag_names):
            return rule.team
    return settings.default_team


async def choose_agent(
    ctx: crmkit.TenantContext, settings: CasesSettings, team_name: str
) -> str | None:
    """The next agent after the team's last pick who has room; ``None`` when all are full.

    The cursor row is locked (PostgreSQL) so two cases opened at once in one team go to
    different agents rather than both to the same one.
    """
    team = settings.team(team_name)
    if team is None or not team.agents:
        return None
    cursor = await ctx.session.get(RoutingCursor, (ctx.tenant_id, team_name), with_for_update=True)
    if cursor is None:
        cursor = RoutingCursor(team=team_name, last_agent=None)
        ctx.session.add(cursor)
    open_cases = dict(
        (
            await ctx.session.execute(
                select(Case.assignee, func.count())
                .where(Case.assignee.in_(team.agents), Case.status.in_(OPEN_STATUSES))
                .group_by(Case.assignee)
            )
        ).all()
    )
    start = team.agents.index(cursor.last_agent) + 1 if cursor.last_agent in team.agents else 0
    for offset in range(len(team.agents)):
        agent = team.agents[(start + offset) % len(team.agents)]
        if open_cases.get(agent, 0) < team.open_case_limit:
            cursor.last_agent = agent
            return agent
    return None
