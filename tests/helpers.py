"""Helpers the tests share, in one place: read a database with plain SQL, empty one for the next test.

(Not in conftest.py: conftest holds fixtures, which pytest finds by itself; a test imports helpers.)
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url


def empty_database(url: str) -> None:
    engine = create_engine(url)
    with engine.begin() as connection:
        backend = make_url(url).get_backend_name()
        if backend == "postgresql":
            connection.execute(text("DROP SCHEMA public CASCADE"))
            connection.execute(text("CREATE SCHEMA public"))
        elif backend in ("mysql", "mariadb"):
            _drop_everything_in_mysql(connection)
    engine.dispose()


def _drop_everything_in_mysql(connection: Any) -> None:
    """MySQL has no schema to drop and recreate: drop each view and table of the database instead, and
    give it back the server's default collation (the migrations change it)."""
    charset, collation = connection.execute(text("SELECT @@character_set_server, @@collation_server")).one()
    connection.execute(text(f"ALTER DATABASE CHARACTER SET {charset} COLLATE {collation}"))
    objects = connection.execute(
        text(
            "SELECT table_name, table_type FROM information_schema.tables "
            "WHERE table_schema = DATABASE() ORDER BY table_type = 'VIEW' DESC"
        )
    ).all()
    connection.execute(text("SET FOREIGN_KEY_CHECKS = 0"))
    for name, kind in objects:
        connection.execute(text(f"DROP {'VIEW' if kind == 'VIEW' else 'TABLE'} IF EXISTS `{name}`"))
    connection.execute(text("SET FOREIGN_KEY_CHECKS = 1"))


def query(url: str, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    """Rows of one SQL query, as plain tuples."""
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return [tuple(row) for row in connection.execute(text(sql), params)]
    finally:
        engine.dispose()


def scalar(url: str, sql: str, **params: Any) -> Any:
    rows = query(url, sql, **params)
    return rows[0][0]
