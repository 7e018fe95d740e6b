"""Alembic environment: takes a connection handed in by katapult-etl, or DATABASE_URL from the shell."""

from __future__ import annotations

import os

from alembic import context

from etl.config import DEFAULT_DATABASE_URL
from etl.database import open_engine
from etl.dialects import include_in_schema
from etl.models import Base

config = context.config
target_metadata = Base.metadata


def run_migrations(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        compare_type=True,
        render_as_batch=connection.dialect.name == "sqlite",
        # MySQL has no partial indexes: there the one-current-version rule is kept by the merge alone.
        include_object=include_in_schema(connection.dialect.name),
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
