"""Alembic migrations of the product database (see storage/migrate.py)."""
