"""`katapult-etl demo`: the offline tour, on a new SQLite file."""

from __future__ import annotations

import re

from .helpers import query, second
from .scenario import merge_times


def test_the_demo_tells_its_story_in_one_line_for_the_creations_and_a_table_for_the_changes(cli, tmp_path):
    database = tmp_path / "demo.db"

    result = cli("demo", "--database", str(database))

    assert (result.exit_code, result.err) == (0, "")
    at = second(merge_times(f"sqlite:///{database}")[2])
    told = re.sub(r"seconds=\d+\.\d\d", "seconds=S", result.out)
    assert told.splitlines() == [
        "Starting a fake Katapult API on 127.0.0.1 with Katapult's 20-package public catalogue "
        "as its API answered it on 2023-03-23.",
        "sync succeeded: scope=public api=public pages=1 packages_seen=20 created=20 updated=0 "
        "restored=0 removed=0 unchanged=0 seconds=S run=1",
        "run 1 created the 20 packages of the public catalogue",
        "",
        "Katapult changes ROCK-1 and BOULDER-20 and withdraws ROCK-288; the second sync finds:",
        # pages=2: the withdrawn package is missed by the walk, then by the walk that confirms it.
        "sync succeeded: scope=public api=public pages=2 packages_seen=19 created=0 updated=2 "
        "restored=0 removed=1 unchanged=17 seconds=S run=2",
        "changed_at            change   run  scope   permalink   package_id              changed_fields",
        f"{at}  updated    2  public  boulder-20  vmpkg_Xr1hcf7e1oZYZMkK  cpu_cores,use_dedicated_cpus",
        f"{at}  updated    2  public  rock-1      vmpkg_dhG25G5SX3HrA5j5  storage_in_gb",
        f"{at}  removed    2  public  rock-288    vmpkg_ubLZ0i8iCwYo7pPr",
        "",
        f"The database is {database}; try:",
        f"  export DATABASE_URL=sqlite:///{database}",
        "  katapult-etl history rock-1",
        "  katapult-etl changes --since last-run",
        "  katapult-etl packages",
        "  katapult-etl runs",
        f"  sqlite3 {database} 'SELECT name, cpu_cores, memory_in_gb FROM current_packages'",
    ]
    assert query(f"sqlite:///{database}", "SELECT COUNT(*) FROM current_packages") == [(19,)]


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
        "SELECT package_id, name, cpu_cores, memory_in_gb, storage_in_gb FROM package_snapshots WHERE sync_run_id = 1",
    )
    assert sorted(first_versions) == sorted(RECORDED_PUBLIC_CATALOGUE)


def test_the_demo_never_overwrites_a_database(cli, tmp_path):
    database = tmp_path / "mine.db"
    database.write_text("precious")

    result = cli("demo", "--database", str(database))

    assert (result.exit_code, result.out) == (2, "")  # no banner: the demo checks before it starts
    assert result.err == (
        f"katapult-etl: {database} exists: the demo writes a new database (remove it or name another)\n"
    )
    assert database.read_text() == "precious"


def test_the_demo_in_a_missing_folder_is_refused_before_its_banner(cli, tmp_path):
    database = tmp_path / "missing" / "demo.db"

    result = cli("demo", "--database", str(database))

    assert (result.exit_code, result.out) == (2, "")
    assert result.err == (
        f"katapult-etl: {tmp_path / 'missing'} is not a folder: the demo cannot write demo.db there\n"
    )
    assert not (tmp_path / "missing").exists()
