"""GraphQL: schema composition per plugin set, request context, scopes, errors, loaders."""
