"""The same syncs into SQLite, PostgreSQL and MariaDB (or MySQL) leave the same rows in every table and view.

Surrogate keys and timestamps differ from one database to the next, so they are set aside: each
timestamp is replaced by its rank among the database's instants, which still shows which rows one merge
wrote, and that no two instants collapsed into one (as they would if microseconds were lost).
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Integer, MetaData, Table, create_engine, inspect, select

from etl.models import Base
from etl.testing.catalogue import synthetic_catalogue

from .helpers import empty_database

SERVER_URLS = ("TEST_DATABASE_URL", "TEST_MYSQL_URL")

pytestmark = pytest.mark.skipif(
    not all(os.environ.get(name) for name in SERVER_URLS),
    reason="comparing the three databases needs TEST_DATABASE_URL and TEST_MYSQL_URL",
)


def odd_packages() -> list[dict[str, Any]]:
    """Packages that test what a database keeps: ids differing only in case, 4-byte UTF-8, unknown keys."""
    rocket, twin = synthetic_catalogue(2, seed=5)
    rocket.update(id="vmpkg_CaseOnlyDiffers", name="ROCKET 🚀 Zürich «α»", launch_price={"amount": 5.5, "tags": ["ü"]})
    twin.update(id="vmpkg_caseonlydiffers", name="rocket 🚀 zürich «α»", group=None, icon=None)
    return [rocket, twin]


def catalogue_states() -> list[list[dict[str, Any]]]:
    """A first sync, an unchanged re-sync, a changed re-sync and one that brings the removed back."""
    first = synthetic_catalogue(40, groups=4) + odd_packages()
    changed = [dict(package) for package in first[5:]] + synthetic_catalogue(43, groups=4, seed=11)[40:]
    changed[0]["memory_in_gb"] += 1
    changed[1]["name"] = changed[1]["name"].lower()  # a rename that changes only case
    changed[2]["group"] = {"id": "vmpkgrp_NewGroup", "name": "Ünïcödé group ✓"}
    changed[-4]["name"] += " ☃"  # the twin whose id differs only in case
    return [first, first, changed, first[:3] + changed]


def test_sync_unchanged_and_changed_resyncs_give_identical_rows_on_the_three(cli, api, tmp_path):
    urls = {
        "sqlite": f"sqlite:///{tmp_path / 'katapult.db'}",
        "postgresql": os.environ["TEST_DATABASE_URL"],
        "mysql": os.environ["TEST_MYSQL_URL"],
    }
    empty_database(urls["postgresql"])
    empty_database(urls["mysql"])

    for state in catalogue_states():
        api.packages = state
        for kind, url in urls.items():
            result = cli("sync", "--database-url", url, "--api-url", api.url, "--per-page", "10")
            assert result.exit_code == 0, f"{kind}: {result.err}"

    contents = {kind: database_contents(url) for kind, url in urls.items()}
    assert len(contents["sqlite"]["package_snapshots"]) == 42 + 3 + 4 + 3
    assert contents["postgresql"] == contents["sqlite"]
    assert contents["mysql"] == contents["sqlite"]


def database_contents(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every table's and view's rows, sorted, with surrogate keys left out and timestamps as ranks."""
    engine = create_engine(url)
    try:
        views = MetaData()
        for name in inspect(engine).get_view_names():
            Table(name, views, autoload_with=engine)
        with engine.connect() as connection:
            raw = {
                table.name: [
                    tuple(_plain(value) for value in row)
                    for row in connection.execute(select(*_compared_columns(table)))
                ]
                for table in [*Base.metadata.sorted_tables, *views.sorted_tables]
            }
    finally:
        engine.dispose()
    instants = sorted({value for rows in raw.values() for row in rows for value in row if isinstance(value, datetime)})
    rank = {instant: f"instant {number}" for number, instant in enumerate(instants)}
    return {
        name: sorted((tuple(rank[v] if isinstance(v, datetime) else v for v in row) for row in rows), key=repr)
        for name, rows in raw.items()
    }


def _compared_columns(table: Table) -> list[Any]:
    """All columns but an auto-numbered primary key, whose values depend on each database's insert order."""
    return [
        column
        for column in table.columns
        if not (column.primary_key and isinstance(column.type, Integer) and column.autoincrement is not False)
    ]


def _plain(value: Any) -> Any:
    """One spelling per value: MySQL's views give booleans as 0/1, only PostgreSQL's datetimes are aware,
    and jsonb orders an object's keys its own way."""
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC).replace(tzinfo=None)
    return value
