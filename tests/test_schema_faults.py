"""Migration 0004 and what it is for: wide values stored exactly, ids that differ by a trailing space,
latest_sync_runs by id, users' views and indexes kept, a database from a newer release refused, and a
migration killed half-way on MariaDB finished by the next upgrade."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from sqlalchemy import create_engine, inspect, select, text

from etl.database import head_revision, open_engine, upgrade
from etl.models import Package, PackageSnapshot, SyncRun
from etl.testing.catalogue import public_catalogue

from .helpers import every_table, kill_upgrade_waiting_on_lock, migrate_to, query, scalar, sync

# -- item 5: one package, one outcome --------------------------------------------------------------


def test_a_package_of_wide_values_is_stored_exactly(cli, database_url, api):
    wide = api.packages[0]
    wide.update(name="N" * 300, cpu_cores=2**31, memory_in_gb=2**63 - 1, notes="é" * 70_000)
    wide["group"]["name"] = "G" * 300

    result = sync(cli, database_url, api)

    assert result.exit_code == 0, result.err
    engine = create_engine(database_url)
    with engine.connect() as connection:
        stored = connection.execute(
            select(Package.name, Package.cpu_cores, Package.memory_in_gb).where(Package.id == wide["id"])
        ).one()
        raw, group_name = connection.execute(
            select(PackageSnapshot.raw, PackageSnapshot.group_name).where(PackageSnapshot.package_id == wide["id"])
        ).one()
    engine.dispose()
    assert tuple(stored) == ("N" * 300, 2**31, 2**63 - 1)
    assert group_name == "G" * 300
    assert len(json.dumps(raw).encode()) > 65_536
    assert raw == wide
    assert scalar(database_url, "SELECT COUNT(*) FROM packages") == 20


def test_ids_that_differ_by_a_trailing_space_are_two_packages(cli, database_url, api):
    first = public_catalogue()[0]
    second = {**first, "id": first["id"] + " ", "name": "SPACED", "permalink": "spaced"}
    api.packages = [first, second]

    runs = [sync(cli, database_url, api), sync(cli, database_url, api)]

    assert [run.exit_code for run in runs] == [0, 0], [run.err for run in runs]
    assert sorted(query(database_url, "SELECT id, name FROM packages")) == [
        (first["id"], first["name"]),
        (first["id"] + " ", "SPACED"),
    ]
    assert query(database_url, "SELECT status, packages_seen, created FROM sync_runs ORDER BY id") == [
        ("succeeded", 2, 2),
        ("succeeded", 2, 0),
    ]


# -- item 3: latest_sync_runs ----------------------------------------------------------------------


def test_latest_sync_runs_is_the_newest_run_by_id_not_by_clock(database_url):
    engine = open_engine(database_url)
    upgrade(engine)
    later, earlier = datetime(2026, 1, 2, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC)
    counts = dict.fromkeys(
        (
            "pages_fetched",
            "requests",
            "retries",
            "packages_seen",
            "created",
            "updated",
            "restored",
            "removed",
            "unchanged",
        ),
        0,
    )
    with engine.begin() as connection:
        for run_id, started in ((1, later), (2, earlier)):  # the clock went back between the two runs
            connection.execute(
                SyncRun.__table__.insert().values(
                    id=run_id,
                    scope="public",
                    api="public",
                    started_at=started,
                    finished_at=started,
                    status="succeeded",
                    **counts,
                )
            )
    engine.dispose()

    assert query(database_url, "SELECT id, scope FROM latest_sync_runs") == [(2, "public")]


# -- item 4: users' objects, newer databases, killed migrations -------------------------------------

USER_VIEW = (
    "CREATE VIEW my_small_packages AS SELECT package_id, name, cpu_cores FROM package_snapshots WHERE cpu_cores < 4"
)
USER_VIEW_ON_VIEW = "CREATE VIEW my_small_count AS SELECT COUNT(*) AS small FROM my_small_packages"
SQLITE_VIEW_TRIGGER = "CREATE TRIGGER my_no_delete INSTEAD OF DELETE ON my_small_packages BEGIN SELECT 1; END"
USER_INDEX = "CREATE INDEX my_permalink_memory ON package_snapshots (permalink, memory_in_gb)"


def test_a_users_views_and_indexes_survive_the_upgrade(cli, database_url, api):
    migrate_to(database_url, "0003")
    engine = create_engine(database_url)
    with engine.begin() as connection:
        for sql in (USER_VIEW, USER_VIEW_ON_VIEW, USER_INDEX):
            connection.execute(text(sql))
        if connection.dialect.name == "sqlite":  # a view's trigger goes with its view there
            connection.execute(text(SQLITE_VIEW_TRIGGER))
    engine.dispose()

    result = sync(cli, database_url, api)  # a sync upgrades first

    assert result.exit_code == 0, result.err
    assert scalar(database_url, "SELECT version_num FROM alembic_version") == head_revision()
    engine = create_engine(database_url)
    schema = inspect(engine)
    assert {"my_small_packages", "my_small_count"} <= set(schema.get_view_names())
    assert "my_permalink_memory" in {index["name"] for index in schema.get_indexes("package_snapshots")}
    engine.dispose()
    small = sorted((package["id"], package["name"]) for package in api.packages if package["cpu_cores"] < 4)
    assert small  # the view has something to answer
    assert sorted(query(database_url, "SELECT package_id, name FROM my_small_packages")) == small
    assert query(database_url, "SELECT small FROM my_small_count") == [(len(small),)]
    if database_url.startswith("sqlite"):
        assert query(database_url, "SELECT name FROM sqlite_master WHERE type = 'trigger'") == [("my_no_delete",)]


NEWER = "9999"


@pytest.mark.parametrize("command_line", [("sync",), ("db", "upgrade"), ("runs",), ("history", "rock-1"), ("changes",)])
def test_a_database_made_by_a_newer_release_is_refused_and_left_alone(cli, database_url, api, command_line):
    engine = open_engine(database_url)
    upgrade(engine)
    engine.dispose()
    assert sync(cli, database_url, api).exit_code == 0
    engine = create_engine(database_url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = :newer"), {"newer": NEWER})
    engine.dispose()
    before = every_table(database_url)

    extra = ("--api-url", api.url) if command_line == ("sync",) else ()
    result = cli(*command_line, "--database-url", database_url, *extra)

    assert (result.exit_code, result.err) == (
        1,
        f"katapult-etl: the database was made by a newer katapult-etl: revision {NEWER} is unknown to this "
        f"release (newest known: {head_revision()}); upgrade katapult-etl\n",
    )
    assert every_table(database_url) == before


# (revision the database is at, table another session reads, the statement the upgrade then waits on)
KILL_POINTS = [
    ("0002", "package_snapshots", "ALTER TABLE package_snapshots DROP FOREIGN KEY"),  # inside 0003
    ("0003", "sync_runs", "ALTER TABLE sync_runs CONVERT TO"),  # inside 0004, tables half converted
]


@pytest.mark.parametrize(("start", "held", "waiting"), KILL_POINTS)
def test_a_migration_killed_half_way_on_mariadb_finishes_on_the_next_upgrade(
    cli, api, mariadb_url, start, held, waiting
):
    migrate_to(mariadb_url, start)
    kill_upgrade_waiting_on_lock(mariadb_url, held, waiting)
    # Killed half-way: still at the revision it started from, with its first steps done.
    assert scalar(mariadb_url, "SELECT version_num FROM alembic_version") == start
    assert _foreign_keys(mariadb_url).isdisjoint(
        {"fk_packages_group_id_package_groups", "fk_package_listings_package_id_packages"}
    )

    again = cli("db", "upgrade", "--database-url", mariadb_url)
    synced = sync(cli, mariadb_url, api)

    assert (again.exit_code, again.err) == (0, "")
    assert synced.exit_code == 0, synced.err
    assert scalar(mariadb_url, "SELECT version_num FROM alembic_version") == head_revision()
    assert {
        "fk_packages_group_id_package_groups",
        "fk_package_listings_package_id_packages",
        "fk_package_snapshots_package_id_packages",
    } <= _foreign_keys(mariadb_url)
    assert scalar(mariadb_url, "SELECT COUNT(*) FROM current_packages") == len(api.packages)


def _foreign_keys(url: str) -> set[str]:
    return {
        name
        for (name,) in query(
            url,
            "SELECT constraint_name FROM information_schema.table_constraints "
            "WHERE constraint_schema = DATABASE() AND constraint_type = 'FOREIGN KEY'",
        )
    }
