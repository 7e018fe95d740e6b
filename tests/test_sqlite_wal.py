"""SQLite in WAL journal mode: a reader's long read transaction (a dashboard) never blocks a sync."""

from __future__ import annotations

import sqlite3

from etl.testing.catalogue import synthetic_catalogue

from .helpers import sync_ok

PACKAGES = "SELECT id, memory_in_gb, removed_at IS NOT NULL FROM packages ORDER BY id"


def test_a_reader_holding_a_read_transaction_does_not_block_a_sync(cli, api, tmp_path):
    path = tmp_path / "katapult.db"
    api.packages = synthetic_catalogue(12)
    sync_ok(cli, f"sqlite:///{path}", api)
    reader = sqlite3.connect(path, isolation_level=None)
    try:
        reader.execute("BEGIN")
        before = reader.execute(PACKAGES).fetchall()
        gone = api.packages.pop()
        api.packages[0]["memory_in_gb"] += 1
        api.packages.append(synthetic_catalogue(1, seed=9)[0])

        # A short busy timeout: in rollback-journal mode the sync would wait for the reader, then fail.
        result = sync_ok(cli, f"sqlite:///{path}?timeout=1", api)

        assert (result.exit_code, result.err) == (0, "")
        assert "created=1 updated=1 restored=0 removed=1 unchanged=10" in result.out
        assert reader.execute(PACKAGES).fetchall() == before  # the reader still sees the state before
        reader.execute("COMMIT")
        after = dict((package_id, rest) for package_id, *rest in reader.execute(PACKAGES))
    finally:
        reader.close()
    assert after[gone["id"]] == [gone["memory_in_gb"], 1]
    assert after[api.packages[0]["id"]] == [api.packages[0]["memory_in_gb"], 0]
    assert len(after) == 13


def test_the_job_puts_a_sqlite_file_in_wal_mode_once_and_the_file_keeps_it(cli, api, tmp_path):
    path = tmp_path / "katapult.db"
    sqlite3.connect(path).close()  # an empty file, in SQLite's default rollback-journal mode

    result = cli("db", "upgrade", "--database-url", f"sqlite:///{path}")

    assert result.exit_code == 0, result.err
    # Nothing is left beside the file once the job has closed it: no -wal, no -shm.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["katapult.db"]
    connection = sqlite3.connect(path)
    try:
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        connection.close()
