"""Events the churn plugin declares for other plugins and partner apps
(``PluginInfo.hookspecs``). Subject: the alert (``"ChurnAlert"``, its id). Data is plain
JSON, ids as strings; the manager's note never travels in an event."""

from __future__ import annotations

import crmkit


@crmkit.event_hookspec(scope="churn:read")
def churn_alert_opened(event: crmkit.DomainEvent, ctx: crmkit.TenantContext) -> None:
    """The score opened an alert: ``customer_id``, ``score`` (0-100), ``band`` (``medium``
    or ``high``), ``reasons`` (``[{feature, contribution}]``, largest first) and
    ``assigned_to`` (the customer's relationship manager, or ``None``)."""


@crmkit.event_hookspec(scope="churn:read")
def churn_alert_resolved(event: crmkit.DomainEvent, ctx: crmkit.TenantContext) -> None:
    """An alert was resolved: ``customer_id``, ``score``, ``band``, ``outcome``
    (``retained``, ``lost``, ``false_alarm``) and ``action_step`` (the playbook step
    taken, or ``None``)."""


@crmkit.event_hookspec(scope="churn:read")
def churn_action_requested(event: crmkit.DomainEvent, ctx: crmkit.TenantContext) -> None:
    """A manager took a playbook step another plugin carries out: ``kind`` is
    ``winback_offer`` (for loyalty) or ``case`` (for cases), with ``customer_id``,
    ``step`` (the step's key) and ``idempotency_key``. Sent only while the tenant has
    that plugin enabled; a message step goes to channels as ``channels_send_requested``."""
