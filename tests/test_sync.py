"""The sync job end to end: the fake Katapult API over real HTTP into a real database."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import Engine, event

from etl.testing.catalogue import public_catalogue, synthetic_catalogue
from etl.testing.fakeapi import DEFAULT_TOKEN, Fault

from .helpers import catalogue_tables, query, scalar, sync


def test_first_sync_of_the_public_catalogue(cli, database_url, api):
    result = sync(cli, database_url, api)

    assert result.exit_code == 0, result.err
    assert result.out.startswith(
        "sync succeeded: scope=public api=public pages=1 packages_seen=20 created=20 updated=0 "
        "restored=0 removed=0 unchanged=0 seconds="
    )
    assert result.err == ""
    assert [r.path for r in api.requests] == ["/public/v1/virtual_machine_packages"]
    assert api.requests[0].query == {"page": "1", "per_page": "200"}
    assert query(database_url, "SELECT id, name FROM package_groups") == [("vmpkgrp_P5kCZvAtvXRC3sVl", "Standard vCPU")]
    rock = query(
        database_url,
        "SELECT id, name, permalink, cpu_cores, ipv4_addresses, memory_in_gb, storage_in_gb, "
        "monthly_bandwidth_allowance_in_gb, privacy, use_dedicated_cpus, group_id, icon_url, removed_at "
        "FROM packages WHERE name = 'ROCK-1'",
    )
    assert rock == [
        (
            "vmpkg_dhG25G5SX3HrA5j5",
            "ROCK-1",
            "rock-1",
            1,
            1,
            1,
            10,
            1024,
            "public",
            False,
            "vmpkgrp_P5kCZvAtvXRC3sVl",
            None,
            None,
        )
    ]
    assert scalar(database_url, "SELECT COUNT(*) FROM package_snapshots WHERE valid_to IS NULL") == 20
    assert query(database_url, "SELECT status, pages_fetched, requests, packages_seen, created FROM sync_runs") == [
        ("succeeded", 1, 1, 20, 20)
    ]


@pytest.mark.parametrize("large_set", [False, True], ids=["totals", "large_set"])
def test_450_packages_in_20_groups_take_exactly_5_requests(cli, database_url, api, large_set):
    api.packages = synthetic_catalogue(450, groups=20)
    api.force_large_set = large_set

    result = sync(cli, database_url, api, "--per-page", "100")

    assert result.exit_code == 0, result.err
    # With totals the pages after the first are fetched concurrently, so their order varies.
    assert sorted(r.query["page"] for r in api.requests) == ["1", "2", "3", "4", "5"]
    assert scalar(database_url, "SELECT COUNT(*) FROM packages") == 450
    assert scalar(database_url, "SELECT COUNT(*) FROM package_snapshots") == 450
    assert scalar(database_url, "SELECT COUNT(*) FROM package_groups") == 20
    assert query(database_url, "SELECT pages_fetched, requests, packages_seen FROM sync_runs") == [(5, 5, 450)]


def test_large_set_with_a_full_last_page_ends_on_an_empty_page(cli, database_url, api):
    api.packages = synthetic_catalogue(400)
    api.force_large_set = True

    result = sync(cli, database_url, api, "--per-page", "100")

    assert result.exit_code == 0, result.err
    assert [r.query["page"] for r in api.requests] == ["1", "2", "3", "4", "5"]
    assert scalar(database_url, "SELECT COUNT(*) FROM packages") == 400


def test_unchanged_resync_adds_no_version(cli, database_url, api):
    api.packages = synthetic_catalogue(450)
    assert sync(cli, database_url, api, "--per-page", "100").exit_code == 0
    before = catalogue_tables(database_url)

    result = sync(cli, database_url, api, "--per-page", "100")

    assert result.exit_code == 0, result.err
    assert "created=0 updated=0 restored=0 removed=0 unchanged=450" in result.out
    after = catalogue_tables(database_url)
    assert after["package_snapshots"] == before["package_snapshots"]
    assert scalar(database_url, "SELECT COUNT(*) FROM package_snapshots") == 450


def test_changes_removals_and_arrivals_are_versioned(cli, database_url, api):
    api.packages = synthetic_catalogue(450)
    assert sync(cli, database_url, api, "--per-page", "100").exit_code == 0
    changed_ids = [p["id"] for p in api.packages[:10]]
    vanished_ids = [p["id"] for p in api.packages[10:15]]
    for package in api.packages[:10]:
        package["memory_in_gb"] += 1
    api.packages = api.packages[:10] + api.packages[15:] + synthetic_catalogue(453, seed=7)[450:]

    result = sync(cli, database_url, api, "--per-page", "100")

    assert result.exit_code == 0, result.err
    assert "packages_seen=448 created=3 updated=10 restored=0 removed=5 unchanged=435" in result.out
    run_id = scalar(database_url, "SELECT MAX(id) FROM sync_runs")
    assert scalar(database_url, "SELECT COUNT(*) FROM package_snapshots WHERE sync_run_id = :r", r=run_id) == 13
    closed = query(database_url, "SELECT package_id FROM package_snapshots WHERE valid_to IS NOT NULL")
    assert sorted(pid for (pid,) in closed) == sorted(changed_ids + vanished_ids)
    removed = query(database_url, "SELECT id FROM packages WHERE removed_at IS NOT NULL")
    assert sorted(pid for (pid,) in removed) == sorted(vanished_ids)
    assert scalar(database_url, "SELECT COUNT(*) FROM package_snapshots WHERE valid_to IS NULL") == 448
    assert scalar(database_url, "SELECT COUNT(*) FROM packages WHERE removed_at IS NULL") == 448


def test_a_package_that_comes_back_opens_a_new_version(cli, database_url, api):
    rock = api.packages.pop(0)
    assert sync(cli, database_url, api).exit_code == 0
    api.packages.insert(0, rock)
    assert sync(cli, database_url, api).exit_code == 0
    api.packages.pop(0)
    assert sync(cli, database_url, api).exit_code == 0

    api.packages.insert(0, rock)
    result = sync(cli, database_url, api)

    assert "created=0 updated=0 restored=1 removed=0 unchanged=19" in result.out
    versions = query(
        database_url,
        "SELECT valid_to IS NULL FROM package_snapshots WHERE package_id = :id ORDER BY valid_from",
        id=rock["id"],
    )
    assert versions == [(False,), (True,)]
    assert scalar(database_url, "SELECT removed_at FROM packages WHERE id = :id", id=rock["id"]) is None


def test_the_catalogue_as_of_a_time_is_one_where_clause(cli, database_url, api):
    assert sync(cli, database_url, api).exit_code == 0
    first_run_end = scalar(database_url, "SELECT finished_at FROM sync_runs WHERE id = 1")
    api.packages[0]["cpu_cores"] = 2
    del api.packages[-1]
    assert sync(cli, database_url, api).exit_code == 0

    as_of = "valid_from <= :t AND (valid_to IS NULL OR valid_to > :t)"
    then = query(
        database_url, f"SELECT name, cpu_cores FROM package_snapshots WHERE {as_of} ORDER BY name", t=first_run_end
    )
    now = query(database_url, "SELECT name, cpu_cores FROM package_snapshots WHERE valid_to IS NULL ORDER BY name")

    assert len(then) == 20 and ("ROCK-1", 1) in then and ("BOULDER-960", 96) in then
    assert len(now) == 19 and ("ROCK-1", 2) in now and all(name != "BOULDER-960" for name, _ in now)


def test_a_run_that_fails_on_page_3_changes_nothing_but_its_run_row(cli, database_url, api):
    api.packages = synthetic_catalogue(450)
    assert sync(cli, database_url, api, "--per-page", "100").exit_code == 0
    for package in api.packages:
        package["cpu_cores"] += 1
    before = catalogue_tables(database_url)
    api.add_fault(Fault(error_code="invalid_api_token", page=3))

    result = sync(cli, database_url, api, "--per-page", "100")

    assert result.exit_code == 1
    assert result.out == ""
    assert result.err == (
        "katapult-etl: Katapult API refused the request: HTTP 403 invalid_api_token: "
        "The API token provided was not valid (it may not exist or have expired)\n"
    )
    assert catalogue_tables(database_url) == before
    assert query(database_url, "SELECT status, error FROM sync_runs ORDER BY id") == [
        ("succeeded", None),
        ("failed", result.err.removeprefix("katapult-etl: ").strip()),
    ]


def test_items_shifting_mid_walk_are_stored_once_and_the_walk_is_repeated(cli, database_url, api):
    catalogue = synthetic_catalogue(6)
    api.packages = catalogue[1:]
    newcomer = catalogue[0]

    def insert_at_front_after_page_1(page):
        if page == 2 and newcomer not in api.packages:
            api.packages.insert(0, newcomer)

    api.on_request = insert_at_front_after_page_1

    result = sync(cli, database_url, api, "--per-page", "2", "--concurrency", "1")

    # Walk 1 sees [1,2] [2,3] [4,5]: id 2 twice, the newcomer never, 5 of the 6 counted; walk 2 sees all.
    assert result.exit_code == 0, result.err
    assert [r.query["page"] for r in api.requests][:3] == ["1", "2", "3"]
    assert len(api.requests) == 6
    assert "pages=6 packages_seen=6 created=6" in result.out
    assert scalar(database_url, "SELECT COUNT(*) FROM package_snapshots") == 6


def test_a_package_seen_twice_in_one_walk_keeps_the_content_it_had_last(cli, database_url, api):
    catalogue = synthetic_catalogue(8)
    api.packages = catalogue[2:]
    newcomers = catalogue[:2]

    def shift_and_change_the_repeated_package(page):
        # Before each walk's page 2 a newcomer is listed first, so page 2 starts with the package
        # page 1 ended with; that package changes in between: its second copy is the newer one.
        if page == 2 and newcomers:
            repeated = api.packages[1]
            api.packages[1] = {**repeated, "storage_in_gb": repeated["storage_in_gb"] + 1000}
            api.packages.insert(0, newcomers.pop())

    api.on_request = shift_and_change_the_repeated_package

    result = sync(cli, database_url, api, "--per-page", "2", "--concurrency", "1")

    # Walk 2 sees [n1 p2] [p2' p3] [p4 p5] [p6 p7]: p2 twice, n0 never (so incomplete: nothing removed).
    assert result.exit_code == 3, result.err
    assert "packages_seen=7 created=7" in result.out
    p2 = catalogue[2]["id"]
    assert query(database_url, "SELECT storage_in_gb FROM packages WHERE id = :id", id=p2) == [
        (catalogue[2]["storage_in_gb"] + 1000,)
    ]
    assert query(database_url, "SELECT storage_in_gb FROM package_snapshots WHERE package_id = :id", id=p2) == [
        (catalogue[2]["storage_in_gb"] + 1000,)
    ]
    assert scalar(database_url, "SELECT COUNT(*) FROM package_snapshots") == 7


def test_the_merge_fetches_no_rows_back_from_its_updates(cli, database_url, api):
    """Memory stays flat only if no statement hands the run one row per package: an ORM UPDATE that
    synchronises its session would fetch every updated key back (RETURNING, or a SELECT first)."""
    assert sync(cli, database_url, api).exit_code == 0
    api.packages[0] = {**api.packages[0], "storage_in_gb": 999}
    api.packages = api.packages[:-1]
    statements: list[str] = []

    def record(connection, cursor, statement, parameters, context, executemany) -> None:
        statements.append(" ".join(statement.split()).upper())

    event.listen(Engine, "before_cursor_execute", record)
    try:
        result = sync(cli, database_url, api)
    finally:
        event.remove(Engine, "before_cursor_execute", record)

    assert result.exit_code == 0, result.err
    assert "updated=1 restored=0 removed=1 unchanged=18" in result.out
    updates = [statement for statement in statements if statement.startswith("UPDATE ")]
    # abandoned runs, versions closed, last_seen_at, the three of a removal, and the run's own record
    assert len(updates) == 7
    assert [statement for statement in updates if "RETURNING" in statement] == []
    # Where there is no RETURNING (MySQL), the ORM would SELECT the keys before it updates. The one
    # statement that hands the run a row per package is the look-up of the known content hashes, made
    # once before the walk, one short value a row (issue 18).
    reads = [statement for statement in statements if statement.startswith("SELECT PACKAGE")]
    assert [statement.split(" FROM ")[0] for statement in reads] == ["SELECT PACKAGES.CONTENT_HASH"]


def test_text_that_bulk_loading_must_escape_is_stored_exactly(cli, database_url, api):
    # PostgreSQL stages by COPY, whose text format gives tabs, newlines, backslashes and \N meanings.
    awkward = "tab\there, new\nline, back\\slash \\N \\. 'quote' \"dq\" é 🚀"
    api.packages[0] = {**api.packages[0], "name": awkward, "icon": {"url": "\\N"}}

    result = sync(cli, database_url, api)

    assert result.exit_code == 0, result.err
    package_id = api.packages[0]["id"]
    assert query(database_url, "SELECT name, icon_url FROM packages WHERE id = :id", id=package_id) == [
        (awkward, "\\N")
    ]
    raw = scalar(database_url, "SELECT raw FROM package_snapshots WHERE package_id = :id", id=package_id)
    assert (json.loads(raw) if isinstance(raw, str) else raw)["name"] == awkward


def test_older_api_versions_without_group_and_icon_details(cli, database_url, api):
    for package in api.packages:
        for key in ("group", "use_dedicated_cpus", "monthly_bandwidth_allowance_in_gb"):
            del package[key]
        package["icon"] = {"url": "https://katapult.example/icon.png"}
        package["launch_price"] = {"amount": 5}

    result = sync(cli, database_url, api)

    assert result.exit_code == 0, result.err
    assert query(
        database_url,
        "SELECT group_id, use_dedicated_cpus, monthly_bandwidth_allowance_in_gb, icon_url, icon_file_name "
        "FROM packages WHERE name = 'ROCK-3'",
    ) == [(None, None, None, "https://katapult.example/icon.png", None)]
    assert scalar(database_url, "SELECT COUNT(*) FROM package_groups") == 0
    raw = scalar(database_url, "SELECT raw FROM package_snapshots WHERE name = 'ROCK-3'")
    assert '"launch_price"' in raw if isinstance(raw, str) else raw["launch_price"] == {"amount": 5}


def test_an_organization_sync_uses_the_core_api_and_never_removes_across_scopes(cli, database_url, api):
    private = synthetic_catalogue(3, seed=3, privacy="private")
    api.organizations = {"org_acme": {"sub_domain": "acme", "packages": private}}
    env = {"KATAPULT_API_TOKEN": DEFAULT_TOKEN}
    assert sync(cli, database_url, api, "--organization-sub-domain", "acme", env=env).exit_code == 0

    result = sync(cli, database_url, api)

    assert result.exit_code == 0, result.err
    assert api.requests[0].path == "/core/v1/virtual_machine_packages"
    assert api.requests[0].query["organization[sub_domain]"] == "acme"
    assert api.requests[0].headers["Authorization"] == f"Bearer {DEFAULT_TOKEN}"
    assert "removed=0 unchanged=20" in result.out
    assert scalar(database_url, "SELECT COUNT(*) FROM packages WHERE removed_at IS NULL") == 23
    assert query(database_url, "SELECT scope, COUNT(*) FROM package_listings GROUP BY scope ORDER BY scope") == [
        ("organization[sub_domain]=acme", 23),
        ("public", 20),
    ]

    api.organizations["org_acme"]["packages"] = private[1:]
    result = sync(cli, database_url, api, "--organization-sub-domain", "acme", env=env)
    assert "removed=1 unchanged=22" in result.out
    assert query(database_url, "SELECT id FROM packages WHERE removed_at IS NOT NULL") == [(private[0]["id"],)]


def test_an_organization_without_a_token_is_a_usage_error(cli, database_url, api):
    result = sync(cli, database_url, api, "--organization-id", "org_acme")

    assert result.exit_code == 2
    assert result.err == (
        "katapult-etl: an organization's packages need an API token: set KATAPULT_API_TOKEN or --token-file\n"
    )
    assert api.requests == []


def test_public_and_public_catalogue_data_match_the_real_one():
    names = [p["name"] for p in public_catalogue()]
    assert len(names) == 20 and names[0] == "ROCK-1" and names[-1] == "BOULDER-960"
