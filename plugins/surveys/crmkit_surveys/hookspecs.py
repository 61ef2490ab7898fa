"""Events this plugin declares for other plugins (named by ``PluginInfo.hookspecs``).

The subject is the response (``"SurveyResponse"``, its id); the data is plain JSON. No
answer text travels in an event: it is personal data and events reach webhooks and logs.
"""

from __future__ import annotations

import crmkit


@crmkit.event_hookspec(scope="surveys:read")
def surveys_response_recorded(event: crmkit.DomainEvent, ctx: crmkit.TenantContext) -> None:
    """A customer answered a survey: ``customer_id``, ``survey_id``, ``version`` and the
    response's headline scores ``nps``, ``csat`` and ``ces`` (each an int or ``None``)."""


@crmkit.event_hookspec(scope="surveys:read")
def surveys_detractor(event: crmkit.DomainEvent, ctx: crmkit.TenantContext) -> None:
    """A response was a detractor's: ``metric`` ``"nps"`` (score 0-6) or ``"csat"``
    (score 1-2), with ``score``, ``customer_id`` and ``survey_id``. Once per response,
    NPS first."""
