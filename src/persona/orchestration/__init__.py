"""Mage integration: block entry functions and the headless runner."""
