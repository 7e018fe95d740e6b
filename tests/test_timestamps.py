"""Timestamps are UTC instants kept to the microsecond on every database (DATETIME(6) on MySQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from etl.database import open_engine
from etl.models import Package, PackageListing, PackageSnapshot, SyncRun

START_TIME = datetime(2026, 3, 1, 12, 34, 56, 789012, tzinfo=UTC)
# With the clock stopped, the merge comes a microsecond after the run's start (etl/clock.py).
MERGE_TIME = START_TIME + timedelta(microseconds=1)


def test_a_version_is_valid_from_the_merge_time_to_the_microsecond(cli, database_url, api):
    cli.wall_clock = lambda: START_TIME

    result = cli("sync", "--database-url", database_url, "--api-url", api.url)

    assert result.exit_code == 0, result.err
    engine = open_engine(database_url)
    with Session(engine) as session:
        assert session.execute(select(SyncRun.started_at, SyncRun.finished_at)).all() == [(START_TIME, MERGE_TIME)]
        assert set(session.scalars(select(PackageSnapshot.valid_from))) == {MERGE_TIME}
        assert set(session.execute(select(Package.first_seen_at, Package.last_seen_at))) == {(MERGE_TIME, MERGE_TIME)}
        assert set(session.scalars(select(PackageListing.last_seen_at))) == {MERGE_TIME}
    engine.dispose()
