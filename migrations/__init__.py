"""Alembic migrations of fluxbot's store (run them with `fluxbot db upgrade`)."""
