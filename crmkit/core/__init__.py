"""The small core: customers, consent and audit, and the hook contract."""
