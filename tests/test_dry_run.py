"""`sync --dry-run`: walks and reports what would be created, updated and removed; writes nothing at all."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from etl.database import head_revision
from etl.testing.fakeapi import Fault

from .helpers import every_table, sync_in_fives


def files_beside(database_url: str) -> dict[str, str]:
    """The SQLite file and its neighbours (journal, lock file), by name and content hash."""
    if make_url(database_url).get_backend_name() != "sqlite":
        return {}
    folder = Path(make_url(database_url).database).parent
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in folder.iterdir()}


def test_a_dry_run_reports_what_would_change_and_writes_nothing(cli, database_url, api, seeded):
    tables, files = every_table(database_url), files_beside(database_url)

    result = sync_in_fives(cli, database_url, api, "--dry-run")

    assert (result.exit_code, result.err) == (0, "")
    assert result.out.startswith(
        "dry run: scope=public api=public pages=6 packages_seen=12 created=1 updated=1 restored=0 removed=1 "
        "unchanged=10 seconds="
    )
    assert " run=" not in result.out
    assert len(api.requests) == 6  # the package gone is confirmed by a second walk, as in a real run
    assert every_table(database_url) == tables
    assert files_beside(database_url) == files


def test_a_dry_run_says_it_would_refuse_a_mass_removal(cli, database_url, api, seeded):
    tables = every_table(database_url)
    del api.packages[2:]

    result = sync_in_fives(cli, database_url, api, "--dry-run")

    assert result.exit_code == 4
    assert "removed=0" in result.out
    assert result.err == (
        "katapult-etl: mass removal refused: 10 of the 12 packages listed in public are missing; nothing removed "
        "(run again with --allow-mass-removal if that is right)\n"
    )
    assert every_table(database_url) == tables


def test_a_dry_run_that_fails_leaves_no_run_row(cli, database_url, api, seeded):
    tables = every_table(database_url)
    api.add_fault(Fault(status=404, error_code="route_not_found", page=2))

    result = sync_in_fives(cli, database_url, api, "--dry-run")

    assert result.exit_code == 1
    assert result.err.endswith("HTTP 404 route_not_found: No route matches the path and method provided\n")
    assert every_table(database_url) == tables


def test_a_dry_run_needs_an_existing_database(cli, api, tmp_path):
    path = tmp_path / "katapult.db"

    result = cli("sync", "--database-url", f"sqlite:///{path}", "--api-url", api.url, "--dry-run")

    assert (result.exit_code, result.out) == (1, "")
    assert result.err == (
        f"katapult-etl: {path} does not exist: a dry run compares with a database and writes nothing\n"
    )
    assert list(tmp_path.iterdir()) == []
    assert api.requests == []


def test_a_dry_run_needs_a_database_at_the_newest_schema(cli, database_url, api):
    if make_url(database_url).get_backend_name() == "sqlite":
        sqlite3.connect(make_url(database_url).database).close()  # an empty file
    files = files_beside(database_url)

    result = cli("sync", "--database-url", database_url, "--api-url", api.url, "--dry-run")

    assert (result.exit_code, result.out) == (1, "")
    assert result.err == (
        f"katapult-etl: the database schema is at revision none, not {head_revision()}: "
        "run `katapult-etl db upgrade` first (a dry run writes nothing)\n"
    )
    assert every_table(database_url) == {}
    assert files_beside(database_url) == files
    assert api.requests == []


def test_a_dry_run_does_not_wait_for_another_writer(cli, api, tmp_path):
    url = f"sqlite:///{tmp_path / 'katapult.db'}"
    assert cli("sync", "--database-url", url, "--api-url", api.url).exit_code == 0
    writer = sqlite3.connect(tmp_path / "katapult.db", isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # e.g. a sync of another scope, merging
    try:
        result = cli("sync", "--database-url", f"{url}?timeout=0.2", "--api-url", api.url, "--dry-run")
    finally:
        writer.close()

    assert (result.exit_code, result.err) == (0, ""), result.err
    assert "unchanged=20" in result.out


def _changes_said(out: str) -> str:
    """A run's summary without its prefix ("dry run:", "sync succeeded:"), what only a real run has (its
    run id) or what varies (seconds): the status is in the exit code."""
    words = out.split(": ", 1)[1].split()
    return " ".join(word for word in words if not word.startswith(("run=", "seconds=")))


def _spoil_the_newcomer(packages: list[dict[str, Any]]) -> None:
    packages[-1]["memory_in_gb"] = -(2**63) - 1  # beyond a 64-bit integer: not stored


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda packages: None, id="created-updated-removed"),
        pytest.param(lambda packages: packages.__delitem__(slice(2, None)), id="mass-removal-refused"),
        pytest.param(_spoil_the_newcomer, id="package-not-stored"),
    ],
)
def test_a_dry_run_says_what_the_real_run_then_does(cli, database_url, api, seeded, change):
    change(api.packages)

    dry = sync_in_fives(cli, database_url, api, "--dry-run")
    real = sync_in_fives(cli, database_url, api)

    assert dry.out.startswith("dry run: ")
    assert (dry.exit_code, dry.err, _changes_said(dry.out)) == (real.exit_code, real.err, _changes_said(real.out))
