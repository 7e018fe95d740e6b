"""Removal needs proof: a package is removed only when two complete walks of one run missed it.

Katapult pages by offset, so a package deleted (or added) while a walk runs shifts every later package
by one place: one live package slides onto a page already read and is never seen. These cases change
the catalogue of the fake API (a real HTTP server) in the middle of a walk and check, on each database,
that no live package is ever removed, and that what is really gone still is.
"""

from __future__ import annotations

from typing import Any

import pytest

from etl.testing.catalogue import synthetic_catalogue

from .helpers import catalogue_tables, every_table, expected_catalogue, listed_catalogue, query, removed_ids, sync

WALKED_AGAIN = (
    "katapult-etl: WARNING walk not shown complete (Katapult's count changed during the walk: "
    "{first} on page 1, {then} on page 2): walking once more\n"
)
KEPT = "katapult-etl: WARNING {count} package(s) missed by one walk but seen by the other stay listed: {ids}\n"

PER_PAGE = 20


def synced(cli, database_url, api, packages: list[dict[str, Any]], per_page: int = PER_PAGE) -> list[dict[str, Any]]:
    """A database holding `packages`, synced; the fake API's request log cleared."""
    api.packages = list(packages)
    result = sync(cli, database_url, api, per_page=per_page)
    assert result.exit_code == 0, result.err
    api.requests.clear()
    return packages


def pages_asked(api) -> list[int]:
    """The pages requested, sorted (with totals, the pages after the first come in any order)."""
    return sorted(int(r.query["page"]) for r in api.requests)


def ids_of(packages: list[dict[str, Any]]) -> list[str]:
    return sorted(package["id"] for package in packages)


def listed_ids(url: str) -> list[str]:
    return [package_id for package_id, _ in listed_catalogue(url)]


def last_run(url: str) -> tuple[Any, ...]:
    return query(url, "SELECT status, error, removed, restored FROM sync_runs ORDER BY id DESC LIMIT 1")[0]


def versions(url: str) -> list[tuple[Any, ...]]:
    """Each version: package, the run that opened it, and the run that closed it (None: still current)."""
    return query(
        url,
        "SELECT package_id, sync_run_id, closed_by_sync_run_id FROM package_snapshots ORDER BY package_id, id",
    )


def snapshots(url: str) -> list[tuple[Any, ...]]:
    return sorted(query(url, "SELECT * FROM package_snapshots"), key=repr)


# -- a package deleted while the walk runs ---------------------------------------------------------


@pytest.mark.parametrize("large_set", [False, True], ids=["totals", "large_set"])
def test_a_package_deleted_during_the_walk_never_gets_a_live_one_removed(cli, database_url, api, large_set):
    api.force_large_set = large_set
    catalogue = synced(cli, database_url, api, synthetic_catalogue(60))
    deleted, slid = catalogue[0]["id"], catalogue[20]["id"]  # slid: onto page 1 once page 1 was served
    api.remove_after_page(1, deleted)

    second = sync(cli, database_url, api, per_page=PER_PAGE)

    assert second.exit_code == 0, second.err
    if large_set:
        # The walk missed `slid` and saw `deleted`; the confirming walk saw `slid`: nothing is removed.
        assert second.err == KEPT.format(count=1, ids=slid)
        assert pages_asked(api) == [1, 1, 2, 2, 3, 3]
        assert "pages=6 packages_seen=59 created=0 updated=0 restored=0 removed=0 unchanged=59 " in second.out
        assert listed_ids(database_url) == ids_of(catalogue)
    else:
        # Page 1 counted 60, pages 2 and 3 counted 59: walked again; that walk and the confirming one
        # both miss `deleted`, which is removed now.
        assert second.err == WALKED_AGAIN.format(first="60 packages in 3 pages", then="59 packages in 3 pages")
        assert pages_asked(api) == [1, 1, 1, 2, 2, 2, 3, 3, 3]
        assert "pages=9 packages_seen=59 created=0 updated=0 restored=0 removed=1 unchanged=59 " in second.out
        assert listed_ids(database_url) == ids_of(catalogue[1:])
    api.requests.clear()

    third = sync(cli, database_url, api, per_page=PER_PAGE)

    # By the next run at the latest, `deleted` (and only it) is removed.
    assert (third.exit_code, third.err) == (0, "")
    assert f"removed={1 if large_set else 0} " in third.out
    assert pages_asked(api) == ([1, 1, 2, 2, 3, 3] if large_set else [1, 2, 3])
    assert listed_ids(database_url) == ids_of(catalogue[1:])
    assert removed_ids(database_url) == [deleted]
    # No false event: one version each, and only `deleted`'s is closed, by the run that removed it.
    run_ids = [row[0] for row in query(database_url, "SELECT id FROM sync_runs ORDER BY id")]
    remover = run_ids[2] if large_set else run_ids[1]
    assert versions(database_url) == sorted(
        (package["id"], run_ids[0], remover if package["id"] == deleted else None) for package in catalogue
    )
    assert query(database_url, "SELECT status, removed, restored FROM sync_runs ORDER BY id") == [
        ("succeeded", 0, 0),
        ("succeeded", 0 if large_set else 1, 0),
        ("succeeded", 1 if large_set else 0, 0),
    ]


