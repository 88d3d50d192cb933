"""Governance: key custody, erasure."""
