"""The loopback servers' fixtures (defined in channels_loopback.py)."""

from channels_loopback import gateway, loopback, mailbox

__all__ = ["gateway", "loopback", "mailbox"]
