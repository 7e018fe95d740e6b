"""`katapult-etl demo`: the offline tour, on a new SQLite file."""

from __future__ import annotations

import re

from .conftest import query


def test_the_demo_syncs_twice_and_shows_what_changed(cli, tmp_path):
    database = tmp_path / "demo.db"

    result = cli("demo", "--database", str(database))

    assert result.exit_code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0] == (
        "Starting a fake Katapult API on 127.0.0.1 with Katapult's 20-package public catalogue "
        "as its API answered it on 2023-03-23."
    )
    assert re.fullmatch(
        r"sync succeeded: scope=public api=public pages=1 packages_seen=20 created=20 updated=0 "
        r"restored=0 removed=0 unchanged=0 seconds=\d+\.\d\d run=1",
        lines[1],
    )
    assert re.fullmatch(
        r"sync succeeded: scope=public api=public pages=1 packages_seen=19 created=0 updated=2 "
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


# Katapult's answer to GET /core/v1/virtual_machine_packages?page=1 of 23 March 2023, as recorded by the
# public test suites of its Terraform provider and Go client: (id, name, cores, memory, storage).
RECORDED_PUBLIC_CATALOGUE = [
    ("vmpkg_dhG25G5SX3HrA5j5", "ROCK-1", 1, 1, 10),
    ("vmpkg_Eh5LYVKScVHpj7sM", "ROCK-3", 1, 3, 25),
    ("vmpkg_dMeEyd1g8hwIlxR8", "ROCK-6", 2, 6, 50),
    ("vmpkg_vYQHiDoHeSvsFCFI", "ROCK-12", 4, 12, 100),
    ("vmpkg_WHJ4euoDO9S5Ncrc", "ROCK-18", 6, 18, 150),
    ("vmpkg_Xr1hcf7e1oZYZMkK", "BOULDER-20", 2, 20, 25),
    ("vmpkg_tBK6cizGTf9GhZpg", "ROCK-24", 8, 24, 200),
    ("vmpkg_VnOqg6SyU8vqLf8m", "ROCK-36", 12, 36, 300),
    ("vmpkg_X3nS8we8RuNFi2ke", "BOULDER-40", 4, 40, 50),
    ("vmpkg_7k6bXXWeEXIc17Yt", "ROCK-48", 16, 48, 400),
    ("vmpkg_7EjHNfEELrD0z26e", "ROCK-72", 24, 72, 600),
    ("vmpkg_Vv3avl0BcXsHoq6t", "BOULDER-80", 8, 80, 100),
    ("vmpkg_O2mMiznAzunoUd91", "ROCK-96", 32, 96, 800),
    ("vmpkg_uxUwCBITlkLhmSqo", "ROCK-144", 48, 144, 1200),
    ("vmpkg_N9v00VtGzaJShhhN", "BOULDER-160", 16, 160, 200),
    ("vmpkg_2dO1OYPl4pcNEKEE", "ROCK-192", 64, 192, 1600),
    ("vmpkg_ubLZ0i8iCwYo7pPr", "ROCK-288", 96, 288, 2400),
    ("vmpkg_25zXSyE1xJgRHKwK", "BOULDER-320", 32, 320, 400),
    ("vmpkg_CaSziLoMYOKS1Pxi", "BOULDER-640", 64, 640, 800),
    ("vmpkg_GDVwfn0oSCGPbqsE", "BOULDER-960", 96, 960, 1200),
]


def test_the_demos_first_sync_stores_katapults_recorded_catalogue(cli, tmp_path):
    database = tmp_path / "demo.db"

    assert cli("demo", "--database", str(database)).exit_code == 0

    first_versions = query(
        f"sqlite:///{database}",
        "SELECT package_id, name, cpu_cores, memory_in_gb, storage_in_gb FROM package_snapshots "
        "WHERE sync_run_id = 1",
    )
    assert sorted(first_versions) == sorted(RECORDED_PUBLIC_CATALOGUE)


def test_the_demo_never_overwrites_a_database(cli, tmp_path):
    database = tmp_path / "mine.db"
    database.write_text("precious")

    result = cli("demo", "--database", str(database))

    assert result.exit_code == 2
    assert result.err == (
        f"katapult-etl: {database} exists: the demo writes a new database (remove it or name another)\n"
    )
    assert database.read_text() == "precious"
