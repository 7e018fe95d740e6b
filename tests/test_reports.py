"""katapult-etl runs, history and changes: exact tables and JSON, from the database the syncs wrote."""

from __future__ import annotations

import json
import os
import socket
from datetime import UTC, datetime

import pytest
from alembic import command
from sqlalchemy import create_engine, select

from etl.database import alembic_config, head_revision, open_engine
from etl.models import Package
from etl.reports import parse_since
from etl.tables import aligned
from etl.testing.fakeapi import DEFAULT_TOKEN, Fault

from .helpers import iso, query, second, sync_ok
from .scenario import ROCK_1, ROCK_3, ROCK_6, ROCK_12, merge_times, run_times, three_runs

NOW = datetime(2026, 3, 8, 12, 30, tzinfo=UTC)


def read(cli, database_url, *args):
    result = cli(*args, "--database-url", database_url)
    assert (result.exit_code, result.err) == (0, "")
    return result.out


# -- runs ----------------------------------------------------------------------------------------------


def test_runs_are_listed_newest_first_and_a_cut_list_says_so(cli, database_url, api):
    three_runs(cli, database_url, api)
    times = run_times(database_url)
    seconds = {run: f"{(finished - started).total_seconds():.2f}" for run, (started, finished) in times.items()}

    out = read(cli, database_url, "runs", "--limit", "2")

    assert out.splitlines() == [
        "id  started_at            scope   status     seconds  pages  retries  seen  created  updated  restored"
        "  removed  unchanged  error",
        f" 3  {second(times[3][0])}  public  succeeded  {seconds[3]:>7}      1        0    20        0        0"
        "         2        0         18",
        # Run 2 removed two packages: its walk and the walk confirming them, one page each.
        f" 2  {second(times[2][0])}  public  succeeded  {seconds[2]:>7}      2        0    18        0        2"
        "         0        2         16",
        "... 1 older run not shown: --limit 3 or --all shows all",
    ]


def test_runs_as_json_have_every_column_of_sync_runs(cli, database_url, api):
    sync_ok(cli, database_url, api)
    api.add_fault(Fault(error_code="route_not_found"))
    assert cli("sync", "--database-url", database_url, "--api-url", api.url).exit_code == 1
    times = run_times(database_url)

    out = read(cli, database_url, "runs", "--json")

    common = {"scope": "public", "api": "public", "host": socket.gethostname(), "pid": os.getpid(), "retries": 0}
    # Neither run compared keys: the first of a scope has nothing to compare with, a failed one never merged.
    common["schema_changes"] = None
    assert json.loads(out) == [
        {
            **common,
            "id": 2,
            "started_at": iso(times[2][0]),
            "finished_at": iso(times[2][1]),
            "status": "failed",
            "pages_fetched": 0,
            "requests": 1,
            "packages_seen": 0,
            "created": 0,
            "updated": 0,
            "restored": 0,
            "removed": 0,
            "unchanged": 0,
            "error": "Katapult API refused the request: HTTP 404 route_not_found: "
            "No route matches the path and method provided",
        },
        {
            **common,
            "id": 1,
            "started_at": iso(times[1][0]),
            "finished_at": iso(times[1][1]),
            "status": "succeeded",
            "pages_fetched": 1,
            "requests": 1,
            "packages_seen": 20,
            "created": 20,
            "updated": 0,
            "restored": 0,
            "removed": 0,
            "unchanged": 0,
            "error": None,
        },
    ]
    cut = cli("runs", "--json", "--limit", "1", "--database-url", database_url)
    assert [run["id"] for run in json.loads(cut.out)] == [2]
    assert (cut.exit_code, cut.err) == (0, "")  # the JSON holds what was asked: nothing to warn about


def test_runs_all_shows_every_run(cli, database_url, api):
    for _ in range(3):
        sync_ok(cli, database_url, api)

    out = read(cli, database_url, "runs", "--all")

    assert [line.split()[0] for line in out.splitlines()] == ["id", "3", "2", "1"]
    result = cli("runs", "--all", "--limit", "1", "--database-url", database_url)
    assert (result.exit_code, result.out) == (2, "")
    assert result.err.splitlines()[-1] == "katapult-etl runs: error: argument --limit: not allowed with argument --all"


