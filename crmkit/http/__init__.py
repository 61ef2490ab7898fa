"""The HTTP edge: the GraphQL endpoints, the operator API, the OAuth routes and the
plugins' own routes."""
