"""Bulk import of customers, activities and consent decisions (CLI and GraphQL)."""