def test_runs_as_csv_and_json_lines_hold_what_was_asked_and_nothing_on_stderr(cli, tmp_path, api):
    url = f"sqlite:///{tmp_path / 'katapult.db'}"
    sync_ok(cli, url, api)
    sync_ok(cli, url, api)
    times = run_times(url)
    row = "{id},public,public,{started},{finished},succeeded,1,1,0,20,{created},0,0,0,{unchanged},,{host},{pid},"
    host, pid = socket.gethostname(), os.getpid()

    assert read(cli, url, "runs", "--limit", "1", "--format", "csv").splitlines() == [
        "id,scope,api,started_at,finished_at,status,pages_fetched,requests,retries,packages_seen,created,updated,"
        "restored,removed,unchanged,error,host,pid,schema_changes",
        row.format(
            id=2, started=iso(times[2][0]), finished=iso(times[2][1]), created=0, unchanged=20, host=host, pid=pid
        ),
    ]
    lines = read(cli, url, "runs", "--format", "jsonl").splitlines()
    assert [json.loads(line)["id"] for line in lines] == [2, 1]
    assert json.loads(lines[1])["started_at"] == iso(times[1][0])


def test_no_runs_yet(cli, database_url):
    engine = open_engine(database_url)
    with engine.begin() as connection:
        command.upgrade(alembic_config(connection), "head")
    engine.dispose()

    assert read(cli, database_url, "runs") == "no runs yet\n"
    assert read(cli, database_url, "runs", "--json") == "[]\n"


# -- history -------------------------------------------------------------------------------------------


def test_history_shows_each_change_with_old_and_new_values(cli, database_url, api):
    three_runs(cli, database_url, api)
    at = {run: second(instant) for run, instant in merge_times(database_url).items()}

    assert read(cli, database_url, "history", "rock-1").splitlines() == [
        f"{ROCK_1}  rock-1  ROCK-1: listed",
        "changed_at            change   run  field         old  new",
        f"{at[1]}  created    1",
        f"{at[2]}  updated    2  cpu_cores     1    2",
        "                                    memory_in_gb  1    2",
    ]
    assert read(cli, database_url, "history", ROCK_6).splitlines() == [
        f"{ROCK_6}  rock-6  ROCK-6: listed",
        "changed_at            change    run  field          old  new",
        f"{at[1]}  created     1",
        f"{at[2]}  removed     2",
        f"{at[3]}  restored    3  storage_in_gb  50   80",
    ]


def test_history_of_a_change_to_keys_without_a_column_shows_those_keys(cli, database_url, api):
    three_runs(cli, database_url, api)
    at = {run: second(instant) for run, instant in merge_times(database_url).items()}

    assert read(cli, database_url, "history", "rock-3").splitlines() == [
        f"{ROCK_3}  rock-3  ROCK-3: listed",
        "changed_at            change   run  field             old   new",
        f"{at[1]}  created    1",
        f'{at[2]}  updated    2  raw.launch_price  NULL  {{"amount": 5}}',
    ]


def test_history_of_a_removed_package_says_when(cli, database_url, api):
    three_runs(cli, database_url, api)
    api.packages = [package for package in api.packages if package["id"] != ROCK_12]
    sync_ok(cli, database_url, api)
    at = {run: second(instant) for run, instant in merge_times(database_url).items()}
    removed = second(removed_at(database_url, ROCK_12))

    assert read(cli, database_url, "history", "rock-12").splitlines() == [
        f"{ROCK_12}  rock-12  ROCK-12: removed at {removed}",
        "changed_at            change    run  field  old  new",
        f"{at[1]}  created     1",
        f"{at[2]}  removed     2",
        f"{at[3]}  restored    3",
        f"{removed}  removed     4",
    ]


def removed_at(database_url, package_id):
    engine = create_engine(database_url)
    with engine.connect() as connection:
        instant = connection.execute(select(Package.removed_at).where(Package.id == package_id)).scalar_one()
    engine.dispose()
    return instant


