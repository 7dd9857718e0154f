"""Thin wrappers around third-party services; a version bump should touch one file here."""