@pytest.mark.parametrize("large_set", [False, True], ids=["totals", "large_set"])
def test_a_dry_run_reaches_the_same_verdict(cli, database_url, api, large_set):
    api.force_large_set = large_set
    catalogue = synced(cli, database_url, api, synthetic_catalogue(60))
    api.remove_after_page(1, catalogue[0]["id"])
    tables = every_table(database_url)

    result = sync(cli, database_url, api, "--dry-run", per_page=PER_PAGE)

    assert result.exit_code == 0, result.err
    if large_set:
        assert result.err == KEPT.format(count=1, ids=catalogue[20]["id"])
        assert result.out.startswith(
            "dry run: scope=public api=public pages=6 packages_seen=59 created=0 "
            "updated=0 restored=0 removed=0 unchanged=59 "
        )
    else:
        assert result.err == WALKED_AGAIN.format(first="60 packages in 3 pages", then="59 packages in 3 pages")
        assert result.out.startswith(
            "dry run: scope=public api=public pages=9 packages_seen=59 created=0 "
            "updated=0 restored=0 removed=1 unchanged=59 "
        )
    assert every_table(database_url) == tables


def test_a_shifted_walk_does_not_trip_the_mass_removal_guard(cli, database_url, api):
    # Five listed; two really gone; one deleted after page 1 is served. The walk misses three of the
    # five (over half), the confirming walk only the two really gone: they are removed.
    api.force_large_set = True
    five = synced(cli, database_url, api, synthetic_catalogue(5), per_page=2)
    api.packages = five[:3]
    api.remove_after_page(1, five[0]["id"])

    result = sync(cli, database_url, api, per_page=2)

    assert (result.exit_code, result.err) == (0, KEPT.format(count=1, ids=five[2]["id"]))
    assert "pages=4 packages_seen=2 created=0 updated=0 restored=0 removed=2 unchanged=2 " in result.out
    assert removed_ids(database_url) == ids_of(five[3:])
    assert last_run(database_url) == ("succeeded", None, 2, 0)


# -- totals left out without large_set ---------------------------------------------------------------