def test_history_as_json_has_each_version(cli, database_url, api):
    three_runs(cli, database_url, api)
    at = {run: iso(instant) for run, instant in merge_times(database_url).items()}
    version = {
        "name": "ROCK-6",
        "permalink": "rock-6",
        "cpu_cores": 2,
        "ipv4_addresses": 1,
        "memory_in_gb": 6,
        "storage_in_gb": 50,
        "monthly_bandwidth_allowance_in_gb": 3072,
        "privacy": "public",
        "use_dedicated_cpus": None,
        "group_id": None,
        "group_name": None,
        "icon_url": None,
        "icon_file_name": None,
        "icon_file_type": None,
        "icon_file_size": None,
        "icon_digest": None,
    }
    hashes = dict(
        query(database_url, "SELECT sync_run_id, content_hash FROM package_snapshots WHERE package_id = :id", id=ROCK_6)
    )
    change = {"package_id": ROCK_6, "permalink": "rock-6", "scope": "public"}

    assert json.loads(read(cli, database_url, "history", "rock-6", "--json")) == [
        {
            **change,
            "changed_at": at[1],
            "change_type": "created",
            "sync_run_id": 1,
            "changed_fields": None,
            "changes": [],
            "version": {**version, "content_hash": hashes[1], "valid_from": at[1], "valid_to": at[2]},
        },
        {
            **change,
            "changed_at": at[2],
            "change_type": "removed",
            "sync_run_id": 2,
            "changed_fields": None,
            "changes": [],
            "version": None,
        },
        {
            **change,
            "changed_at": at[3],
            "change_type": "restored",
            "sync_run_id": 3,
            "changed_fields": ["storage_in_gb"],
            "changes": [{"field": "storage_in_gb", "old": 50, "new": 80}],
            "version": {
                **version,
                "storage_in_gb": 80,
                "content_hash": hashes[3],
                "valid_from": at[3],
                "valid_to": None,
            },
        },
    ]


def test_history_of_an_unknown_package_fails(cli, database_url, api):
    sync_ok(cli, database_url, api)

    result = cli("history", "rock-2", "--database-url", database_url)

    assert (result.exit_code, result.out, result.err) == (
        1,
        "",
        "katapult-etl: no package has the id, permalink or name 'rock-2'; nearest: rock-72, rock-24, rock-12\n",
    )


@pytest.mark.parametrize("package", ["ROCK-1", "rock-1", "Rock-1", ROCK_1, ROCK_1.upper()])
def test_history_finds_a_package_by_id_permalink_or_name_in_any_case(cli, database_url, api, package):
    sync_ok(cli, database_url, api)

    assert read(cli, database_url, "history", package).splitlines()[0] == f"{ROCK_1}  rock-1  ROCK-1: listed"


def test_a_former_name_in_any_case_still_finds_its_package(cli, database_url, api):
    sync_ok(cli, database_url, api)
    api.packages[0].update(name="PEBBLE-1", permalink="pebble-1")
    sync_ok(cli, database_url, api)

    assert read(cli, database_url, "history", "rock-1").splitlines()[0] == f"{ROCK_1}  pebble-1  PEBBLE-1: listed"
    assert read(cli, database_url, "history", "Pebble-1").splitlines()[0] == f"{ROCK_1}  pebble-1  PEBBLE-1: listed"


def test_an_unknown_package_without_a_near_name_gets_no_suggestion(cli, database_url, api):
    sync_ok(cli, database_url, api)

    result = cli("history", "zzz", "--database-url", database_url)

    assert (result.exit_code, result.out, result.err) == (
        1,
        "",
        "katapult-etl: no package has the id, permalink or name 'zzz'\n",
    )


def test_history_as_csv_has_a_row_per_changed_field_and_as_json_lines_an_object_per_change(cli, tmp_path, api):
    url = f"sqlite:///{tmp_path / 'katapult.db'}"
    three_runs(cli, url, api)
    at = {run: iso(instant) for run, instant in merge_times(url).items()}

    assert read(cli, url, "history", "rock-1", "--format", "csv").splitlines() == [
        "package_id,permalink,changed_at,change_type,sync_run_id,scope,field,old,new",
        f"{ROCK_1},rock-1,{at[1]},created,1,public,,,",
        f"{ROCK_1},rock-1,{at[2]},updated,2,public,cpu_cores,1,2",
        f"{ROCK_1},rock-1,{at[2]},updated,2,public,memory_in_gb,1,2",
    ]
    assert read(cli, url, "history", "rock-3", "--format", "csv").splitlines()[-1] == (
        f'{ROCK_3},rock-3,{at[2]},updated,2,public,raw.launch_price,,"{{""amount"": 5}}"'
    )
    lines = read(cli, url, "history", "rock-6", "--format", "jsonl").splitlines()
    assert [json.loads(line) for line in lines] == json.loads(read(cli, url, "history", "rock-6", "--json"))
    assert [json.loads(line)["change_type"] for line in lines] == ["created", "removed", "restored"]


