"""The views current_packages, package_changes and latest_sync_runs, and the columns they rest on."""

from __future__ import annotations

from alembic import command
from sqlalchemy import create_engine, inspect, select

from etl.database import alembic_config, head_revision, open_engine, upgrade
from etl.reports import PACKAGE_CHANGES
from etl.testing.catalogue import synthetic_catalogue
from etl.testing.fakeapi import DEFAULT_TOKEN, Fault

from .helpers import query, scalar, sync_ok
from .scenario import ROCK_1, ROCK_3, ROCK_6, ROCK_12, run_times, three_runs

VIEWS = {"current_packages", "latest_sync_runs", "package_changes"}
EVENTS = (
    "SELECT package_id, permalink, change_type, sync_run_id, changed_fields FROM package_changes "
    "WHERE change_type <> 'created' ORDER BY sync_run_id, change_type, permalink"
)


def test_package_changes_has_one_row_per_event(cli, database_url, api):
    three_runs(cli, database_url, api)

    assert query(database_url, EVENTS) == [
        (ROCK_12, "rock-12", "removed", 2, None),
        (ROCK_6, "rock-6", "removed", 2, None),
        (ROCK_1, "rock-1", "updated", 2, "cpu_cores,memory_in_gb"),
        (ROCK_3, "rock-3", "updated", 2, "raw"),
        (ROCK_12, "rock-12", "restored", 3, ""),
        (ROCK_6, "rock-6", "restored", 3, "storage_in_gb"),
    ]
    assert query(
        database_url,
        "SELECT change_type, sync_run_id, COUNT(*), COUNT(changed_fields) FROM package_changes "
        "WHERE change_type = 'created' GROUP BY change_type, sync_run_id",
    ) == [("created", 1, 20, 0)]


def test_each_change_happened_during_its_run(cli, database_url, api):
    three_runs(cli, database_url, api)
    times = run_times(database_url)

    engine = create_engine(database_url)
    with engine.connect() as connection:
        rows = connection.execute(select(PACKAGE_CHANGES.c.sync_run_id, PACKAGE_CHANGES.c.changed_at)).all()
    engine.dispose()

    instants = {run_id: {at for run, at in rows if run == run_id} for run_id in times}
    assert [len(at) for at in instants.values()] == [1, 1, 1]  # a run's changes share its merge time
    for run_id, (started, finished) in times.items():
        assert started <= min(instants[run_id]) <= finished


def test_versions_name_what_changed_and_the_run_that_closed_them(cli, database_url, api):
    three_runs(cli, database_url, api)

    assert query(
        database_url,
        "SELECT sync_run_id, changed_fields, closed_by_sync_run_id FROM package_snapshots "
        "WHERE package_id = :id ORDER BY valid_from",
        id=ROCK_6,
    ) == [(1, None, 2), (3, "storage_in_gb", None)]
    assert query(
        database_url,
        "SELECT sync_run_id, changed_fields, closed_by_sync_run_id FROM package_snapshots "
        "WHERE package_id = :id ORDER BY valid_from",
        id=ROCK_1,
    ) == [(1, None, 2), (2, "cpu_cores,memory_in_gb", None)]


def test_a_renamed_group_is_a_changed_field(cli, database_url, api):
    sync_ok(cli, database_url, api)
    for package in api.packages:
        if package["group"]:
            package["group"]["name"] = "Standard"
    sync_ok(cli, database_url, api)

    assert query(
        database_url, "SELECT DISTINCT change_type, changed_fields FROM package_changes WHERE sync_run_id = 2"
    ) == [("updated", "group_name")]


def test_current_packages_lists_what_is_listed_with_its_groups_name(cli, database_url, api):
    sync_ok(cli, database_url, api)
    api.packages = api.packages[1:]
    sync_ok(cli, database_url, api)

    assert scalar(database_url, "SELECT COUNT(*) FROM current_packages") == 19
    assert scalar(database_url, "SELECT COUNT(*) FROM current_packages WHERE id = :id", id=ROCK_1) == 0
    assert query(
        database_url,
        "SELECT id, name, permalink, cpu_cores, memory_in_gb, storage_in_gb, group_id, group_name "
        "FROM current_packages WHERE permalink = 'rock-3'",
    ) == [(ROCK_3, "ROCK-3", "rock-3", 1, 3, 25, "vmpkgrp_P5kCZvAtvXRC3sVl", "Standard vCPU")]


def test_latest_sync_runs_has_the_last_run_of_each_scope(cli, database_url, api):
    private = synthetic_catalogue(2, seed=3, privacy="private")
    api.organizations = {"org_acme": {"sub_domain": "acme", "packages": private}}
    sync_ok(cli, database_url, api)
    sync_ok(cli, database_url, api, "--organization-sub-domain", "acme", env={"KATAPULT_API_TOKEN": DEFAULT_TOKEN})
    api.add_fault(Fault(error_code="route_not_found"))
    failed = cli("sync", "--database-url", database_url, "--api-url", api.url)
    assert failed.exit_code == 1

    assert query(database_url, "SELECT id, scope, status, error FROM latest_sync_runs ORDER BY scope") == [
        (2, "organization[sub_domain]=acme", "succeeded", None),
        (
            3,
            "public",
            "failed",
            "Katapult API refused the request: HTTP 404 route_not_found: No route matches the path and method provided",
        ),
    ]


def test_the_migration_fills_the_new_columns_of_history_written_before_it(cli, database_url, api):
    three_runs(cli, database_url, api)
    columns = "SELECT id, changed_fields, closed_by_sync_run_id FROM package_snapshots ORDER BY id"
    written_by_the_merge = query(database_url, columns)

    engine = open_engine(database_url)
    with engine.begin() as connection:
        command.downgrade(alembic_config(connection), "0001")
    assert VIEWS.isdisjoint(inspect(engine).get_view_names())
    upgrade(engine)
    views = set(inspect(engine).get_view_names())
    engine.dispose()

    assert scalar(database_url, "SELECT version_num FROM alembic_version") == head_revision()
    assert query(database_url, columns) == written_by_the_merge
    assert views >= VIEWS
