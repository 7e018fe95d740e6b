"""Real processes: `katapult-etl sync` killed mid-walk, and runs that overlap, on SQLite and PostgreSQL.

A gate in the fake API holds the answer to one page, so a run stays mid-walk for exactly as long as a
test needs (no sleeps, no timing guesses); every wait is bounded, so a test cannot hang.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from etl.testing.catalogue import synthetic_catalogue
from etl.testing.fakeapi import DEFAULT_TOKEN, FakeKatapult

from .helpers import (
    WAIT_SECONDS,
    catalogue_tables,
    current_versions,
    expected_catalogue,
    other_sessions_waiting_on_a_lock,
    query,
    run_lock_released,
    runs,
    sync_in_fives,
    wait_until,
)

pytestmark = pytest.mark.slow

ABANDONED = "abandoned: the process ended before the run finished (killed or crashed)"


class Gate:
    """Holds the fake API's answer to page `page` until opened; `reached` says a run is waiting on it."""

    def __init__(self, api: FakeKatapult, page: int) -> None:
        self.page = page
        self.reached = threading.Event()
        self._opened = threading.Event()
        api.on_request = self._hold

    def _hold(self, page: int) -> None:
        if page == self.page:
            self.reached.set()
            self._opened.wait(WAIT_SECONDS)

    def wait_reached(self) -> None:
        assert self.reached.wait(WAIT_SECONDS), f"no run asked for page {self.page}"

    def open(self) -> None:
        self._opened.set()


@pytest.fixture
def api() -> Iterator[FakeKatapult]:
    """The fake API with 20 packages: four pages of five."""
    with FakeKatapult(synthetic_catalogue(20)) as server:
        yield server


@pytest.fixture
def gate(api) -> Iterator[Callable[[int], Gate]]:
    gates: list[Gate] = []

    def make(page: int) -> Gate:
        gates.append(Gate(api, page))
        return gates[-1]

    yield make
    for made in gates:  # never leave a server thread waiting
        made.open()


