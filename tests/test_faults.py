"""The fault matrix: each way Katapult, the network or the database can fail, on SQLite and PostgreSQL.

Every case starts from a synced catalogue of 12 packages (three pages of five) that has since changed
(one package updated, one gone, one new), so that a run which landed would change the tables. It
scripts a fault into the fake API, runs `katapult-etl sync` over real HTTP, and asserts the exit code,
the message, the run's `sync_runs` row, and every row of the catalogue tables.
"""

from __future__ import annotations

import json
import socket
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from etl.database import alembic_config, head_revision
from etl.testing.catalogue import synthetic_catalogue
from etl.testing.fakeapi import DEFAULT_TOKEN, ERRORS, Fault

from .helpers import (
    CONFIRMING,
    assert_changed_nothing,
    assert_landed,
    catalogue_tables,
    error_line,
    last_line,
    listed_catalogue,
    query,
    runs,
    scalar,
    sync_in_fives,
    with_short_lock_wait,
)

TOKEN_ENV = {"KATAPULT_API_TOKEN": DEFAULT_TOKEN}


def refusal(code: str) -> str:
    status, description = ERRORS[code]
    return f"Katapult API refused the request: HTTP {status} {code}: {description}"


def page_json(api, number: int, **pagination: Any) -> bytes:
    """The body of page `number` (five packages a page), with `pagination` overriding the real block."""
    total = len(api.packages)
    block = {
        "current_page": number,
        "total_pages": -(-total // 5),
        "total": total,
        "per_page": 5,
        "large_set": False,
        **pagination,
    }
    return json.dumps({"pagination": block, "packages": api.packages[(number - 1) * 5 : number * 5]}).encode()


def requests_for_page(api, number: int) -> int:
    return sum(1 for r in api.requests if r.query.get("page") == str(number))


# -- retried, then the run succeeds ---------------------------------------------------------------

HTML_PAGE = b"<!DOCTYPE html><html><head><title>Maintenance</title></head><body>Back soon</body></html>"
RETRIED_THEN_OK = {
    "429 once": [Fault(error_code="rate_limit_reached", page=2)],
    "429 twice": [Fault(error_code="rate_limit_reached", page=2)] * 2,
    "429 with X-Ratelimit-Remaining 0": [
        Fault(error_code="rate_limit_reached", page=2, headers={"X-Ratelimit-Remaining": "0"})
    ],
    "500": [Fault(status=500, page=2)],
    "502": [Fault(status=502, page=2)],
    "503": [Fault(status=503, page=2)],
    "504": [Fault(status=504, page=2)],
    "502 as an HTML page": [Fault(status=502, body=HTML_PAGE, headers={"Content-Type": "text/html"}, page=2)],
    "connection reset mid-body": [Fault(truncate_body=True, page=2)],
    "body not JSON": [Fault(body=b"upstream connect error or disconnect/reset before headers", page=2)],
    "HTML page with status 200": [Fault(body=HTML_PAGE, headers={"Content-Type": "text/html"}, page=2)],
    "truncated JSON": [Fault(body=b'{"pagination": {"current_page": 2, "total_pages": 3, "tot', page=2)],
}


@pytest.mark.parametrize("faults", RETRIED_THEN_OK.values(), ids=RETRIED_THEN_OK.keys())
def test_a_passing_fault_is_retried_and_the_run_lands_once(cli, database_url, api, seeded, faults):
    for fault in faults:
        api.add_fault(fault)

    result = sync_in_fives(cli, database_url, api)

    assert_landed(database_url, api, seeded, result, retries=len(faults), requests=3 + CONFIRMING + len(faults))
    assert requests_for_page(api, 2) == 2 + len(faults)  # the confirming walk's page 2 too
    assert len(cli.sleeps) == len(faults)
    assert all(0 <= seconds <= 2 for seconds in cli.sleeps)  # full jitter: at most 1 s, then 2 s


def test_retry_after_is_honoured(cli, database_url, api, seeded):
    api.add_fault(Fault(error_code="rate_limit_reached", page=2, headers={"Retry-After": "7"}))
    api.add_fault(Fault(error_code="rate_limit_reached", page=2, headers={"Retry-After": "3"}))

    result = sync_in_fives(cli, database_url, api)

    assert_landed(database_url, api, seeded, result, retries=2)
    assert cli.sleeps == [7.0, 3.0]


def test_a_read_timeout_is_retried(cli, database_url, api, seeded):
    api.add_fault(Fault(delay=1.0, page=2))

    result = sync_in_fives(cli, database_url, api, "--read-timeout", "0.2")

    assert_landed(database_url, api, seeded, result, retries=1)
    assert requests_for_page(api, 2) == 3  # twice in the walk, once in the confirming walk


def test_5xx_that_never_stops_fails_after_max_attempts(cli, database_url, api, seeded):
    api.add_fault(Fault(status=503, page=2), times=50)

    result = sync_in_fives(cli, database_url, api, "--max-attempts", "3")

    assert_changed_nothing(
        database_url, seeded, result, f"gave up on page 2 after 3 attempts: {refusal('service_unavailable')}"
    )
    assert requests_for_page(api, 2) == 3
    assert len(cli.sleeps) == 2


def test_5xx_that_never_stops_fails_when_the_retry_budget_is_spent(cli, database_url, api, seeded):
    api.add_fault(Fault(status=503, page=2, headers={"Retry-After": "40"}), times=50)
    cli.clock = lambda: 0.0  # the failed attempts take no time: the budget is spent on the waits alone

    result = sync_in_fives(cli, database_url, api, "--retry-budget", "100")

    assert_changed_nothing(
        database_url, seeded, result, f"gave up on page 2 after 4 attempts: {refusal('service_unavailable')}"
    )
    assert cli.sleeps == [40.0, 40.0, 20.0]


# -- answers that asking again cannot fix: the run fails at once and changes nothing ---------------

WRONG_SHAPE = {
    "no pagination": (b'{"packages": []}', "page 2 has no 'pagination' object"),
    "no list key": (
        b'{"pagination": {"current_page": 2, "total_pages": 3, "total": 12, "per_page": 5, "large_set": false}}',
        "page 2 has no 'packages' list",
    ),
    "a JSON list": (b"[]", "page 2 has no 'pagination' object"),
    "current_page as text": (
        b'{"pagination": {"current_page": "2", "per_page": 5}, "packages": []}',
        "page 2: pagination.current_page is '2', not a whole number",
    ),
}


@pytest.mark.parametrize("body, message", WRONG_SHAPE.values(), ids=WRONG_SHAPE.keys())
def test_json_of_the_wrong_shape_fails_at_once(cli, database_url, api, seeded, body, message):
    api.add_fault(Fault(body=body, page=2))

    result = sync_in_fives(cli, database_url, api)

    assert_changed_nothing(database_url, seeded, result, message)
    assert requests_for_page(api, 2) == 1
    assert cli.sleeps == []


# A package that cannot be stored as it is (no id, a value of the wrong type, ...): tests/test_odd_packages.py.


def test_unknown_keys_are_kept_in_raw(cli, database_url, api, seeded):
    for package in api.packages:
        package["launch_price"] = {"amount": 5, "currency": "GBP"}

    result = sync_in_fives(cli, database_url, api)

    # New content for every package Katapult still lists: each gets a new version.
    assert_landed(database_url, api, seeded, result, updated=11, unchanged=0)
    raws = query(database_url, "SELECT raw FROM package_snapshots WHERE valid_to IS NULL")
    prices = [(json.loads(raw) if isinstance(raw, str) else raw)["launch_price"] for (raw,) in raws]
    assert prices == [{"amount": 5, "currency": "GBP"}] * 12


def test_keys_older_api_versions_left_out_become_null(cli, database_url, api, seeded):
    for package in api.packages:
        for key in ("group", "use_dedicated_cpus", "monthly_bandwidth_allowance_in_gb", "icon"):
            del package[key]

    result = sync_in_fives(cli, database_url, api)

    assert_landed(database_url, api, seeded, result, updated=11, unchanged=0)
    assert query(
        database_url,
        "SELECT COUNT(*) FROM packages WHERE removed_at IS NULL AND group_id IS NULL AND use_dedicated_cpus IS NULL "
        "AND monthly_bandwidth_allowance_in_gb IS NULL AND icon_url IS NULL",
    ) == [(12,)]


# -- pages that do not add up ----------------------------------------------------------------------


def test_a_page_other_than_the_one_asked_for_fails_the_run(cli, database_url, api, seeded):
    api.add_fault(Fault(body=page_json(api, 1), page=2))

    result = sync_in_fives(cli, database_url, api)

    assert_changed_nothing(database_url, seeded, result, "asked for page 2, Katapult answered page 1")


@pytest.mark.parametrize("large_set", [False, True], ids=["totals", "large_set"])
def test_the_same_page_for_every_page_number_fails_the_run(cli, database_url, api, seeded, large_set):
    api.force_large_set = large_set
    pagination = {"total_pages": None, "total": None, "large_set": True} if large_set else {}
    for number in (2, 3, 4):
        # current_page echoes the number asked for, but the packages are page 1's every time.
        body = json.loads(page_json(api, 1, **pagination))
        body["pagination"]["current_page"] = number
        api.add_fault(Fault(body=json.dumps(body).encode(), page=number))

    result = sync_in_fives(cli, database_url, api, "--concurrency", "1")

    assert_changed_nothing(
        database_url, seeded, result, "page 2 repeats the packages of an earlier page: the API is not paging"
    )


def test_total_pages_growing_by_a_page_during_the_walk_is_followed_then_walked_again(cli, database_url, api, seeded):
    arrivals = synthetic_catalogue(4, seed=4)

    def grow(page: int) -> None:
        if page == 2 and arrivals:
            api.packages.extend(arrivals)
            arrivals.clear()

    api.on_request = grow

    result = sync_in_fives(cli, database_url, api, "--concurrency", "1")

    # Followed to page 4, but its count changed, so not shown complete: walked again, then confirmed.
    assert [r.query["page"] for r in api.requests] == ["1", "2", "3", "4"] * 3
    assert_landed(database_url, api, seeded, result, created=5, pages_fetched=12)


def test_a_catalogue_that_keeps_growing_fails_the_run(cli, database_url, api, seeded):
    def grow(page: int) -> None:
        if page == 2:
            api.packages.extend(synthetic_catalogue(30, seed=page + 100))

    api.on_request = grow

    result = sync_in_fives(cli, database_url, api, "--concurrency", "1")

    assert_changed_nothing(database_url, seeded, result, "the walk passed 4 pages without reaching the end")


def _shift_on_page_2(api, newcomers: list[dict[str, Any]]) -> None:
    """Before each answer to page 2, a newcomer is listed first: one package is seen twice, one missed."""

    def shift(page: int) -> None:
        if page == 2 and newcomers:
            api.packages.insert(0, newcomers.pop(0))

    api.on_request = shift


def test_items_shifting_once_are_walked_again_and_land(cli, database_url, api, seeded):
    _shift_on_page_2(api, synthetic_catalogue(1, seed=5))

    result = sync_in_fives(cli, database_url, api, "--concurrency", "1")

    # Walked again (the count changed), then confirmed: the package gone is missed by both walks.
    assert [r.query["page"] for r in api.requests] == ["1", "2", "3"] * 3
    assert_landed(database_url, api, seeded, result, created=2, pages_fetched=9)


def test_items_shifting_on_every_walk_land_but_remove_nothing(cli, database_url, api, seeded):
    newcomers = synthetic_catalogue(2, seed=5)
    _shift_on_page_2(api, list(newcomers))

    result = sync_in_fives(cli, database_url, api, "--concurrency", "1")

    # Walk 2 saw [x1 p0 p1 p2 p3] [p3 .. p7] [p8 p9 p10 new]: x2 (listed first since page 2) missed.
    reason = (
        "walk not shown complete, nothing removed: Katapult's count changed during the walk: "
        "13 packages in 3 pages on page 1, 14 packages in 3 pages on page 2"
    )
    assert result.exit_code == 3
    assert result.out.startswith(
        "sync incomplete: scope=public api=public pages=6 packages_seen=13 created=2 "
        "updated=1 restored=0 removed=0 unchanged=10 "
    )
    assert last_line(result.err) == error_line(reason)
    assert query(database_url, "SELECT status, error FROM sync_runs ORDER BY id DESC LIMIT 1") == [
        ("incomplete", reason)
    ]
    seen = [package for package in api.packages if package["id"] != newcomers[1]["id"]]
    listed = sorted([package["id"] for package in seen] + [seeded["gone"]])
    assert [package_id for package_id, _ in listed_catalogue(database_url)] == listed
    assert scalar(database_url, "SELECT COUNT(*) FROM packages WHERE removed_at IS NOT NULL") == 0
    assert scalar(database_url, "SELECT COUNT(*) FROM package_listings WHERE unlisted_at IS NOT NULL") == 0


# -- refusals: no retry, Katapult's code and description in the message ---------------------------


def _missing_token(api) -> tuple[list[str], dict[str, str]]:
    api.add_fault(Fault(error_code="missing_api_token"))  # the tool always sends one: Katapult lost it
    return [], TOKEN_ENV


def _invalid_token(api) -> tuple[list[str], dict[str, str]]:
    return [], {"KATAPULT_API_TOKEN": "tok_expired"}


def _scope_not_granted(api) -> tuple[list[str], dict[str, str]]:
    api.tokens[DEFAULT_TOKEN] = set()
    return [], TOKEN_ENV


def _unknown_organization(api) -> tuple[list[str], dict[str, str]]:
    return ["--organization-id", "org_nope"], TOKEN_ENV


def _route_not_found(api) -> tuple[list[str], dict[str, str]]:
    api.add_fault(Fault(error_code="route_not_found"))  # e.g. a wrong --api-url
    return [], {}


REFUSALS = {
    "missing_api_token": _missing_token,
    "invalid_api_token": _invalid_token,
    "scope_not_granted": _scope_not_granted,
    "organization_not_found": _unknown_organization,
    "route_not_found": _route_not_found,
}


@pytest.mark.parametrize("code, arrange", REFUSALS.items(), ids=REFUSALS.keys())
def test_a_refusal_fails_at_once_with_katapults_words(cli, database_url, api, seeded, code, arrange):
    args, env = arrange(api)

    result = sync_in_fives(cli, database_url, api, *args, env=env)

    assert (result.exit_code, result.out, result.err) == (1, "", error_line(refusal(code)))
    assert len(api.requests) == 1
    assert cli.sleeps == []
    assert catalogue_tables(database_url) == seeded["before"]
    assert runs(database_url) == [*seeded["runs"], ("failed", refusal(code))]


@pytest.mark.parametrize("cap, asked", [(100, ["200", "100"]), (30, ["200", "100", "30"])])
def test_a_refused_page_size_falls_back_to_a_smaller_one(cli, database_url, api, seeded, cap, asked):
    api.per_page_cap = cap

    result = sync_in_fives(cli, database_url, api, "--per-page", "200")

    # The confirming walk asks at once for the page size Katapult took.
    assert [r.query["per_page"] for r in api.requests] == [*asked, asked[-1]]
    assert_landed(database_url, api, seeded, result, requests=len(asked) + 1, pages_fetched=2, retries=0)


def test_when_no_page_size_is_accepted_the_run_fails(cli, database_url, api, seeded):
    api.per_page_cap = 20

    result = sync_in_fives(cli, database_url, api, "--per-page", "200")

    assert [r.query["per_page"] for r in api.requests] == ["200", "100", "30"]
    assert_changed_nothing(
        database_url,
        seeded,
        result,
        "Katapult API refused the request: HTTP 400 invalid_argument: The 'per_page' argument is invalid",
    )


def test_an_api_that_refuses_connections_fails_after_max_attempts(cli, database_url, api, seeded):
    closed = socket.create_server(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there now

    result = cli("sync", "--database-url", database_url, "--api-url", f"http://127.0.0.1:{port}", "--max-attempts", "2")

    assert_changed_nothing(
        database_url,
        seeded,
        result,
        f"gave up on page 1 after 2 attempts: cannot connect to http://127.0.0.1:{port}: connection refused",
    )
    assert len(cli.sleeps) == 1


# -- the database ----------------------------------------------------------------------------------


def test_an_unreachable_database_fails_with_exit_1(cli, api):
    result = cli(
        "sync", "--database-url", "postgresql+psycopg://etl:hunter2@127.0.0.1:1/katapult", "--api-url", api.url
    )

    assert result.exit_code == 1
    assert result.out == ""
    assert result.err.startswith("katapult-etl: database error: connection failed: ")
    assert result.err.count("\n") == 1
    assert "hunter2" not in result.err
    assert api.requests == []


def test_a_sqlite_file_in_a_missing_folder_fails_with_exit_1(cli, api, tmp_path):
    path = tmp_path / "nowhere" / "katapult.db"

    result = cli("sync", "--database-url", f"sqlite:///{path}", "--api-url", api.url)

    assert (result.exit_code, result.out) == (1, "")
    assert result.err == error_line(f"cannot create the SQLite database {path}: folder {path.parent} does not exist")
    assert not path.parent.exists()


def test_a_file_that_is_not_a_database_is_left_alone(cli, api, tmp_path):
    path = tmp_path / "notes.txt"
    path.write_bytes(b"these are not the tables you are looking for\n" * 100)

    result = cli("sync", "--database-url", f"sqlite:///{path}", "--api-url", api.url)

    assert (result.exit_code, result.out) == (2, "")
    assert result.err == error_line(f"{path} is not a SQLite database")
    assert path.read_bytes() == b"these are not the tables you are looking for\n" * 100
    assert sorted(tmp_path.iterdir()) == [path]  # no lock file beside it


@contextmanager
def write_lock_taken_on_page(database_url: str, api, page: int) -> Iterator[None]:
    """Another client takes the database's write lock while the fake API answers `page`; held until exit."""
    taken = threading.Event()
    holder: dict[str, Any] = {}

    def take(number: int) -> None:
        if number == page and not taken.is_set():
            holder.update(_take_write_lock(database_url))
            taken.set()

    api.on_request = take
    try:
        yield
    finally:
        api.on_request = None
        assert taken.is_set()
        holder["release"]()


def _take_write_lock(database_url: str) -> dict[str, Any]:
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        connection = sqlite3.connect(url.database, isolation_level=None, check_same_thread=False)
        connection.execute("BEGIN IMMEDIATE")
        return {"release": connection.close}
    engine = create_engine(url.set(query={}))
    connection = engine.connect()
    if url.get_backend_name() == "postgresql":
        connection.execute(text("LOCK TABLE packages IN ACCESS EXCLUSIVE MODE"))
    else:
        connection.execute(text("LOCK TABLES packages WRITE"))

    def release() -> None:
        connection.close()
        engine.dispose()

    return {"release": release}


def test_a_database_locked_by_another_client_fails_the_run_and_the_next_run_lands(cli, database_url, api, seeded):
    impatient = with_short_lock_wait(database_url)

    with write_lock_taken_on_page(database_url, api, page=3):
        result = sync_in_fives(cli, impatient, api, "--concurrency", "1")

    assert (result.exit_code, result.out) == (1, "")
    assert catalogue_tables(database_url) == seeded["before"]
    if make_url(database_url).get_backend_name() == "sqlite":
        # The lock also kept the failure from being recorded: the next run finds the row abandoned.
        assert last_line(result.err) == error_line("database error: database is locked")
        assert runs(database_url) == [*seeded["runs"], ("running", None)]
    else:
        message = {
            "postgresql": "database error: canceling statement due to lock timeout",
            "mysql": "database error: (1205, 'Lock wait timeout exceeded; try restarting transaction')",
        }[make_url(database_url).get_backend_name()]
        assert last_line(result.err) == error_line(message)
        assert runs(database_url) == [*seeded["runs"], ("failed", message)]

    again = sync_in_fives(cli, database_url, api)

    assert_landed(database_url, api, seeded, again)
    assert runs(database_url)[-2][0] == "failed"


def test_a_database_made_by_the_oldest_migration_is_upgraded_and_keeps_its_data(cli, database_url, api):
    oldest = ScriptDirectory.from_config(alembic_config()).get_base()
    engine = create_engine(database_url)
    with engine.begin() as connection:
        command.upgrade(alembic_config(connection), oldest)
        for statement in OLD_ROWS:
            connection.execute(text(statement))
    engine.dispose()

    result = cli("sync", "--database-url", database_url, "--api-url", api.url)

    assert result.exit_code == 0, result.err
    assert "created=19 updated=1 restored=0 removed=0 unchanged=0" in result.out
    assert scalar(database_url, "SELECT version_num FROM alembic_version") == head_revision()
    assert query(database_url, "SELECT id, status FROM sync_runs ORDER BY id") == [(1, "succeeded"), (2, "succeeded")]
    assert query(
        database_url,
        "SELECT valid_to IS NULL, memory_in_gb, sync_run_id FROM package_snapshots "
        "WHERE package_id = 'vmpkg_dhG25G5SX3HrA5j5' ORDER BY valid_from",
    ) == [(False, 2, 1), (True, 1, 2)]
    assert str(
        scalar(database_url, "SELECT first_seen_at FROM packages WHERE id = 'vmpkg_dhG25G5SX3HrA5j5'")
    ).startswith("2025-01-01")


# Rows as the first release wrote them: ROCK-1 with 2 GB (since grown... to 1 GB on the fake API).
OLD_ROWS = (
    "INSERT INTO sync_runs (scope, api, started_at, finished_at, status, pages_fetched, requests, retries, "
    "packages_seen, created, updated, restored, removed, unchanged) VALUES "
    "('public', 'public', '2025-01-01 12:00:00', '2025-01-01 12:00:01', 'succeeded', 1, 1, 0, 1, 1, 0, 0, 0, 0)",
    "INSERT INTO package_groups (id, name, first_seen_at, last_seen_at) VALUES "
    "('vmpkgrp_P5kCZvAtvXRC3sVl', 'Standard vCPU', '2025-01-01 12:00:00', '2025-01-01 12:00:00')",
    "INSERT INTO packages (id, name, permalink, cpu_cores, ipv4_addresses, memory_in_gb, storage_in_gb, privacy, "
    "use_dedicated_cpus, group_id, content_hash, first_seen_at, last_seen_at) VALUES "
    "('vmpkg_dhG25G5SX3HrA5j5', 'ROCK-1', 'rock-1', 1, 1, 2, 10, 'public', false, 'vmpkgrp_P5kCZvAtvXRC3sVl', "
    "'old', '2025-01-01 12:00:00', '2025-01-01 12:00:00')",
    "INSERT INTO package_snapshots (package_id, sync_run_id, valid_from, name, permalink, cpu_cores, "
    "ipv4_addresses, memory_in_gb, storage_in_gb, privacy, use_dedicated_cpus, group_id, group_name, "
    "content_hash, raw) VALUES ('vmpkg_dhG25G5SX3HrA5j5', 1, '2025-01-01 12:00:00', 'ROCK-1', 'rock-1', 1, 1, 2, "
    "10, 'public', false, 'vmpkgrp_P5kCZvAtvXRC3sVl', 'Standard vCPU', 'old', '{\"id\": \"vmpkg_dhG25G5SX3HrA5j5\"}')",
    "INSERT INTO package_listings (package_id, scope, first_seen_at, last_seen_at) VALUES "
    "('vmpkg_dhG25G5SX3HrA5j5', 'public', '2025-01-01 12:00:00', '2025-01-01 12:00:00')",
)
