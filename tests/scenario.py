"""One story the view and command tests share: the public catalogue, then two runs that change it.

run 1: the 20 public packages are created
run 2: ROCK-1 gets 2 cores and 2 GB; ROCK-3 gets a key katapult-etl has no column for;
       ROCK-6 and ROCK-12 are removed
run 3: ROCK-6 comes back with 80 GB of storage; ROCK-12 comes back as it was
"""

from __future__ import annotations

from sqlalchemy import create_engine, select

from etl.models import PackageSnapshot, SyncRun

from .helpers import sync_ok

ROCK_1 = "vmpkg_dhG25G5SX3HrA5j5"
ROCK_3 = "vmpkg_Eh5LYVKScVHpj7sM"
ROCK_6 = "vmpkg_dMeEyd1g8hwIlxR8"
ROCK_12 = "vmpkg_vYQHiDoHeSvsFCFI"


def three_runs(cli, database_url, api) -> None:
    sync_ok(cli, database_url, api)
    by_id = {package["id"]: package for package in api.packages}
    by_id[ROCK_1].update(cpu_cores=2, memory_in_gb=2)
    by_id[ROCK_3]["launch_price"] = {"amount": 5}
    api.packages = [package for package in api.packages if package["id"] not in (ROCK_6, ROCK_12)]
    sync_ok(cli, database_url, api)
    by_id[ROCK_6]["storage_in_gb"] = 80
    api.packages += [by_id[ROCK_6], by_id[ROCK_12]]
    sync_ok(cli, database_url, api)


def run_times(database_url) -> dict[int, tuple]:
    """(started_at, finished_at) of each run, as aware UTC datetimes."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(select(SyncRun.id, SyncRun.started_at, SyncRun.finished_at))
            return {run_id: (started, finished) for run_id, started, finished in rows}
    finally:
        engine.dispose()


def merge_times(database_url) -> dict[int, object]:
    """When each run that wrote versions merged (its versions' valid_from), as aware UTC datetimes."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(select(PackageSnapshot.sync_run_id, PackageSnapshot.valid_from).distinct())
            return dict(rows.all())
    finally:
        engine.dispose()