def start_sync(tmp_path, database_url: str, api: FakeKatapult, *args: str, token: bool = False) -> subprocess.Popen:
    """`python -m etl sync` in its own process, five packages a page, one page at a time."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "KATAPULT_API_URL", "KATAPULT_API_TOKEN")}
    if token:
        env["KATAPULT_API_TOKEN"] = DEFAULT_TOKEN
    command = [
        sys.executable,
        "-m",
        "etl",
        "sync",
        "--database-url",
        database_url,
        "--api-url",
        api.url,
        "--per-page",
        "5",
        "--concurrency",
        "1",
        *args,
    ]
    return subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(process: subprocess.Popen) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=WAIT_SECONDS)
    return process.returncode, out, err


@pytest.fixture
def changed_catalogue(cli, database_url, api):
    """A synced database, and an API whose catalogue has since changed: a run that landed would show."""
    assert sync_in_fives(cli, database_url, api).exit_code == 0
    api.packages[0]["memory_in_gb"] += 1
    del api.packages[-1]
    api.packages.append(synthetic_catalogue(1, seed=9)[0])
    return catalogue_tables(database_url), runs(database_url)


def test_kill_9_mid_walk_changes_nothing_and_the_next_run_lands(
    cli, database_url, api, gate, tmp_path, changed_catalogue
):
    before, runs_before = changed_catalogue
    held = gate(3)
    process = start_sync(tmp_path, database_url, api)
    held.wait_reached()

    process.kill()
    assert process.wait(WAIT_SECONDS) == -9
    held.open()

    assert catalogue_tables(database_url) == before
    assert runs(database_url) == [*runs_before, ("running", None)]
    wait_until(lambda: run_lock_released(database_url), "the killed run's lock is released")

    result = sync_in_fives(cli, database_url, api)

    assert result.exit_code == 0, result.err
    assert "created=1 updated=1 restored=0 removed=1 unchanged=18" in result.out
    assert runs(database_url) == [*runs_before, ("failed", ABANDONED), ("succeeded", None)]
    assert current_versions(database_url) == expected_catalogue(api.packages)


@pytest.mark.parametrize(
    "stop, exit_code, err",
    [(signal.SIGTERM, 143, ""), (signal.SIGINT, 130, "katapult-etl: interrupted\n")],
    ids=["SIGTERM", "SIGINT"],
)
def test_a_stopped_run_is_recorded_as_failed(
    database_url, api, gate, tmp_path, changed_catalogue, stop, exit_code, err
):
    before, runs_before = changed_catalogue
    held = gate(3)
    process = start_sync(tmp_path, database_url, api)
    held.wait_reached()

    process.send_signal(stop)
    held.open()  # the run unwinds once its request in flight ends

    assert finish(process) == (exit_code, "", err)
    assert catalogue_tables(database_url) == before
    assert runs(database_url) == [*runs_before, ("failed", "interrupted: the run was stopped before it finished")]


def test_a_run_stopped_during_its_merge_changes_nothing_and_exits_143(database_url, api, tmp_path, changed_catalogue):
    if make_url(database_url).get_backend_name() != "postgresql":
        pytest.skip("needs a lock that another session holds while the run waits inside a query")
    before, runs_before = changed_catalogue
    # Another session holds packages, so the merge's first statement waits for it: the signal lands
    # inside the merge's transaction, with a query in flight.
    blocker = create_engine(database_url).connect()
    try:
        blocker.execute(text("LOCK TABLE packages IN ACCESS EXCLUSIVE MODE"))
        process = start_sync(tmp_path, database_url, api)
        wait_until(lambda: other_sessions_waiting_on_a_lock(database_url) == 1, "the run's merge waits for packages")

        process.send_signal(signal.SIGTERM)

        assert finish(process) == (143, "", "")
    finally:
        blocker.rollback()
        blocker.close()
    assert catalogue_tables(database_url) == before
    assert runs(database_url) == [*runs_before, ("failed", "interrupted: the run was stopped before it finished")]


def test_a_second_run_of_the_same_scope_exits_75_at_once(database_url, api, gate, tmp_path):
    held = gate(2)
    first = start_sync(tmp_path, database_url, api, token=True)
    held.wait_reached()

    second = finish(start_sync(tmp_path, database_url, api, token=True))

    where = make_url(database_url).database if database_url.startswith("sqlite") else "this database"
    assert second == (75, "", f"katapult-etl: another sync of public is running on {where}\n")
    held.open()
    code, out, err = finish(first)
    assert (code, err) == (0, "")
    assert out.startswith("sync succeeded: scope=public api=core pages=4 packages_seen=20 created=20 ")
    assert runs(database_url) == [("succeeded", None)]  # the second run left no row


def test_runs_of_different_scopes_go_in_parallel(database_url, api, gate, tmp_path):
    api.organizations = {"org_acme": {"packages": synthetic_catalogue(3, seed=3, privacy="private")}}
    held = gate(2)
    public = start_sync(tmp_path, database_url, api)
    held.wait_reached()

    # One page of 23: the organization's run never asks for the held page 2, and finishes meanwhile.
    organization = finish(
        start_sync(tmp_path, database_url, api, "--organization-id", "org_acme", "--per-page", "200", token=True)
    )

    assert organization[0] == 0, organization[2]
    assert organization[1].startswith(
        "sync succeeded: scope=organization[id]=org_acme api=core pages=1 packages_seen=23 created=23 "
    )
    assert query(database_url, "SELECT scope, status FROM sync_runs ORDER BY id") == [
        ("public", "running"),
        ("organization[id]=org_acme", "succeeded"),
    ]
    held.open()
    code, out, err = finish(public)
    assert (code, err) == (0, "")
    assert out.startswith("sync succeeded: scope=public api=public pages=4 packages_seen=20 created=0 ")
    assert query(database_url, "SELECT scope, COUNT(*) FROM package_listings GROUP BY scope ORDER BY scope") == [
        ("organization[id]=org_acme", 23),
        ("public", 20),
    ]


def test_first_runs_of_two_scopes_on_an_empty_database_both_succeed(database_url, api, tmp_path):
    # Both start at once, and both find no schema: one builds it while the other waits for it.
    api.organizations = {"org_acme": {"packages": []}}
    public = start_sync(tmp_path, database_url, api)
    organization = start_sync(tmp_path, database_url, api, "--organization-id", "org_acme", token=True)

    assert [finish(process)[::2] for process in (public, organization)] == [(0, ""), (0, "")]
    assert query(database_url, "SELECT status, COUNT(*) FROM sync_runs GROUP BY status") == [("succeeded", 2)]
    assert query(database_url, "SELECT COUNT(*) FROM packages") == [(20,)]
