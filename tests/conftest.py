"""Shared fixtures: a fresh real database per test (SQLite always, PostgreSQL when TEST_DATABASE_URL
names one, MariaDB or MySQL when TEST_MYSQL_URL does) and the fake Katapult API on a free loopback port."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest

from etl.cli import main
from etl.clock import utc_now
from etl.pipeline import Hooks
from etl.testing.catalogue import synthetic_catalogue
from etl.testing.fakeapi import FakeKatapult

from .helpers import catalogue_tables, empty_database, runs, sync_in_fives

SERVER_DATABASES = {
    "postgresql": "TEST_DATABASE_URL",
    "mysql": "TEST_MYSQL_URL",
}
_skipped_servers: set[str] = set()


@pytest.fixture(params=["sqlite", *SERVER_DATABASES])
def database_url(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[str]:
    """A URL of an empty database of each supported kind."""
    kind = request.param
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'katapult.db'}"
        return
    url = os.environ.get(SERVER_DATABASES[kind])
    if not url:
        _skipped_servers.add(kind)
        pytest.skip(f"{SERVER_DATABASES[kind]} is not set: {kind} tests skipped")
    empty_database(url)
    yield url


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for kind in sorted(_skipped_servers):
        terminalreporter.write_line(
            f"WARNING: no {kind} server was named ({SERVER_DATABASES[kind]} unset): "
            f"every {kind} test was SKIPPED; {kind} was not tested.",
            yellow=True,
            bold=True,
        )


@pytest.fixture
def api() -> Iterator[FakeKatapult]:
    with FakeKatapult() as server:
        yield server


@dataclass
class CliResult:
    exit_code: int
    out: str
    err: str


class Cli:
    """Runs katapult-etl in this process, as a user would type it; retries never really sleep.

    `wall_clock` is the clock whose times runs record: a test may set it back (an NTP step)."""

    def __init__(self, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
        self._capsys = capsys
        self._monkeypatch = monkeypatch
        self.sleeps: list[float] = []
        self.clock: Callable[[], float] = time.monotonic  # a test may stop time: `cli.clock = lambda: 0.0`
        self.wall_clock: Callable[[], datetime] = utc_now

    def __call__(self, *args: str, env: dict[str, str] | None = None) -> CliResult:
        for name in (
            "DATABASE_URL",
            "KATAPULT_API_URL",
            "KATAPULT_API_TOKEN",
            "KATAPULT_API_KEY",
            "KATAPULT_ORGANIZATION",
            "KATAPULT_ETL_CONFIG",
        ):
            self._monkeypatch.delenv(name, raising=False)
        for name, value in (env or {}).items():
            self._monkeypatch.setenv(name, value)
        self._capsys.readouterr()
        try:
            exit_code = main(
                list(args), hooks=Hooks(sleep=self.sleeps.append, clock=self.clock, wall_clock=self.wall_clock)
            )
        except SystemExit as exit:  # argparse: --help, --version and usage errors
            exit_code = int(exit.code or 0)
        captured = self._capsys.readouterr()
        return CliResult(exit_code, captured.out, captured.err)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    return Cli(capsys, monkeypatch)


@pytest.fixture
def mariadb_url():
    url = os.environ.get("TEST_MYSQL_URL")
    if not url:
        pytest.skip("TEST_MYSQL_URL is not set: the killed-migration test needs MariaDB or MySQL")
    empty_database(url)
    return url


@pytest.fixture
def twelve(cli, database_url, api):
    """A database holding 12 synced packages (three pages of five); the packages, as listed."""
    api.packages = synthetic_catalogue(12)
    assert sync_in_fives(cli, database_url, api).exit_code == 0
    return list(api.packages)


@pytest.fixture
def seeded(cli, database_url, api, twelve):
    """A database holding 12 synced packages; the API now lists one changed, one gone and one new."""
    gone = api.packages.pop()
    api.packages[0]["memory_in_gb"] += 1
    api.packages.append(synthetic_catalogue(1, seed=9)[0])
    api.requests.clear()
    cli.sleeps.clear()
    return {"before": catalogue_tables(database_url), "runs": runs(database_url), "gone": gone["id"]}
