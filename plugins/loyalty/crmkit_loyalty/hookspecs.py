"""Events the loyalty plugin declares for other plugins (``PluginInfo.hookspecs``).

Churn and channels implement them with ``@crmkit.hookimpl`` like the core's hooks. Data
is plain JSON: ids as strings, no personal data.
"""

from __future__ import annotations

import crmkit


@crmkit.event_hookspec(scope="loyalty:read")
def loyalty_tier_changed(event: crmkit.DomainEvent, ctx: crmkit.TenantContext) -> None:
    """A customer's tier changed, up at once or down after the grace period.

    ``event.subject_id`` is the customer's id; ``event.data`` has ``customer_id``,
    ``old_tier`` and ``new_tier`` (tier names of the tenant's settings).
    """


@crmkit.event_hookspec(scope="loyalty:read")
def loyalty_points_expiring(event: crmkit.DomainEvent, ctx: crmkit.TenantContext) -> None:
    """Some of a customer's points expire within the tenant's ``expiry_warning_days``.

    ``event.data`` has ``customer_id``, ``points`` (int: the points of the lots newly
    in the window) and ``expires_on`` (ISO date of the first of them). Fired once per
    lot, by the daily expiry job.
    """
