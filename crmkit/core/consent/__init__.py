"""The consent ledger: customers' consent decisions, append-only, with their evidence.

Plugins use the public API in :mod:`crmkit`: ``crmkit.consent_allows`` before contacting
a customer or sharing data, ``crmkit.record_consent`` to record a decision (an SMS
"STOP", for instance), and the ``register_consent_purposes`` hook to declare purposes.
"""
