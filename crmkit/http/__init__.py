"""The HTTP edge: what crmkit serves besides GraphQL's own handlers."""
