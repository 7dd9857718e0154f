"""Stand-ins for external services that tests and demos cannot reach (stdlib only)."""
