"""`katapult-etl demo`: the whole job, offline, in one command.

It starts the built-in fake Katapult API on a free loopback port with Katapult's 20-package public
catalogue as recorded (etl/catalogue.py), syncs it into a new SQLite file, changes a few packages and removes one, syncs again, and
returns what changed. No token, no network.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from .catalogue import RECORDED_AS_OF
from .config import Settings
from .database import reading
from .errors import ConfigError
from .fakeapi import FakeKatapult
from .pipeline import Hooks, RunResult, run_sync
from .reports import Change, changes_since
from .types import utc_now


@dataclass(frozen=True)
class DemoResult:
    database: Path
    runs: list[RunResult]
    changes: list[Change]
    since: datetime


def run_demo(database: Path, hooks: Hooks, on_run: Callable[[RunResult], None]) -> DemoResult:
    """Two syncs of the fake public catalogue into a new SQLite file, with changes in between."""
    if database.exists():
        raise ConfigError(f"{database} exists: the demo writes a new database (remove it or name another)")
    url = f"sqlite:///{database}"
    since = utc_now()
    runs: list[RunResult] = []

    def sync(settings: Settings) -> None:
        runs.append(run_sync(settings, hooks))
        on_run(runs[-1])

    with FakeKatapult() as api:
        settings = Settings(database_url=url, api_url=api.url)
        sync(settings)
        change_a_few(api.packages)
        sync(settings)
    with reading(url) as connection:
        changes = changes_since(connection, since)
    return DemoResult(database, runs, changes, since)


def change_a_few(packages: list[dict]) -> None:
    """What a catalogue update might look like: two packages change, one is withdrawn."""
    by_name = {package["name"]: package for package in packages}
    by_name["ROCK-1"]["storage_in_gb"] = 20
    by_name["BOULDER-20"]["cpu_cores"] = 4
    by_name["BOULDER-20"]["use_dedicated_cpus"] = True
    packages.remove(by_name["ROCK-288"])
