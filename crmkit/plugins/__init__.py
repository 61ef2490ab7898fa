"""Plugin machinery: discovery, compatibility, per-tenant enablement and hook calling."""
