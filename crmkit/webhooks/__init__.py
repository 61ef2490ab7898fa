"""Signed webhooks to partner apps: subscriptions (models), delivery (service), GraphQL."""
