"""Drift monitoring: pure config and verdict logic; Evidently lives in persona.adapters."""
