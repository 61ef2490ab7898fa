"""Hooks this plugin declares for other plugins (named by ``PluginInfo.hookspecs``).

Other plugins implement them with ``@crmkit.hookimpl`` exactly like the core's hooks.
"""

from __future__ import annotations

import crmkit


@crmkit.event_hookspec(scope="notes:read")
def notes_note_added(event: crmkit.DomainEvent, ctx: crmkit.TenantContext) -> None:
    """A note was added to a customer, after commit, at least once.

    ``event.subject_id`` is the note's id and ``event.data["customer_id"]`` the
    customer's. The body is not in the event (events reach webhooks and logs; notes
    may hold personal data): load the note if you need it.
    """