def test_a_permalink_two_listed_packages_share_asks_for_an_id(cli, database_url, api):
    api.packages[1]["permalink"] = "rock-1"
    sync_ok(cli, database_url, api)

    result = cli("history", "rock-1", "--database-url", database_url)

    assert (result.exit_code, result.err) == (
        1,
        f"katapult-etl: 'rock-1' is the permalink of 2 packages: give an id ({ROCK_3}, {ROCK_1})\n",
    )


def test_an_old_permalink_still_finds_its_package(cli, database_url, api):
    sync_ok(cli, database_url, api)
    api.packages[0]["permalink"] = "rock-one"
    sync_ok(cli, database_url, api)

    out = read(cli, database_url, "history", "rock-1")

    assert out.splitlines()[0] == f"{ROCK_1}  rock-one  ROCK-1: listed"
    assert out.splitlines()[-1].endswith("permalink  rock-1  rock-one")


# -- changes -------------------------------------------------------------------------------------------


def test_changes_since_a_time_list_each_change_with_its_fields(cli, database_url, api):
    three_runs(cli, database_url, api)
    merged = merge_times(database_url)
    at = {run: second(instant) for run, instant in merged.items()}

    out = read(cli, database_url, "changes", "--since", iso(merged[2]))

    assert out.splitlines() == [
        "changed_at            change    run  scope   permalink  package_id              changed_fields",
        f"{at[2]}  updated     2  public  rock-1     {ROCK_1}  cpu_cores,memory_in_gb",
        f"{at[2]}  removed     2  public  rock-12    {ROCK_12}",
        f"{at[2]}  updated     2  public  rock-3     {ROCK_3}  raw",
        f"{at[2]}  removed     2  public  rock-6     {ROCK_6}",
        f"{at[3]}  restored    3  public  rock-12    {ROCK_12}",
        f"{at[3]}  restored    3  public  rock-6     {ROCK_6}  storage_in_gb",
    ]


def test_changes_of_the_last_week_by_default_as_json(cli, database_url, api):
    three_runs(cli, database_url, api)
    at = {run: iso(instant) for run, instant in merge_times(database_url).items()}

    changes = json.loads(read(cli, database_url, "changes", "--json"))

    assert len(changes) == 26
    assert changes[0] == {
        "package_id": "vmpkg_N9v00VtGzaJShhhN",
        "permalink": "boulder-160",
        "changed_at": at[1],
        "change_type": "created",
        "sync_run_id": 1,
        "scope": "public",
        "changed_fields": None,
    }
    assert changes[-2:] == [
        {
            "package_id": ROCK_12,
            "permalink": "rock-12",
            "changed_at": at[3],
            "change_type": "restored",
            "sync_run_id": 3,
            "scope": "public",
            "changed_fields": [],
        },
        {
            "package_id": ROCK_6,
            "permalink": "rock-6",
            "changed_at": at[3],
            "change_type": "restored",
            "sync_run_id": 3,
            "scope": "public",
            "changed_fields": ["storage_in_gb"],
        },
    ]


def test_a_scope_no_run_had_is_a_usage_error_naming_the_known_ones(cli, database_url, api):
    three_runs(cli, database_url, api)

    result = cli(
        "changes", "--since", "2026-01-01", "--scope", "organization[id]=org_acme", "--database-url", database_url
    )

    assert (result.exit_code, result.out) == (2, "")
    assert result.err == (
        "katapult-etl: --scope 'organization[id]=org_acme': no run in this database had that scope; it knows public\n"
    )
    assert len(json.loads(read(cli, database_url, "changes", "--scope", "public", "--json"))) == 26


