"""Helpers shared by the fault tests: run `sync`, and read every row of every table to compare."""

from __future__ import annotations

from typing import Any

from sqlalchemy import create_engine, inspect, text

from etl.records import package_row

from .helpers import query

CATALOGUE_TABLES = ("package_groups", "packages", "package_listings", "package_snapshots")
PER_PAGE = "5"


def sync(cli, database_url, api, *extra, env=None):
    """`katapult-etl sync` against the fake API; five packages a page unless `extra` says otherwise."""
    return cli("sync", "--database-url", database_url, "--api-url", api.url, "--per-page", PER_PAGE, *extra, env=env)


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
