"""Gestor's load tests: `python -m bench SCENARIO` (see bench/README.md)."""
