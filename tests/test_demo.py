"""`katapult-etl demo`: the offline tour, on a new SQLite file."""

from __future__ import annotations

import re

from .conftest import query


def test_the_demo_syncs_twice_and_shows_what_changed(cli, tmp_path):
    database = tmp_path / "demo.db"

    result = cli("demo", "--database", str(database))

    assert result.exit_code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0] == "Starting a fake Katapult API on 127.0.0.1 with the real 20-package public catalogue."
    assert re.fullmatch(
        r"sync succeeded: scope=public api=public pages=1 packages_seen=20 created=20 updated=0 "
        r"restored=0 removed=0 unchanged=0 seconds=\d+\.\d\d run=1",
        lines[1],
    )
    # pages=2: the withdrawn package is missed by the walk, then by the walk that confirms it.
    assert re.fullmatch(
        r"sync succeeded: scope=public api=public pages=2 packages_seen=19 created=0 updated=2 "
        r"restored=0 removed=1 unchanged=17 seconds=\d+\.\d\d run=2",
        lines[2],
    )
    events = [line.split()[1:5] + line.split()[6:] for line in lines[5:] if re.match(r"\d{4}-", line)]
    assert len(events) == 23
    assert events[-3:] == [
        ["updated", "2", "public", "boulder-20", "cpu_cores,use_dedicated_cpus"],
        ["updated", "2", "public", "rock-1", "storage_in_gb"],
        ["removed", "2", "public", "rock-288"],
    ]
    assert f"The database is {database}; try:" in result.out
    url = f"sqlite:///{database}"
    assert query(url, "SELECT COUNT(*) FROM current_packages") == [(19,)]


def test_the_demo_never_overwrites_a_database(cli, tmp_path):
    database = tmp_path / "mine.db"
    database.write_text("precious")

    result = cli("demo", "--database", str(database))

    assert result.exit_code == 2
    assert result.err == (
        f"katapult-etl: {database} exists: the demo writes a new database (remove it or name another)\n"
    )
    assert database.read_text() == "precious"
