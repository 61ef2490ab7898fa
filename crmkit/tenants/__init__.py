"""Tenants: the institutions that use crmkit, and how their data is kept apart."""
