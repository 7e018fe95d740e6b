"""Schema drift said out loud, --ignore-key, and the mass-update warning (issue 17, items 3).

One new key in every package (Katapult adding `launch_price`) must be said, recorded in
sync_runs.schema_changes and counted; with --ignore-key it must open no version, and neither adding a key
to the list nor removing one may open a version by itself. Run on SQLite, PostgreSQL and MariaDB.
"""

from __future__ import annotations

import json

import pytest

from etl.config import Settings
from etl.pipeline import Hooks, run_sync
from etl.results import MassUpdate, SchemaChanges
from etl.store import Store

from .helpers import (
    current_versions,
    expected_catalogue,
    query,
    scalar,
    sync,
    sync_ok,
    warning_metrics,
    write_config,
)

NEW_KEY_WARNING = (
    "katapult-etl: WARNING keys changed in the packages of public: {keys} (+ no current version had it; "
    "- every one had it, no package has it now); recorded in sync_runs.schema_changes\n"
)
MASS_UPDATE_WARNING = (
    "katapult-etl: WARNING {updated} of the 20 packages listed in public were updated in one run: if a key "
    "changed in every package, --ignore-key KEY keeps such a change from making versions\n"
)


def versions(url: str) -> int:
    return scalar(url, "SELECT COUNT(*) FROM package_snapshots")


def recorded(url: str) -> list[tuple]:
    """(updated, unchanged, schema_changes) of every run, oldest first."""
    return query(url, "SELECT updated, unchanged, schema_changes FROM sync_runs ORDER BY id")


def give_every_package(api, key: str, value) -> None:
    for package in api.packages:
        package[key] = value


def test_one_new_key_in_every_package_is_said_recorded_and_counted(cli, database_url, api, tmp_path):
    sync_ok(cli, database_url, api)
    give_every_package(api, "launch_price", 10)
    metrics = tmp_path / "katapult_etl.prom"

    result = sync(cli, database_url, api, "--metrics-file", str(metrics))

    assert result.exit_code == 0
    assert result.err == NEW_KEY_WARNING.format(keys="+launch_price") + MASS_UPDATE_WARNING.format(updated=20)
    assert recorded(database_url) == [(0, 0, None), (20, 0, "+launch_price")]
    assert versions(database_url) == 40  # without --ignore-key, the key is content like any other
    assert "\n".join(warning_metrics(added=1, mass_update=1)) + "\n" in metrics.read_text()


def test_with_ignore_key_the_same_run_opens_no_version(cli, database_url, api):
    sync_ok(cli, database_url, api)
    give_every_package(api, "launch_price", 10)

    result = sync(cli, database_url, api, "--ignore-key", "launch_price")

    # Said and recorded all the same: the key is new to the catalogue, ignored or not. No mass update.
    assert (result.exit_code, result.err) == (0, NEW_KEY_WARNING.format(keys="+launch_price"))
    assert recorded(database_url) == [(0, 0, None), (0, 20, "+launch_price")]
    assert versions(database_url) == 20
    # The current versions hold the JSON as received: raw and hash refreshed in place.
    assert current_versions(database_url) == expected_catalogue(api.packages)
    assert query(database_url, "SELECT id, content_hash FROM packages ORDER BY id") == expected_catalogue(api.packages)
    raws = query(database_url, "SELECT raw FROM package_snapshots")
    assert {_json(raw)["launch_price"] for (raw,) in raws} == {10}


def test_adding_the_key_to_the_list_afterwards_opens_none(cli, database_url, api):
    sync_ok(cli, database_url, api)
    give_every_package(api, "launch_price", 10)
    sync_ok(cli, database_url, api)  # the new key made 20 versions
    assert versions(database_url) == 40

    unchanged = sync(cli, database_url, api, "--ignore-key", "launch_price")
    give_every_package(api, "launch_price", 12)
    changed_only_there = sync(cli, database_url, api, "--ignore-key", "launch_price")

    assert (unchanged.exit_code, unchanged.err, changed_only_there.exit_code, changed_only_there.err) == (0, "", 0, "")
    assert versions(database_url) == 40
    assert recorded(database_url)[2:] == [(0, 20, ""), (0, 20, "")]
    assert current_versions(database_url) == expected_catalogue(api.packages)


def test_removing_a_key_from_the_list_opens_none(cli, database_url, api):
    give_every_package(api, "launch_price", 10)
    sync_ok(cli, database_url, api, "--ignore-key", "launch_price")
    give_every_package(api, "launch_price", 12)
    sync_ok(cli, database_url, api, "--ignore-key", "launch_price")  # refreshed in place: raw says 12

    result = sync(cli, database_url, api)

    assert (result.exit_code, result.err) == (0, "")
    assert versions(database_url) == 20
    assert recorded(database_url) == [(0, 0, None), (0, 20, ""), (0, 20, "")]


def test_ignore_keys_in_the_configuration_file_and_a_flag_that_replaces_them(cli, database_url, api, tmp_path):
    path = write_config(tmp_path, '[sync]\nignore_keys = ["launch_price"]\n')
    sync_ok(cli, database_url, api)
    give_every_package(api, "launch_price", 10)

    from_file = sync(cli, database_url, api, "--config", str(path))
    give_every_package(api, "launch_price", 12)
    replaced = sync(cli, database_url, api, "--config", str(path), "--ignore-key", "icon.token")

    assert (from_file.exit_code, from_file.err) == (0, NEW_KEY_WARNING.format(keys="+launch_price"))
    assert (replaced.exit_code, replaced.err) == (0, MASS_UPDATE_WARNING.format(updated=20))
    assert recorded(database_url) == [(0, 0, None), (0, 20, "+launch_price"), (20, 0, "")]


