"""A clock that goes back (an NTP step, a VM restored, two cron hosts on one database) cannot break the
history: each time a run records is the later of its clock and just after the newest time recorded."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from etl.clock import RESOLUTION, RunClock

from .helpers import query, sync_ok
from .scenario import ROCK_1, ROCK_6, ROCK_12, run_times

NOON = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
TICK = RESOLUTION


def at(instant: datetime):
    return lambda: instant


def test_a_clock_set_back_an_hour_cannot_break_the_history(cli, database_url, api):
    by_id = {package["id"]: package for package in api.packages}
    cli.wall_clock = at(NOON - timedelta(minutes=2))
    sync_ok(cli, database_url, api)  # run 1 creates the 20 packages
    cli.wall_clock = at(NOON)
    by_id[ROCK_1]["cpu_cores"] = 2
    api.packages.remove(by_id[ROCK_12])
    sync_ok(cli, database_url, api)  # run 2, at noon: updates ROCK-1, removes ROCK-12
    cli.wall_clock = at(NOON - timedelta(hours=1))
    by_id[ROCK_1]["cpu_cores"] = 3
    api.packages.remove(by_id[ROCK_6])
    api.packages.append(by_id[ROCK_12])

    result = sync_ok(cli, database_url, api)  # run 3, at 11:00: updates ROCK-1, removes ROCK-6, restores ROCK-12

    # Run 2 merged just after it started at noon, and finished then: run 3 starts a tick later.
    assert result.err == (
        "katapult-etl: WARNING the clock is 3600.0 s behind the last recorded run: using 2026-03-01T12:00:00.000002Z\n"
    )
    assert "updated=1 restored=1 removed=1" in result.out
    times = run_times(database_url)
    assert times == {
        1: (NOON - timedelta(minutes=2), NOON - timedelta(minutes=2) + TICK),
        2: (NOON, NOON + TICK),
        3: (NOON + 2 * TICK, NOON + 3 * TICK),
    }
    assert query(database_url, "SELECT COUNT(*) FROM package_snapshots WHERE valid_to < valid_from") == [(0,)]
    assert versions(database_url, ROCK_1) == [
        (1, NOON - timedelta(minutes=2) + TICK, NOON + TICK),
        (2, NOON + TICK, NOON + 3 * TICK),
        (3, NOON + 3 * TICK, None),
    ]
    assert versions(database_url, ROCK_12) == [
        (1, NOON - timedelta(minutes=2) + TICK, NOON + TICK),
        (3, NOON + 3 * TICK, None),
    ]
    assert changes(cli, database_url) == [
        ("created", 1, ROCK_1),
        ("updated", 2, ROCK_1),
        ("updated", 3, ROCK_1),
        ("created", 1, ROCK_6),
        ("removed", 3, ROCK_6),
        ("created", 1, ROCK_12),
        ("removed", 2, ROCK_12),
        ("restored", 3, ROCK_12),
    ]
    history = cli("history", "--database-url", database_url, "--json", ROCK_12)
    assert [(c["change_type"], c["sync_run_id"]) for c in json.loads(history.out)] == [
        ("created", 1),
        ("removed", 2),
        ("restored", 3),
    ]


def versions(database_url, package_id):
    rows = query(
        database_url,
        "SELECT sync_run_id, valid_from, valid_to FROM package_snapshots WHERE package_id = :id ORDER BY id",
        id=package_id,
    )
    return [(run, _utc(start), _utc(end)) for run, start, end in rows]


def changes(cli, database_url):
    """(change_type, run, package) of ROCK-1, ROCK-6 and ROCK-12, in the order `changes` lists them."""
    listed = cli("changes", "--database-url", database_url, "--json", "--since", "2026-01-01")
    watched = (ROCK_1, ROCK_6, ROCK_12)
    ordered = [(c["change_type"], c["sync_run_id"], c["package_id"]) for c in json.loads(listed.out)]
    return sorted((c for c in ordered if c[2] in watched), key=lambda c: watched.index(c[2]))


def _utc(value):
    """A time as the database driver gives it (naive UTC text or datetime on SQLite and MariaDB)."""
    if value is None or (isinstance(value, datetime) and value.tzinfo is not None):
        return value
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC)


def test_the_run_clock_never_goes_back_and_warns_once(caplog):
    readings = iter([NOON, NOON - timedelta(seconds=30), NOON - timedelta(seconds=20), NOON + timedelta(hours=1)])
    clock = RunClock(lambda: next(readings))
    clock.not_before(NOON - timedelta(hours=1))

    assert clock.now() == NOON  # the clock is ahead of what is recorded: it wins
    clock.not_before(NOON)
    assert clock.now() == NOON + TICK
    assert clock.now() == NOON + TICK
    assert clock.now() == NOON + timedelta(hours=1)
    assert [record.getMessage() for record in caplog.records] == [
        "the clock is 30.0 s behind the last recorded run: using 2026-03-01T12:00:00.000001Z"
    ]
