"""One package that cannot be stored as it is: the same outcome on SQLite, PostgreSQL and MariaDB.

The rest of the catalogue lands; the odd package keeps its previous version and is not removed; the
run is `incomplete` (exit 3) and names the package, on stderr and in sync_runs.error. A package
without a usable id cannot keep anything (we do not know which it is), so nothing is removed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import Column, MetaData, String, Table, create_engine

from etl.dialects import BulkInsert
from etl.errors import DatabaseError
from etl.testing.catalogue import synthetic_catalogue

from .helpers import catalogue_tables, current_versions, expected_catalogue, listed_catalogue, query, sync_in_fives

ODD = 6  # the odd package's place in the catalogue: page 2 at five packages a page


def _huge_integer(package: dict[str, Any]) -> str:
    package["memory_in_gb"] = 2**64
    return "memory_in_gb is 18446744073709551616, beyond a 64-bit integer"


def _nul_in_name(package: dict[str, Any]) -> str:
    package["name"] = "PKG\x00-00007"
    return "name is 'PKG\\x00-00007', with a NUL character"


def _half_a_surrogate(package: dict[str, Any]) -> str:
    package["name"] = "ROCK-\ud83d"  # the fake API sends it as "ROCK-\ud83d": valid JSON
    return "name is 'ROCK-\\ud83d', with half a surrogate pair (not UTF-8 text)"


def _text_for_number(package: dict[str, Any]) -> str:
    package["cpu_cores"] = "2"
    return "cpu_cores is '2', not a whole number"


def _long_group_id(package: dict[str, Any]) -> str:
    package["group"] = {"id": "vmpkgrp_" + "x" * 248, "name": "Wide"}
    return "group.id is 256 characters long, over 255"


ODD_KINDS = [_huge_integer, _nul_in_name, _half_a_surrogate, _text_for_number, _long_group_id]


@pytest.fixture
def synced(cli, database_url, api):
    """Eight packages synced; then the API lists one changed, one gone and one new (all good)."""
    api.packages = synthetic_catalogue(8)
    assert sync_in_fives(cli, database_url, api).exit_code == 0
    before = catalogue_tables(database_url)
    gone = api.packages.pop(2)
    api.packages[0]["storage_in_gb"] += 1
    api.packages.append(synthetic_catalogue(1, seed=9)[0])
    api.requests.clear()
    return {"before": before, "gone": gone["id"], "odd": api.packages[ODD]["id"]}


def rows_of(tables: dict[str, list[tuple[Any, ...]]], table: str, package_id: str) -> list[tuple[Any, ...]]:
    return [row for row in tables[table] if package_id in row]


@pytest.mark.parametrize("spoil", ODD_KINDS)
def test_an_odd_package_keeps_its_version_and_the_rest_lands(
    cli, database_url, api, synced, spoil: Callable[[dict[str, Any]], str]
):
    odd_id = synced["odd"]
    good_version = dict(api.packages[ODD], group=dict(api.packages[ODD]["group"]))
    reason = spoil(api.packages[ODD])
    line = f"1 package not stored: {odd_id}: {reason}"

    result = sync_in_fives(cli, database_url, api)

    assert result.exit_code == 3, result.err
    assert result.err == f"katapult-etl: {line}\n"
    assert result.out.startswith(
        # pages=4: the package gone is confirmed by a second walk (which sees the odd package's id).
        "sync incomplete: scope=public api=public pages=4 packages_seen=7 created=1 updated=1 restored=0 "
        "removed=1 unchanged=5 "
    )
    assert query(database_url, "SELECT status, error, removed FROM sync_runs ORDER BY id") == [
        ("succeeded", None, 0),
        ("incomplete", line, 1),
    ]
    # Everything else landed: the odd package is still listed, as it was before.
    landed = [good_version if package["id"] == odd_id else package for package in api.packages]
    assert listed_catalogue(database_url) == expected_catalogue(landed)
    assert current_versions(database_url) == expected_catalogue(landed)
    after = catalogue_tables(database_url)
    for table in ("packages", "package_snapshots"):
        assert rows_of(after, table, odd_id) == rows_of(synced["before"], table, odd_id)
    assert query(database_url, "SELECT unlisted_at FROM package_listings WHERE package_id = :id", id=odd_id) == [
        (None,)
    ]
    assert query(database_url, "SELECT removed_at IS NOT NULL FROM packages WHERE id = :id", id=synced["gone"]) == [
        (True,)
    ]

    # Katapult fixes it: the next run stores it like any package.
    api.packages[ODD] = good_version
    assert sync_in_fives(cli, database_url, api).exit_code == 0
    assert listed_catalogue(database_url) == expected_catalogue(api.packages)


def test_an_odd_new_package_is_not_created_and_the_run_names_it(cli, database_url, api, synced):
    newcomer = api.packages[-1]
    newcomer["memory_in_gb"] = -(2**63) - 1
    line = f"1 package not stored: {newcomer['id']}: memory_in_gb is -9223372036854775809, beyond a 64-bit integer"

    result = sync_in_fives(cli, database_url, api)

    assert (result.exit_code, result.err) == (3, f"katapult-etl: {line}\n")
    assert query(database_url, "SELECT COUNT(*) FROM packages WHERE id = :id", id=newcomer["id"]) == [(0,)]
    assert listed_catalogue(database_url) == expected_catalogue(api.packages[:-1])
    assert query(database_url, "SELECT status, error FROM sync_runs ORDER BY id DESC LIMIT 1") == [("incomplete", line)]


def test_every_odd_package_is_named_once(cli, database_url, api, synced):
    for index, spoil in zip((1, ODD), (_text_for_number, _nul_in_name), strict=True):
        spoil(api.packages[index])
    first, second = api.packages[1]["id"], api.packages[ODD]["id"]
    line = (
        f"2 packages not stored: {first}: cpu_cores is '2', not a whole number; "
        f"{second}: name is 'PKG\\x00-00007', with a NUL character"
    )

    result = sync_in_fives(cli, database_url, api)

    assert (result.exit_code, result.err) == (3, f"katapult-etl: {line}\n")
    assert query(database_url, "SELECT status, error FROM sync_runs ORDER BY id DESC LIMIT 1") == [("incomplete", line)]


def _without_id(package: dict[str, Any]) -> str:
    del package["id"]
    return "a package has no id (name 'PKG-00008')"


def _long_id(package: dict[str, Any]) -> str:
    package["id"] = "vmpkg_" + "y" * 250
    return "a package has an id of 256 characters, over 255 (name 'PKG-00008')"


@pytest.mark.parametrize("spoil", [_without_id, _long_id])
def test_a_package_without_a_usable_id_lets_nothing_be_removed(cli, database_url, api, synced, spoil):
    odd_id = synced["odd"]
    message = spoil(api.packages[ODD])
    line = (
        f"1 package not stored: page 2: {message}; "
        "nothing removed: a package without a usable id could be any package the walk missed"
    )

    result = sync_in_fives(cli, database_url, api)

    assert (result.exit_code, result.err) == (3, f"katapult-etl: {line}\n")
    assert "created=1 updated=1 restored=0 removed=0 unchanged=5 " in result.out
    assert query(database_url, "SELECT status, error, removed FROM sync_runs ORDER BY id DESC LIMIT 1") == [
        ("incomplete", line, 0)
    ]
    # The package without an id cannot be told apart: it and the one gone both stay listed.
    assert query(database_url, "SELECT COUNT(*) FROM packages WHERE removed_at IS NOT NULL") == [(0,)]
    assert query(database_url, "SELECT COUNT(*) FROM package_listings WHERE unlisted_at IS NOT NULL") == [(0,)]
    after = catalogue_tables(database_url)
    for table in ("packages", "package_snapshots"):
        assert rows_of(after, table, odd_id) == rows_of(synced["before"], table, odd_id)
    assert len(api.requests) == 2  # not walked twice: the package was seen, only not stored


def test_a_dry_run_reports_an_odd_package_the_same_way(cli, database_url, api, synced):
    landed = catalogue_tables(database_url)
    reason = _half_a_surrogate(api.packages[ODD])
    line = f"1 package not stored: {synced['odd']}: {reason}"

    result = sync_in_fives(cli, database_url, api, "--dry-run")

    assert (result.exit_code, result.err) == (3, f"katapult-etl: {line}\n")
    assert result.out.startswith(
        "dry run: scope=public api=public pages=4 packages_seen=7 created=1 updated=1 restored=0 removed=1 unchanged=5 "
    )
    assert catalogue_tables(database_url) == landed
    assert query(database_url, "SELECT COUNT(*) FROM sync_runs") == [(1,)]


def test_a_database_error_while_staging_is_one_line(database_url):
    """PostgreSQL's COPY goes around SQLAlchemy: its errors too must come as a DatabaseError."""
    metadata = MetaData()
    table = Table("staged", metadata, Column("id", String(16), nullable=False), prefixes=["TEMPORARY"])
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            table.create(connection)
            with pytest.raises(DatabaseError) as failed:
                BulkInsert(table, ("id",), engine.dialect).execute(connection, [("a",), (None,)])
    finally:
        engine.dispose()

    message = str(failed.value)
    assert message.startswith("database error while staging a page: ")
    assert "\n" not in message and "null" in message.lower()
