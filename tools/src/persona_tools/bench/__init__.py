"""Benchmarks run by `make bench-*`; they print tables and save JSON under PERSONA_HOME/bench."""
