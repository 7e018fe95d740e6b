"""The migrations build exactly the schema the models describe, from empty, on every database."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from etl.database import head_revision, open_engine, upgrade
from etl.dialects import include_in_schema
from etl.models import Base

from .helpers import scalar

TABLES = {"alembic_version", "package_groups", "packages", "package_listings", "package_snapshots", "sync_runs"}


def test_upgrading_from_empty_reaches_head(database_url):
    engine = open_engine(database_url)
    upgrade(engine)
    upgrade(engine)  # a second upgrade is a no-op
    engine.dispose()

    assert scalar(database_url, "SELECT version_num FROM alembic_version") == head_revision()
    engine = create_engine(database_url)
    assert set(inspect(engine).get_table_names()) >= TABLES
    engine.dispose()


def test_models_and_migrations_agree(database_url):
    engine = open_engine(database_url)
    upgrade(engine)
    with engine.connect() as connection:
        options = {"compare_type": True, "include_object": include_in_schema(connection.dialect.name)}
        context = MigrationContext.configure(connection, opts=options)
        differences = compare_metadata(context, Base.metadata)
    engine.dispose()

    assert differences == []


def test_a_new_sqlite_file_is_readable_by_its_owner_only(tmp_path):
    path = tmp_path / "private.db"
    engine = open_engine(f"sqlite:///{path}")
    upgrade(engine)
    engine.dispose()

    assert path.stat().st_mode & 0o777 == 0o600
