"""Alembic migration environment of the vault (run by :func:`dicomveil.vault.db.migrate`)."""
