"""katapult-etl scopes: every scope the database knows; `scopes retire SCOPE` unlists a scope that is gone, in
a run of its own, removing the packages no other scope lists (issue 16, item 3)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url

from etl.models import Package
from etl.testing.catalogue import public_catalogue, synthetic_catalogue
from etl.testing.fakeapi import DEFAULT_TOKEN

from .helpers import (
    WAIT_SECONDS,
    catalogue_tables,
    current_versions,
    error_line,
    every_table,
    expected_catalogue,
    hold_run_lock,
    iso,
    other_sessions_waiting_on_a_lock,
    query,
    removed_ids,
    run_lock_released,
    runs,
    second,
    sync_ok,
    wait_until,
)
from .scenario import run_times

TOKEN = {"KATAPULT_API_TOKEN": DEFAULT_TOKEN}
ACME = "organization[id]=org_acme"
# The run columns a retire run's row is checked by.
RUN_COLUMNS = (
    "scope, api, status, pages_fetched, requests, retries, packages_seen, created, updated, restored, removed, "
    "unchanged, error"
)
# A database error raised inside the retire run's transaction, after it has unlisted the scope's packages
# and closed their versions: its last statement, marking the packages removed, is refused.
TRIGGER_MESSAGE = "removal refused by a test trigger"
REFUSING_TRIGGER = {
    "sqlite": [
        f"CREATE TRIGGER refuse_removal BEFORE UPDATE OF removed_at ON packages "
        f"BEGIN SELECT RAISE(ABORT, '{TRIGGER_MESSAGE}'); END"
    ],
    "postgresql": [
        f"CREATE FUNCTION refuse_removal() RETURNS trigger LANGUAGE plpgsql AS "
        f"$$ BEGIN RAISE EXCEPTION '{TRIGGER_MESSAGE}'; END $$",
        "CREATE TRIGGER refuse_removal BEFORE UPDATE ON packages FOR EACH ROW EXECUTE FUNCTION refuse_removal()",
    ],
    "mysql": [
        f"CREATE TRIGGER refuse_removal BEFORE UPDATE ON packages FOR EACH ROW "
        f"SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = '{TRIGGER_MESSAGE}'"
    ],
}
TRIGGER_ERROR = {
    "sqlite": f"database error: {TRIGGER_MESSAGE}",
    "postgresql": f"database error: {TRIGGER_MESSAGE}",
    "mysql": f"database error: (1644, '{TRIGGER_MESSAGE}')",
}


@pytest.fixture
def acme(cli, database_url, api):
    """Run 1 syncs public (Katapult's 20 recorded packages); run 2 the organization acme, which lists its 3
    private packages and the same 20. Returns the private packages' ids. Runs take no time (cli.clock)."""
    private = synthetic_catalogue(3, seed=3, privacy="private")
    api.organizations = {"org_acme": {"sub_domain": "acme", "packages": private}}
    cli.clock = lambda: 0.0
    sync_ok(cli, database_url, api)
    sync_ok(cli, database_url, api, "--organization-id", "org_acme", env=TOKEN)
    return sorted(package["id"] for package in private)


def retire(cli, database_url, scope, *options):
    return cli("scopes", "retire", scope, *options, "--database-url", database_url)


def run_row(database_url, run_id):
    return query(database_url, f"SELECT {RUN_COLUMNS} FROM sync_runs WHERE id = :id", id=run_id)


def removal_times(database_url):
    """The distinct removed_at of the removed packages, as aware UTC datetimes."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            return list(
                connection.execute(
                    select(Package.removed_at).where(Package.removed_at.is_not(None)).distinct()
                ).scalars()
            )
    finally:
        engine.dispose()


def without(tables, package_ids, scope):
    """The catalogue tables but the rows of `package_ids` and the listings of `scope`: what retiring
    `scope` must leave exactly as it was."""
    return {
        "package_groups": tables["package_groups"],
        "packages": [row for row in tables["packages"] if row[0] not in package_ids],
        "package_listings": [row for row in tables["package_listings"] if row[1] != scope],
        "package_snapshots": [row for row in tables["package_snapshots"] if row[1] not in package_ids],
    }


# -- scopes ---------------------------------------------------------------------------------------------


def test_scopes_lists_each_scope_with_what_it_lists_its_last_run_and_its_last_success(cli, database_url, api, acme):
    api.organizations = {}  # acme is gone: its next run fails
    failed = cli(
        "sync", "--database-url", database_url, "--api-url", api.url, "--organization-id", "org_acme", env=TOKEN
    )
    assert failed.exit_code == 1
    times = {run: finished for run, (_, finished) in run_times(database_url).items()}

    result = cli("scopes", "--database-url", database_url)

    assert (result.exit_code, result.err) == (0, "")
    assert result.out.splitlines() == [
        "scope                      listed  last_run  status     finished_at           last_success  succeeded_at",
        f"{ACME}      23         3  failed     {second(times[3])}             2  {second(times[2])}",
        f"public                         20         1  succeeded  {second(times[1])}             1  {second(times[1])}",
    ]
    as_json = cli("scopes", "--format", "json", "--database-url", database_url)
    assert json.loads(as_json.out) == [
        {
            "scope": ACME,
            "listed": 23,
            "last_run_id": 3,
            "last_run_status": "failed",
            "last_run_finished_at": iso(times[3]),
            "last_success_run_id": 2,
            "last_success_finished_at": iso(times[2]),
        },
        {
            "scope": "public",
            "listed": 20,
            "last_run_id": 1,
            "last_run_status": "succeeded",
            "last_run_finished_at": iso(times[1]),
            "last_success_run_id": 1,
            "last_success_finished_at": iso(times[1]),
        },
    ]
    assert cli("scopes", "--format", "csv", "--database-url", database_url).out.splitlines() == [
        "scope,listed,last_run_id,last_run_status,last_run_finished_at,last_success_run_id,last_success_finished_at",
        f"{ACME},23,3,failed,{iso(times[3])},2,{iso(times[2])}",
        f"public,20,1,succeeded,{iso(times[1])},1,{iso(times[1])}",
    ]


def test_a_scope_known_only_by_its_listings_is_listed_too(cli, database_url, api):
    sync_ok(cli, database_url, api)
    engine = create_engine(database_url)
    with engine.begin() as connection:  # its runs deleted, as a user trimming sync_runs might
        connection.execute(text("DELETE FROM package_snapshots"))
        connection.execute(text("DELETE FROM sync_runs"))
    engine.dispose()

    result = cli("scopes", "--format", "jsonl", "--database-url", database_url)

    assert (result.exit_code, result.err) == (0, "")
    assert [json.loads(line) for line in result.out.splitlines()] == [
        {
            "scope": "public",
            "listed": 20,
            "last_run_id": None,
            "last_run_status": None,
            "last_run_finished_at": None,
            "last_success_run_id": None,
            "last_success_finished_at": None,
        }
    ]


def test_scopes_of_a_database_without_runs_and_of_none(cli, tmp_path):
    url = f"sqlite:///{tmp_path / 'katapult.db'}"
    missing = cli("scopes", "--database-url", url)
    assert (missing.exit_code, missing.out) == (1, "")
    assert missing.err == error_line(f"{tmp_path / 'katapult.db'} does not exist: run `katapult-etl sync` first")
    assert list(tmp_path.iterdir()) == []
    assert cli("db", "upgrade", "--database-url", url).exit_code == 0

    result = cli("scopes", "--database-url", url)

    assert (result.exit_code, result.out, result.err) == (0, "no scopes yet\n", "")
    assert cli("scopes", "--json", "--database-url", url).out == "[]\n"


# -- scopes retire ----------------------------------------------------------------------------------------


def test_retiring_an_organization_removes_only_the_packages_no_other_scope_lists(cli, database_url, api, acme):
    before = catalogue_tables(database_url)

    result = retire(cli, database_url, ACME)

    assert (result.exit_code, result.err) == (0, "")
    assert result.out == f"retire succeeded: scope={ACME} unlisted=23 removed=3 unchanged=20 seconds=0.00 run=3\n"
    # One new run row: no page, no request; removed = the 3 that left the catalogue, unchanged = the 20
    # that public still lists.
    assert query(database_url, "SELECT id FROM sync_runs ORDER BY id") == [(1,), (2,), (3,)]
    assert run_row(database_url, 3) == [(ACME, "core", "succeeded", 0, 0, 0, 0, 0, 0, 0, 3, 20, None)]
    finished = run_times(database_url)[3][1]
    # The 3 removed, their versions closed by run 3 at that instant, and acme lists nothing now.
    [removed] = removal_times(database_url)
    assert run_times(database_url)[3][0] < removed < finished
    assert removed_ids(database_url) == acme
    assert query(
        database_url,
        "SELECT s.package_id FROM package_snapshots s JOIN packages p ON p.id = s.package_id "
        "WHERE s.closed_by_sync_run_id = 3 AND s.valid_to = p.removed_at ORDER BY s.package_id",
    ) == [(package_id,) for package_id in acme]
    assert query(
        database_url,
        "SELECT COUNT(*) FROM package_listings WHERE scope = :scope "
        "AND unlisted_at = (SELECT MAX(removed_at) FROM packages)",
        scope=ACME,
    ) == [(23,)]
    # The 20 public packages, their versions and public's listings, exactly as they were.
    assert without(catalogue_tables(database_url), acme, ACME) == without(before, acme, ACME)
    assert current_versions(database_url) == expected_catalogue(public_catalogue())
    # The change history says so: three removals by run 3.
    assert query(
        database_url, "SELECT package_id, change_type FROM package_changes WHERE sync_run_id = 3 ORDER BY package_id"
    ) == [(package_id, "removed") for package_id in acme]
    history = cli("history", acme[0], "--database-url", database_url)
    assert history.out.splitlines()[0].endswith(f": removed at {second(removed)}")
    assert history.out.splitlines()[-1] == f"{second(removed)}  removed    3"
    assert json.loads(cli("scopes", "--json", "--database-url", database_url).out)[0] == {
        "scope": ACME,
        "listed": 0,
        "last_run_id": 3,
        "last_run_status": "succeeded",
        "last_run_finished_at": iso(finished),
        "last_success_run_id": 3,
        "last_success_finished_at": iso(finished),
    }


def test_a_retired_scope_synced_again_lists_and_restores_its_packages(cli, database_url, api, acme):
    assert retire(cli, database_url, ACME).exit_code == 0

    again = sync_ok(cli, database_url, api, "--organization-id", "org_acme", env=TOKEN)

    assert "created=0 updated=0 restored=3 removed=0 unchanged=20" in again.out
    assert removed_ids(database_url) == []
    assert query(
        database_url, "SELECT COUNT(*) FROM package_listings WHERE scope = :scope AND unlisted_at IS NULL", scope=ACME
    ) == [(23,)]


def test_retiring_more_than_half_of_a_scopes_packages_is_refused_without_allow_mass_removal(cli, database_url, api):
    # beta lists 3 private packages and 2 public ones: retiring it would remove 3 of its 5.
    api.packages = api.packages[:2]
    private = synthetic_catalogue(3, seed=4, privacy="private")
    api.organizations = {"org_beta": {"packages": private}}
    cli.clock = lambda: 0.0
    sync_ok(cli, database_url, api)
    sync_ok(cli, database_url, api, "--organization-id", "org_beta", env=TOKEN)
    beta = "organization[id]=org_beta"
    before = catalogue_tables(database_url)
    reason = (
        f"mass removal refused: retiring {beta} would remove 3 of the 5 packages it lists, which no other scope "
        "lists; nothing removed (run again with --allow-mass-removal if that is right)"
    )

    dry = retire(cli, database_url, beta, "--dry-run")
    refused = retire(cli, database_url, beta)

    assert (dry.exit_code, dry.out, dry.err) == (
        4,
        f"dry run: scope={beta} unlisted=0 removed=0 unchanged=0 seconds=0.00\n",
        error_line(reason),
    )
    assert (refused.exit_code, refused.err) == (4, error_line(reason))
    assert refused.out == f"retire incomplete: scope={beta} unlisted=0 removed=0 unchanged=0 seconds=0.00 run=3\n"
    # Nothing written but the run's own row, which says why.
    assert catalogue_tables(database_url) == before
    assert run_row(database_url, 3) == [(beta, "core", "incomplete", 0, 0, 0, 0, 0, 0, 0, 0, 0, reason)]

    allowed = retire(cli, database_url, beta, "--allow-mass-removal")

    assert (allowed.exit_code, allowed.err) == (0, "")
    assert allowed.out == f"retire succeeded: scope={beta} unlisted=5 removed=3 unchanged=2 seconds=0.00 run=4\n"
    assert removed_ids(database_url) == sorted(package["id"] for package in private)
    assert current_versions(database_url) == expected_catalogue(api.packages)


def test_retiring_public_too_is_refused_when_it_would_empty_the_catalogue(cli, database_url, api, acme):
    assert retire(cli, database_url, ACME).exit_code == 0
    before = catalogue_tables(database_url)

    refused = retire(cli, database_url, "public")

    assert (refused.exit_code, refused.err) == (
        4,
        error_line(
            "mass removal refused: retiring public would remove 20 of the 20 packages it lists, which no other scope "
            "lists; nothing removed (run again with --allow-mass-removal if that is right)"
        ),
    )
    assert catalogue_tables(database_url) == before
    assert runs(database_url)[-1][0] == "incomplete"

    allowed = retire(cli, database_url, "public", "--allow-mass-removal")

    assert allowed.out == "retire succeeded: scope=public unlisted=20 removed=20 unchanged=0 seconds=0.00 run=5\n"
    assert current_versions(database_url) == []
    assert run_row(database_url, 5) == [("public", "public", "succeeded", 0, 0, 0, 0, 0, 0, 0, 20, 0, None)]


def test_a_dry_run_says_what_retiring_would_do_and_writes_nothing(cli, database_url, api, acme):
    before = every_table(database_url)

    result = retire(cli, database_url, ACME, "--dry-run")

    assert (result.exit_code, result.out, result.err) == (
        0,
        f"dry run: scope={ACME} unlisted=23 removed=3 unchanged=20 seconds=0.00\n",
        "",
    )
    assert every_table(database_url) == before


def test_an_unknown_scope_is_a_usage_error_and_writes_nothing(cli, database_url, api, acme):
    before = every_table(database_url)

    result = retire(cli, database_url, "organization[sub_domain]=acme")

    assert (result.exit_code, result.out) == (2, "")
    assert result.err == error_line(
        f"scope 'organization[sub_domain]=acme': this database has no run or listing of it; it knows {ACME}, public"
    )
    assert every_table(database_url) == before


def test_a_scope_that_lists_nothing_has_nothing_to_retire_and_records_no_run(cli, database_url, api, acme):
    assert retire(cli, database_url, ACME).exit_code == 0
    before = every_table(database_url)

    again = retire(cli, database_url, ACME)
    quiet = cli("-q", "scopes", "retire", ACME, "--database-url", database_url)

    assert (again.exit_code, again.out, again.err) == (0, f"nothing to retire: {ACME} lists no packages\n", "")
    assert (quiet.exit_code, quiet.out, quiet.err) == (0, "", "")
    assert every_table(database_url) == before


def test_retiring_in_a_database_without_scopes_or_without_a_file(cli, tmp_path):
    path = tmp_path / "katapult.db"
    missing = retire(cli, f"sqlite:///{path}", "public")
    assert (missing.exit_code, missing.out) == (1, "")
    assert missing.err == error_line(f"{path} does not exist: run `katapult-etl sync` first")
    assert list(tmp_path.iterdir()) == []
    assert cli("db", "upgrade", "--database-url", f"sqlite:///{path}").exit_code == 0

    empty = retire(cli, f"sqlite:///{path}", "public")

    assert (empty.exit_code, empty.out) == (2, "")
    assert empty.err == error_line("scope 'public': this database has no run or listing of it; it has no scopes yet")


def test_a_retire_that_fails_changes_nothing_but_its_run_row_and_the_next_one_lands(cli, database_url, api, acme):
    backend = make_url(database_url).get_backend_name()
    engine = create_engine(database_url)
    with engine.begin() as connection:
        for statement in REFUSING_TRIGGER[backend]:
            connection.execute(text(statement))
    before = catalogue_tables(database_url)

    failed = retire(cli, database_url, ACME)

    assert (failed.exit_code, failed.out, failed.err) == (1, "", error_line(TRIGGER_ERROR[backend]))
    assert catalogue_tables(database_url) == before
    assert runs(database_url) == [("succeeded", None), ("succeeded", None), ("failed", TRIGGER_ERROR[backend])]
    with engine.begin() as connection:
        connection.execute(text("DROP TRIGGER refuse_removal" + (" ON packages" if backend == "postgresql" else "")))
    engine.dispose()

    again = retire(cli, database_url, ACME)

    assert again.out == f"retire succeeded: scope={ACME} unlisted=23 removed=3 unchanged=20 seconds=0.00 run=4\n"
    assert removed_ids(database_url) == acme


def test_a_retire_while_a_sync_of_the_scope_runs_exits_75_and_writes_nothing(cli, database_url, api, acme):
    before = every_table(database_url)
    holder = hold_run_lock(database_url, ACME)
    try:
        assert holder.stdout.readline() == "locked\n"
        result = retire(cli, database_url, ACME)
        unlocked = every_table(database_url)
        other = retire(cli, database_url, "public")  # another scope's run is not in the way
    finally:
        holder.communicate("", timeout=30)

    where = make_url(database_url).database if database_url.startswith("sqlite") else "this database"
    assert (result.exit_code, result.out) == (75, "")
    assert result.err == error_line(f"another sync of {ACME} is running on {where}")
    assert unlocked == before
    assert other.out == "retire succeeded: scope=public unlisted=20 removed=0 unchanged=20 seconds=0.00 run=3\n"


@pytest.mark.slow
def test_a_retire_killed_in_its_transaction_changes_nothing_and_the_next_one_lands(
    cli, database_url, api, acme, tmp_path
):
    if make_url(database_url).get_backend_name() != "postgresql":
        pytest.skip("needs a lock that another session holds while the retire waits inside its transaction")
    before = catalogue_tables(database_url)
    # Another session holds packages: the retire unlists acme's packages and closes their versions, then
    # waits to mark them removed, inside its one transaction, where kill -9 lands.
    blocker = create_engine(database_url).connect()
    try:
        blocker.execute(text("LOCK TABLE packages IN ACCESS EXCLUSIVE MODE"))
        process = subprocess.Popen(
            [sys.executable, "-m", "etl", "scopes", "retire", ACME, "--database-url", database_url],
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(lambda: other_sessions_waiting_on_a_lock(database_url) == 1, "the retire waits for packages")
        process.kill()
        process.wait(timeout=WAIT_SECONDS)
    finally:
        blocker.rollback()
        blocker.close()
    assert catalogue_tables(database_url) == before
    assert runs(database_url) == [("succeeded", None), ("succeeded", None), ("running", None)]
    wait_until(lambda: run_lock_released(database_url), "the killed retire's lock is released")

    again = retire(cli, database_url, ACME)

    assert again.out == f"retire succeeded: scope={ACME} unlisted=23 removed=3 unchanged=20 seconds=0.00 run=4\n"
    assert again.err == "katapult-etl: WARNING marked 1 abandoned run(s) of organization[id]=org_acme as failed\n"
    assert removed_ids(database_url) == acme
    assert runs(database_url)[2] == (
        "failed",
        "abandoned: the process ended before the run finished (killed or crashed)",
    )