def test_a_bad_key_in_the_file_is_a_usage_error_naming_it(cli, tmp_path, api):
    path = write_config(tmp_path, '[sync]\nignore_keys = ["memory_in_gb"]\n')

    result = sync(cli, f"sqlite:///{tmp_path / 'k.db'}", api, "--config", str(path))

    assert (result.exit_code, result.out) == (2, "")
    assert result.err == (
        "katapult-etl: --ignore-key 'memory_in_gb': that key is kept in a column of its own (or holds some), "
        "so its change always makes a new version\n"
    )


def test_a_real_change_while_the_ignored_key_changes_too_opens_exactly_one_version(cli, database_url, api):
    give_every_package(api, "launch_price", 10)
    sync_ok(cli, database_url, api)
    give_every_package(api, "launch_price", 12)
    api.packages[0]["memory_in_gb"] += 1
    changed = api.packages[0]["id"]

    result = sync(cli, database_url, api, "--ignore-key", "launch_price")

    assert (result.exit_code, result.err) == (0, "")
    assert recorded(database_url)[1] == (1, 19, "")
    assert query(database_url, "SELECT package_id, changed_fields FROM package_snapshots WHERE sync_run_id = 2") == [
        (changed, "memory_in_gb")
    ]
    assert current_versions(database_url) == expected_catalogue(api.packages)


def test_a_nested_key_gone_from_every_package_is_said_and_can_be_ignored(cli, database_url, api):
    for number, package in enumerate(api.packages):
        package["icon"] = {"url": f"https://example.com/{number}.png", "token": f"t{number}"}
    sync_ok(cli, database_url, api)
    for package in api.packages:
        del package["icon"]["token"]

    result = sync(cli, database_url, api, "--ignore-key", "icon.token")

    assert (result.exit_code, result.err) == (0, NEW_KEY_WARNING.format(keys="-icon.token"))
    assert recorded(database_url)[1] == (0, 20, "-icon.token")
    assert versions(database_url) == 20


def test_an_unchanged_resync_and_a_change_of_values_read_no_scope_keys(cli, database_url, api, monkeypatch):
    """The scope's current versions are read only when a package's keys differ from its previous version's."""
    sync_ok(cli, database_url, api)
    reads = []
    read = Store.current_versions_of_scope

    def counted(store, scope):
        reads.append(scope)
        return read(store, scope)

    monkeypatch.setattr(Store, "current_versions_of_scope", counted)
    sync_ok(cli, database_url, api)
    api.packages[3]["cpu_cores"] += 1
    api.packages[4]["launch_price"] = 1  # a key some package had never had: the scope's keys must be read
    sync_ok(cli, database_url, api)

    assert reads == ["public"]
    assert recorded(database_url) == [(0, 0, None), (0, 20, ""), (2, 18, "+launch_price")]


def test_the_run_result_carries_the_schema_changes_and_the_mass_update(database_url, api):
    settings = Settings(database_url=database_url, api_url=api.url)
    run_sync(settings)
    give_every_package(api, "launch_price", 10)
    del api.packages[0]["privacy"]  # one package lacks a key all had: not a key gone from the catalogue

    result = run_sync(settings, Hooks())

    assert result.schema_changes == SchemaChanges(added=("launch_price",), removed=())
    assert result.mass_update == MassUpdate(updated=20, listed=20, scope="public")


def test_a_dry_run_says_the_same_and_writes_nothing(cli, database_url, api):
    sync_ok(cli, database_url, api)
    give_every_package(api, "launch_price", 10)

    result = sync(cli, database_url, api, "--dry-run", "--ignore-key", "launch_price")

    assert (result.exit_code, result.err) == (0, NEW_KEY_WARNING.format(keys="+launch_price"))
    assert "updated=0 restored=0 removed=0 unchanged=20" in result.out
    assert recorded(database_url) == [(0, 0, None)]
    assert versions(database_url) == 20
    assert {_json(raw).get("launch_price") for (raw,) in query(database_url, "SELECT raw FROM package_snapshots")} == {
        None
    }


@pytest.mark.parametrize(
    ("key", "message"),
    [
        (
            "memory_in_gb",
            "that key is kept in a column of its own (or holds some), so its change always makes a new version",
        ),
        ("icon", "that key is kept in a column of its own (or holds some), so its change always makes a new version"),
        (
            "group.name",
            "that key is kept in a column of its own (or holds some), so its change always makes a new version",
        ),
        ("", "give a key, or a dotted path to a nested key (icon.token)"),
        ("icon..token", "give a key, or a dotted path to a nested key (icon.token)"),
        (" launch_price", "give a key, or a dotted path to a nested key (icon.token)"),
    ],
)
def test_an_ignore_key_that_cannot_be_ignored_is_a_usage_error(cli, tmp_path, api, key, message):
    database = tmp_path / "k.db"

    result = sync(cli, f"sqlite:///{database}", api, "--ignore-key", "launch_price", "--ignore-key", key)

    assert (result.exit_code, result.out, result.err) == (2, "", f"katapult-etl: --ignore-key {key!r}: {message}\n")
    assert not database.exists()
    assert api.requests == []


def _json(raw):
    """A JSON column as the driver gives it: parsed (PostgreSQL, SQLite through SQLAlchemy) or text."""
    return json.loads(raw) if isinstance(raw, str) else raw