@pytest.mark.parametrize("totals", ["null", "absent"])
@pytest.mark.parametrize("omit_large_set", [False, True], ids=["large_set false", "large_set absent"])
def test_totals_null_or_left_out_are_walked_until_a_short_page(cli, database_url, api, totals, omit_large_set):
    catalogue = synced(cli, database_url, api, synthetic_catalogue(150), per_page=100)
    before = snapshots(database_url)
    api.totals, api.omit_large_set = totals, omit_large_set

    result = sync(cli, database_url, api, per_page=100)

    assert (result.exit_code, result.err) == (0, "")
    assert "pages=2 packages_seen=150 created=0 updated=0 restored=0 removed=0 unchanged=150 " in result.out
    assert pages_asked(api) == [1, 2]
    assert listed_catalogue(database_url) == expected_catalogue(catalogue)
    assert snapshots(database_url) == before
    assert last_run(database_url) == ("succeeded", None, 0, 0)


# -- a count that changes during the walk ------------------------------------------------------------


def test_a_count_that_changes_during_every_walk_removes_nothing(cli, database_url, api):
    catalogue = synced(cli, database_url, api, synthetic_catalogue(60))
    gone = catalogue[59]
    api.packages = catalogue[:59]
    newcomers = synthetic_catalogue(2, seed=7)

    def one_arrives_after_page_1(page: int) -> None:
        if page == 1 and newcomers:
            api.packages = [*api.packages, newcomers.pop(0)]

    api.after_page = one_arrives_after_page_1
    before = snapshots(database_url)

    result = sync(cli, database_url, api, per_page=PER_PAGE)

    # Walk 1: 59 counted on page 1, 60 on page 2. Walk 2: 60, then 61 in four pages, followed to page 4.
    reason = (
        "walk not shown complete, nothing removed: Katapult's count changed during the walk: "
        "60 packages in 3 pages on page 1, 61 packages in 4 pages on page 2"
    )
    assert result.exit_code == 3
    assert result.err == (
        WALKED_AGAIN.format(first="59 packages in 3 pages", then="60 packages in 3 pages") + f"katapult-etl: {reason}\n"
    )
    assert "pages=7 packages_seen=61 created=2 updated=0 restored=0 removed=0 unchanged=59 " in result.out
    assert pages_asked(api) == [1, 1, 2, 2, 3, 3, 4]
    assert last_run(database_url) == ("incomplete", reason, 0, 0)
    assert listed_ids(database_url) == ids_of([*catalogue, *synthetic_catalogue(2, seed=7)])
    assert gone["id"] in listed_ids(database_url)
    assert removed_ids(database_url) == []
    assert [row for row in snapshots(database_url) if row not in before] == [
        row for row in snapshots(database_url) if row[1] in ids_of(synthetic_catalogue(2, seed=7))
    ]


def test_a_confirming_walk_not_shown_complete_removes_nothing(cli, database_url, api):
    catalogue = synced(cli, database_url, api, synthetic_catalogue(60))
    api.packages = catalogue[:59]  # the last one is really gone
    newcomer = synthetic_catalogue(1, seed=7)[0]
    served_first_pages: list[int] = []

    def one_arrives_during_the_confirming_walk(page: int) -> None:
        if page == 1:
            served_first_pages.append(page)
            if len(served_first_pages) == 2:
                api.packages = [*api.packages, newcomer]

    api.after_page = one_arrives_during_the_confirming_walk
    before = catalogue_tables(database_url)

    result = sync(cli, database_url, api, per_page=PER_PAGE)

    reason = (
        "confirming walk not shown complete, nothing removed: Katapult's count changed during the walk: "
        "59 packages in 3 pages on page 1, 60 packages in 3 pages on page 2"
    )
    assert (result.exit_code, result.err) == (3, f"katapult-etl: {reason}\n")
    assert "pages=6 packages_seen=59 created=0 updated=0 restored=0 removed=0 unchanged=59 " in result.out
    assert last_run(database_url) == ("incomplete", reason, 0, 0)
    # Nothing changed but the times each package was last seen.
    assert listed_ids(database_url) == ids_of(catalogue)
    assert {table: len(rows) for table, rows in catalogue_tables(database_url).items()} == {
        table: len(rows) for table, rows in before.items()
    }
    assert snapshots(database_url) == sorted(before["package_snapshots"], key=repr)