def test_changes_of_some_types_only(cli, database_url, api):
    three_runs(cli, database_url, api)
    at = {run: second(instant) for run, instant in merge_times(database_url).items()}

    out = read(cli, database_url, "changes", "--type", "removed,restored", "--since", "2w")

    assert out.splitlines() == [
        "changed_at            change    run  scope   permalink  package_id              changed_fields",
        f"{at[2]}  removed     2  public  rock-12    {ROCK_12}",
        f"{at[2]}  removed     2  public  rock-6     {ROCK_6}",
        f"{at[3]}  restored    3  public  rock-12    {ROCK_12}",
        f"{at[3]}  restored    3  public  rock-6     {ROCK_6}  storage_in_gb",
    ]
    assert read(cli, database_url, "changes", "--type", "updated", "--since", iso(merge_times(database_url)[3])) == (
        f"no changes of type updated since {at[3]}\n"
    )


def test_an_unknown_change_type_is_a_usage_error(cli, tmp_path):
    result = cli("changes", "--type", "created,moved", "--database-url", f"sqlite:///{tmp_path / 'k.db'}")

    assert (result.exit_code, result.out) == (2, "")
    assert result.err.splitlines()[-1] == (
        "katapult-etl changes: error: argument --type: 'moved' is not a change type: give any of created, updated, "
        "removed, restored, comma-separated"
    )


def test_changes_since_last_run_are_those_of_the_newest_succeeded_run_of_each_scope(cli, database_url, api):
    three_runs(cli, database_url, api)
    api.organizations = {
        "org_acme": {
            "sub_domain": "acme",
            "packages": [{**api.packages[0], "id": "vmpkg_private0000001", "name": "ACME-1", "permalink": "acme-1"}],
        }
    }
    sync_ok(cli, database_url, api, "--organization-id", "org_acme", env={"KATAPULT_API_TOKEN": DEFAULT_TOKEN})
    api.add_fault(Fault(error_code="route_not_found"))
    assert cli("sync", "--database-url", database_url, "--api-url", api.url).exit_code == 1  # run 5 failed
    at = {run: second(instant) for run, instant in merge_times(database_url).items()}
    acme = "organization[id]=org_acme"

    assert read(cli, database_url, "changes", "--since", "last-run").splitlines() == [
        f"changed_at            change    run  {'scope':25}  permalink  package_id              changed_fields",
        f"{at[3]}  restored    3  {'public':25}  rock-12    {ROCK_12}",
        f"{at[3]}  restored    3  {'public':25}  rock-6     {ROCK_6}  storage_in_gb",
        f"{at[4]}  created     4  {acme}  acme-1     vmpkg_private0000001",
    ]
    assert [
        change["sync_run_id"]
        for change in json.loads(read(cli, database_url, "changes", "--since", "last-run", "--scope", acme, "--json"))
    ] == [4]
    assert read(cli, database_url, "changes", "--since", "last-run", "--type", "updated") == (
        "no changes of type updated in runs 3, 4\n"
    )


def test_changes_since_last_run_before_any_run_succeeded(cli, database_url, api):
    api.add_fault(Fault(error_code="route_not_found"))
    assert cli("sync", "--database-url", database_url, "--api-url", api.url).exit_code == 1

    assert read(cli, database_url, "changes", "--since", "last-run") == "no succeeded run yet\n"
    assert read(cli, database_url, "changes", "--since", "last-run", "--scope", "public") == (
        "no succeeded run of public yet\n"
    )


def test_a_scope_in_a_database_without_runs_says_so(cli, database_url):
    engine = open_engine(database_url)
    with engine.begin() as connection:
        command.upgrade(alembic_config(connection), "head")
    engine.dispose()

    result = cli("changes", "--scope", "public", "--database-url", database_url)

    assert (result.exit_code, result.out, result.err) == (
        2,
        "",
        "katapult-etl: --scope 'public': no run in this database had that scope; it has no runs yet\n",
    )


def test_changes_as_csv_and_json_lines(cli, tmp_path, api):
    url = f"sqlite:///{tmp_path / 'katapult.db'}"
    three_runs(cli, url, api)
    at = {run: iso(instant) for run, instant in merge_times(url).items()}

    assert read(cli, url, "changes", "--since", "last-run", "--format", "csv").splitlines() == [
        "package_id,permalink,changed_at,change_type,sync_run_id,scope,changed_fields",
        f"{ROCK_12},rock-12,{at[3]},restored,3,public,",
        f"{ROCK_6},rock-6,{at[3]},restored,3,public,storage_in_gb",
    ]
    assert read(cli, url, "changes", "--since", "last-run", "--format", "jsonl").splitlines() == [
        json.dumps(
            {
                "package_id": ROCK_12,
                "permalink": "rock-12",
                "changed_at": at[3],
                "change_type": "restored",
                "sync_run_id": 3,
                "scope": "public",
                "changed_fields": [],
            }
        ),
        json.dumps(
            {
                "package_id": ROCK_6,
                "permalink": "rock-6",
                "changed_at": at[3],
                "change_type": "restored",
                "sync_run_id": 3,
                "scope": "public",
                "changed_fields": ["storage_in_gb"],
            }
        ),
    ]
    assert read(cli, url, "changes", "--since", "2099-01-01", "--format", "csv") == (
        "package_id,permalink,changed_at,change_type,sync_run_id,scope,changed_fields\n"
    )


