"""Customers, their activity timeline, segment tags and lifecycle stage."""
