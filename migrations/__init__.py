"""Alembic migrations of the katapult-etl schema (shipped inside the package as etl.migrations)."""
