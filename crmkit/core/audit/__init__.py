"""The audit trail: every change, and every read of personal data, as a per-tenant
hash chain that checkpoints signed outside the database make tamper-evident."""