# -- what the confirming walk costs, and what it still removes ---------------------------------------


@pytest.mark.parametrize("large_set", [False, True], ids=["totals", "large_set"])
def test_a_steady_state_run_makes_one_walk(cli, database_url, api, large_set):
    api.force_large_set = large_set
    synced(cli, database_url, api, synthetic_catalogue(450), per_page=100)
    api.packages[0]["memory_in_gb"] += 1  # a change, but nothing missing

    result = sync(cli, database_url, api, per_page=100)

    assert (result.exit_code, result.err) == (0, "")
    assert "pages=5 packages_seen=450 created=0 updated=1 restored=0 removed=0 unchanged=449 " in result.out
    assert pages_asked(api) == [1, 2, 3, 4, 5]  # ceil(450 / 100): no confirming walk


@pytest.mark.parametrize("large_set", [False, True], ids=["totals", "large_set"])
def test_a_package_gone_before_the_run_is_missed_twice_and_removed(cli, database_url, api, large_set):
    api.force_large_set = large_set
    catalogue = synced(cli, database_url, api, synthetic_catalogue(60))
    gone = catalogue[30]
    api.packages = [package for package in catalogue if package is not gone]

    result = sync(cli, database_url, api, per_page=PER_PAGE)

    assert (result.exit_code, result.err) == (0, "")
    assert "pages=6 packages_seen=59 created=0 updated=0 restored=0 removed=1 unchanged=59 " in result.out
    assert pages_asked(api) == [1, 1, 2, 2, 3, 3]
    assert removed_ids(database_url) == [gone["id"]]
    assert listed_catalogue(database_url) == expected_catalogue(api.packages)
    assert last_run(database_url) == ("succeeded", None, 1, 0)


def test_the_mass_removal_guard_counts_what_both_walks_missed(cli, database_url, api):
    twelve = synced(cli, database_url, api, synthetic_catalogue(12), per_page=5)
    before = catalogue_tables(database_url)
    api.packages = twelve[:5]

    result = sync(cli, database_url, api, per_page=5)

    reason = (
        "mass removal refused: 7 of the 12 packages listed in public are missing; nothing removed "
        "(run again with --allow-mass-removal if that is right)"
    )
    assert (result.exit_code, result.err) == (4, f"katapult-etl: {reason}\n")
    assert pages_asked(api) == [1, 1]  # five packages: one page, walked twice
    assert last_run(database_url) == ("incomplete", reason, 0, 0)
    assert removed_ids(database_url) == []
    assert listed_ids(database_url) == ids_of(twelve)
    assert snapshots(database_url) == sorted(before["package_snapshots"], key=repr)


def test_a_package_without_an_id_in_the_confirming_walk_removes_nothing(cli, database_url, api):
    catalogue = synced(cli, database_url, api, synthetic_catalogue(60))
    api.packages = catalogue[:59]  # the last one is really gone
    served_first_pages: list[int] = []

    def an_id_goes_missing_during_the_confirming_walk(page: int) -> None:
        if page == 1:
            served_first_pages.append(page)
            if len(served_first_pages) == 2:
                on_page_2 = {key: value for key, value in api.packages[20].items() if key != "id"}
                api.packages = [*api.packages[:20], on_page_2, *api.packages[21:]]

    api.after_page = an_id_goes_missing_during_the_confirming_walk
    before = snapshots(database_url)

    result = sync(cli, database_url, api, per_page=PER_PAGE)

    # It could be the package gone: nothing is removed.
    reason = "nothing removed: a package without a usable id could be any package the walk missed"
    assert (result.exit_code, result.err) == (3, f"katapult-etl: {reason}\n")
    assert "pages=6 packages_seen=59 created=0 updated=0 restored=0 removed=0 unchanged=59 " in result.out
    assert last_run(database_url) == ("incomplete", reason, 0, 0)
    assert listed_ids(database_url) == ids_of(catalogue)
    assert snapshots(database_url) == before
