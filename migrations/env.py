"""Alembic environment: takes a connection handed in by katapult-etl, or DATABASE_URL from the shell."""

from __future__ import annotations

import os

from alembic import context

from etl.config import DEFAULT_DATABASE_URL
from etl.database import open_engine
from etl.models import Base

config = context.config
target_metadata = Base.metadata


def include_object(obj, name, type_, reflected, compare_to):  # type: ignore[no-untyped-def]
    # MySQL has no partial indexes: there the one-current-version rule is kept by the merge alone.
    if type_ == "index" and name == "uq_package_snapshots_current":
        return context.get_context().dialect.name in ("postgresql", "sqlite")
    return True


def run_migrations(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        compare_type=True,
        render_as_batch=connection.dialect.name == "sqlite",
        include_object=include_object,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        run_migrations(connection)
        return
    engine = open_engine(os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL))
    with engine.connect() as connection:
        run_migrations(connection)
        connection.commit()
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("katapult-etl migrations run online only: set DATABASE_URL and run `katapult-etl db upgrade`")
run_migrations_online()