def test_json_and_another_format_together_is_a_usage_error(cli, tmp_path):
    result = cli("changes", "--json", "--format", "csv", "--database-url", f"sqlite:///{tmp_path / 'k.db'}")

    assert (result.exit_code, result.out) == (2, "")
    assert result.err.splitlines()[-1] == (
        "katapult-etl changes: error: argument --format: not allowed with argument --json"
    )


@pytest.mark.parametrize(
    ("text", "since"),
    [
        ("2w", datetime(2026, 2, 22, 12, 30, tzinfo=UTC)),
        ("7d", datetime(2026, 3, 1, 12, 30, tzinfo=UTC)),
        ("24h", datetime(2026, 3, 7, 12, 30, tzinfo=UTC)),
        ("90m", datetime(2026, 3, 8, 11, 0, tzinfo=UTC)),
        ("2026-03-01", datetime(2026, 3, 1, tzinfo=UTC)),
        ("2026-03-01T06:15", datetime(2026, 3, 1, 6, 15, tzinfo=UTC)),
        ("2026-03-01 06:15:30Z", datetime(2026, 3, 1, 6, 15, 30, tzinfo=UTC)),
        ("2026-03-01T08:15+02:00", datetime(2026, 3, 1, 6, 15, tzinfo=UTC)),
    ],
)
def test_since_takes_an_age_a_date_or_a_utc_time(text, since):
    assert parse_since(text, NOW) == since


def test_a_since_that_is_neither_is_a_usage_error(cli, database_url, api):
    sync_ok(cli, database_url, api)

    result = cli("changes", "--since", "last week", "--database-url", database_url)

    assert (result.exit_code, result.err) == (
        2,
        "katapult-etl: --since 'last week': give an age (2w, 7d, 24h, 30m), a date (2026-03-01), a UTC date "
        "and time (2026-03-01T12:00) or last-run\n",
    )


# -- reading only ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("command_line", [["runs"], ["history", "rock-1"], ["changes"], ["packages"]])
def test_the_commands_never_create_a_database(cli, tmp_path, command_line):
    path = tmp_path / "nothing.db"

    result = cli(*command_line, "--database-url", f"sqlite:///{path}")

    assert (result.exit_code, result.out) == (1, "")
    assert result.err == f"katapult-etl: {path} does not exist: run `katapult-etl sync` first\n"
    assert not path.exists()


def test_the_commands_never_migrate_a_database(cli, database_url):
    engine = open_engine(database_url)
    with engine.begin() as connection:
        command.upgrade(alembic_config(connection), "0001")
    engine.dispose()

    result = cli("runs", "--database-url", database_url)

    assert (result.exit_code, result.out) == (1, "")
    assert result.err == (
        f"katapult-etl: the database schema is at revision 0001, not {head_revision()}: "
        "run `katapult-etl db upgrade` (or a sync) first\n"
    )
    assert query(database_url, "SELECT version_num FROM alembic_version") == [("0001",)]


def test_a_limit_below_one_is_a_usage_error(cli, database_url):
    result = cli("runs", "--limit", "0", "--database-url", database_url)

    assert (result.exit_code, result.out) == (2, "")
    assert result.err.endswith("error: argument --limit: must be a whole number of at least 1, not '0'\n")


# -- tables ----------------------------------------------------------------------------------------------


def test_tables_align_columns_and_never_cut_a_cell():
    error = "database error: " + "x" * 300

    assert aligned(("id", "status", "error"), [(7, "failed", error), (12, "succeeded", None)], right=(0,)) == [
        "id  status     error",
        f" 7  failed     {error}",
        "12  succeeded",
    ]
