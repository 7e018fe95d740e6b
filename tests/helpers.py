"""Helpers the tests share, in one place: run `katapult-etl sync` against the fake API, read a database with
plain SQL (every row of every table, to compare before and after), empty one for the next test.

(Not in conftest.py: conftest holds fixtures, which pytest finds by itself; a test imports helpers.)
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url

from etl.records import package_row

CATALOGUE_TABLES = ("package_groups", "packages", "package_listings", "package_snapshots")


def sync(cli, database_url: str, api, *extra: str, per_page: int | None = None, env=None):
    """`katapult-etl sync` against the fake API, `per_page` packages a page (None: the command's default)."""
    paging = () if per_page is None else ("--per-page", str(per_page))
    return cli("sync", "--database-url", database_url, "--api-url", api.url, *paging, *extra, env=env)


# Five a page: the fault tests' catalogue of 12 packages is three pages, so a fault can strike mid-walk.
sync_in_fives = partial(sync, per_page=5)


def sync_ok(cli, database_url: str, api, *extra: str, **options: Any):
    """`sync` that must succeed: for tests whose subject is what the runs leave, not the run."""
    result = sync(cli, database_url, api, *extra, **options)
    assert result.exit_code == 0, result.err
    return result


def sqlite_url(folder: Path) -> str:
    """A SQLite database in `folder`: for what does not depend on the database."""
    return f"sqlite:///{folder / 'katapult.db'}"


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


def catalogue_tables(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every catalogue table: what a failed run must leave exactly as it was."""
    return {table: sorted(query(url, f"SELECT * FROM {table}"), key=repr) for table in CATALOGUE_TABLES}


def runs(url: str) -> list[tuple[Any, ...]]:
    return query(url, "SELECT status, error FROM sync_runs ORDER BY id")


def every_table(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table in the database, whoever made it (None: the database is empty)."""
    engine = create_engine(url)
    try:
        names = sorted(inspect(engine).get_table_names())
        with engine.connect() as connection:
            return {
                name: sorted((tuple(row) for row in connection.execute(text(f"SELECT * FROM {name}"))), key=repr)
                for name in names
            }
    finally:
        engine.dispose()


def listed_catalogue(url: str) -> list[tuple[str, str]]:
    """(id, content_hash) of every package not removed, in id order."""
    return query(url, "SELECT id, content_hash FROM packages WHERE removed_at IS NULL ORDER BY id")


def expected_catalogue(packages: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return sorted((package["id"], package_row(package)["content_hash"]) for package in packages)


def current_versions(url: str) -> list[tuple[str, str]]:
    """(package id, content_hash) of every open version: one per listed package, never two."""
    return query(
        url, "SELECT package_id, content_hash FROM package_snapshots WHERE valid_to IS NULL ORDER BY package_id"
    )
