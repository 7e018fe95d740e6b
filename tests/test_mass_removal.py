"""The mass-removal guard: a run that would remove more than half of a scope's listed packages removes
nothing unless --allow-mass-removal is given; it says so and exits 4."""

from __future__ import annotations

from etl.testing.catalogue import synthetic_catalogue

from .helpers import catalogue_tables, current_versions, expected_catalogue, query, removed_ids, scalar, sync_in_fives

REFUSED = (
    "mass removal refused: {missing} of the 12 packages listed in public are missing; nothing removed "
    "(run again with --allow-mass-removal if that is right)"
)


def test_removing_more_than_half_is_refused_but_changes_land(cli, database_url, api, twelve):
    api.packages = twelve[:5]
    api.packages[0]["memory_in_gb"] += 1
    api.packages.append(synthetic_catalogue(1, seed=9)[0])

    result = sync_in_fives(cli, database_url, api)

    reason = REFUSED.format(missing=7)
    assert result.exit_code == 4
    # pages=4: the 7 missing are confirmed by a second walk before the guard counts them.
    assert result.out.startswith(
        "sync incomplete: scope=public api=public pages=4 packages_seen=6 created=1 "
        "updated=1 restored=0 removed=0 unchanged=4 "
    )
    assert result.err == f"katapult-etl: {reason}\n"
    assert query(database_url, "SELECT status, error, removed FROM sync_runs ORDER BY id DESC LIMIT 1") == [
        ("incomplete", reason, 0)
    ]
    assert removed_ids(database_url) == []
    assert scalar(database_url, "SELECT COUNT(*) FROM package_listings WHERE unlisted_at IS NOT NULL") == 0
    assert scalar(database_url, "SELECT COUNT(*) FROM package_snapshots WHERE valid_to IS NULL") == 13

    allowed = sync_in_fives(cli, database_url, api, "--allow-mass-removal")

    assert allowed.exit_code == 0, allowed.err
    assert "created=0 updated=0 restored=0 removed=7 unchanged=6" in allowed.out
    assert sorted(removed_ids(database_url)) == sorted(p["id"] for p in twelve[5:])
    assert current_versions(database_url) == expected_catalogue(api.packages)


def test_removing_exactly_half_is_not_a_mass_removal(cli, database_url, api, twelve):
    api.packages = twelve[:6]

    result = sync_in_fives(cli, database_url, api)

    assert result.exit_code == 0, result.err
    assert "removed=6 unchanged=6" in result.out
    assert sorted(removed_ids(database_url)) == sorted(p["id"] for p in twelve[6:])


def test_an_empty_catalogue_removes_nothing(cli, database_url, api, twelve):
    before = catalogue_tables(database_url)
    api.packages = []

    result = sync_in_fives(cli, database_url, api)

    assert result.exit_code == 4
    assert result.err == f"katapult-etl: {REFUSED.format(missing=12)}\n"
    assert catalogue_tables(database_url) == before
