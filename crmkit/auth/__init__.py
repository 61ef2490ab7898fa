"""Access tokens, scopes, and (in time) the OAuth 2.0 authorization server."""
