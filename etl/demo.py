"""`katapult-etl demo`: the whole job, offline, in one command.

It starts the built-in fake Katapult API on a free loopback port with Katapult's 20-package public
catalogue as recorded (etl/testing/catalogue.py), syncs it into a new SQLite file, changes two packages and
withdraws one, syncs again, and hands each run and its changes to the caller. No token, no network.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from .config import Settings
from .database import reading
from .errors import ConfigError
from .pipeline import Hooks, run_sync
from .reports import Change, ChangeFilter, find_changes
from .results import RunResult
from .testing.catalogue import RECORDED_AS_OF
from .testing.fakeapi import FakeKatapult

__all__ = ["BETWEEN_THE_SYNCS", "RECORDED_AS_OF", "check_new", "run_demo"]

# What change_a_few does, told between the two syncs.
BETWEEN_THE_SYNCS = "Katapult changes ROCK-1 and BOULDER-20 and withdraws ROCK-288; the second sync finds:"


def check_new(database: Path) -> None:
    """The demo writes a new database only: refused before anything starts or is printed."""
    if database.exists():
        raise ConfigError(f"{database} exists: the demo writes a new database (remove it or name another)")
    if not database.parent.is_dir():
        raise ConfigError(f"{database.parent} is not a folder: the demo cannot write {database.name} there")


def run_demo(database: Path, hooks: Hooks, on_run: Callable[[RunResult, list[Change]], None]) -> None:
    """Two syncs of the fake public catalogue into a new SQLite file, with changes in between."""
    check_new(database)
    url = f"sqlite:///{database}"

    def sync(settings: Settings) -> None:
        run = run_sync(settings, hooks)
        run_ids = () if run.run_id is None else (run.run_id,)
        with reading(url) as connection:
            changes = find_changes(connection, ChangeFilter(run_ids=run_ids))
        on_run(run, changes)

    with FakeKatapult() as api:
        settings = Settings(database_url=url, api_url=api.url)
        sync(settings)
        change_a_few(api.packages)
        sync(settings)


def change_a_few(packages: list[dict[str, Any]]) -> None:
    """What a catalogue update might look like: two packages change, one is withdrawn."""
    by_name = {package["name"]: package for package in packages}
    by_name["ROCK-1"]["storage_in_gb"] = 20
    by_name["BOULDER-20"]["cpu_cores"] = 4
    by_name["BOULDER-20"]["use_dedicated_cpus"] = True
    packages.remove(by_name["ROCK-288"])
