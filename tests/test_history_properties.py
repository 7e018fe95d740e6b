"""Property: any sequence of catalogue states, synced in order, leaves a history from which each state
can be rebuilt exactly "as of" its run, and the views agree with that history.

Settings: on SQLite 25 examples, on PostgreSQL (when TEST_DATABASE_URL is set) 5; deadline=None, as a
sync's time varies with the machine. Each example gets a fresh database (SQLite: a copy of one migrated
file); one fake Katapult API serves every example of a test.
"""

from __future__ import annotations

import os
import shutil
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, or_, select, text

from etl.config import Settings
from etl.database import open_engine, upgrade
from etl.models import PackageSnapshot, SyncRun
from etl.pipeline import Hooks, run_sync
from etl.records import ATTRIBUTE_COLUMNS, canonical_json, package_row
from etl.testing.fakeapi import FakeKatapult

from .helpers import empty_database

IDS = ("vmpkg_a", "vmpkg_b", "vmpkg_c", "vmpkg_d")
OTHER_GROUP = {"id": "vmpkgrp_b", "name": "Dedicated"}
COMMON = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True)


def package(package_id: str, fields: dict[str, Any], group_name: str) -> dict[str, Any]:
    group = {"a": {"id": "vmpkgrp_a", "name": group_name}, "b": OTHER_GROUP, None: None}[fields.pop("group")]
    return {
        "id": package_id,
        "permalink": fields["name"].lower(),
        "ipv4_addresses": 1,
        "storage_in_gb": 10,
        "monthly_bandwidth_allowance_in_gb": None,
        "privacy": "public",
        "icon": None,
        "group": group,
        **fields,
    }


# Few values per field, so that packages often stay the same, change one field, or change back.
FIELDS = st.fixed_dictionaries(
    {
        "name": st.sampled_from(["ROCK-1", "ROCK-2"]),
        "cpu_cores": st.integers(1, 2),
        "memory_in_gb": st.integers(1, 2),
        "use_dedicated_cpus": st.booleans(),
        "group": st.sampled_from(["a", "b", None]),
    },
    # A key katapult-etl has no column for: a change to it alone is a change of "raw".
    optional={"launch_price": st.integers(1, 2)},
)


@st.composite
def catalogue(draw: st.DrawFn) -> list[dict[str, Any]]:
    group_name = draw(st.sampled_from(["Standard", "Standard vCPU"]))  # one group's name, as renamed
    chosen = draw(st.dictionaries(st.sampled_from(IDS), FIELDS, max_size=len(IDS)))
    return [package(package_id, fields, group_name) for package_id, fields in sorted(chosen.items())]


STATES = st.lists(catalogue(), min_size=2, max_size=5)


@pytest.fixture(scope="module")
def fake_api():
    with FakeKatapult() as server:
        yield server


@pytest.fixture(scope="module")
def migrated_sqlite(tmp_path_factory):
    """A SQLite file at the newest schema, copied for each example: migrating each one is the slow part."""
    path = tmp_path_factory.mktemp("template") / "template.db"
    engine = open_engine(f"sqlite:///{path}")
    upgrade(engine)
    engine.dispose()
    return path


@settings(COMMON, max_examples=25)
@given(states=STATES)
def test_sqlite_history_rebuilds_every_state(states, fake_api, migrated_sqlite, tmp_path_factory):
    path = tmp_path_factory.mktemp("example") / "katapult.db"
    shutil.copy(migrated_sqlite, path)
    check_history(f"sqlite:///{path}", fake_api, states)


@settings(COMMON, max_examples=5)
@given(states=STATES)
def test_postgresql_history_rebuilds_every_state(states, fake_api, postgresql_url):
    empty_database(postgresql_url)
    check_history(postgresql_url, fake_api, states)


@pytest.fixture(scope="module")
def postgresql_url():
    url = os.environ.get("TEST_DATABASE_URL")
    if not url:
        pytest.skip("TEST_DATABASE_URL is not set: postgresql tests skipped")
    return url


def check_history(url: str, api: FakeKatapult, states: list[list[dict[str, Any]]]) -> None:
    for state in states:
        api.packages = state
        result = run_sync(Settings(database_url=url, api_url=api.url, allow_mass_removal=True), Hooks(sleep=_no_sleep))
        assert result.status == "succeeded", result.reason
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            for run_id, state in enumerate(states, start=1):
                assert catalogue_as_of(connection, run_id) == {p["id"]: columns_of(p) for p in state}
            assert changes(connection) == sorted(expected_changes(states))
            assert current_packages(connection) == {p["id"]: current_row(p) for p in states[-1]}
            assert connection.execute(text("SELECT id, status FROM latest_sync_runs")).all() == [
                (len(states), "succeeded")
            ]
    finally:
        engine.dispose()


def catalogue_as_of(connection: Any, run_id: int) -> dict[str, tuple]:
    """Every version valid when run `run_id` had finished: "the catalogue as of" that run."""
    finished = connection.execute(select(SyncRun.finished_at).where(SyncRun.id == run_id)).scalar_one()
    versions = PackageSnapshot.__table__
    rows = connection.execute(
        select(versions).where(
            versions.c.valid_from <= finished,
            or_(versions.c.valid_to.is_(None), versions.c.valid_to > finished),
        )
    ).mappings()
    return {row["package_id"]: (*(row[name] for name in ATTRIBUTE_COLUMNS), row["raw"]) for row in rows}


def columns_of(raw: dict[str, Any]) -> tuple:
    row = package_row(raw)
    return (*(row[name] for name in ATTRIBUTE_COLUMNS), raw)


def changes(connection: Any) -> list[tuple]:
    return sorted(
        connection.execute(
            text("SELECT package_id, permalink, change_type, sync_run_id, changed_fields FROM package_changes")
        ).all()
    )


def expected_changes(states: list[list[dict[str, Any]]]) -> list[tuple]:
    """The events the states imply, worked out here without SQL."""
    last_seen: dict[str, dict[str, Any]] = {}
    listed: set[str] = set()
    events = []
    for run_id, state in enumerate(states, start=1):
        now = {p["id"]: p for p in state}
        for package_id, raw in now.items():
            if package_id not in last_seen:
                events.append((package_id, raw["permalink"], "created", run_id, None))
            elif package_id not in listed:
                events.append((package_id, raw["permalink"], "restored", run_id, changed(last_seen[package_id], raw)))
            elif canonical_json(raw) != canonical_json(last_seen[package_id]):
                events.append((package_id, raw["permalink"], "updated", run_id, changed(last_seen[package_id], raw)))
        for package_id in sorted(listed - now.keys()):
            events.append((package_id, last_seen[package_id]["permalink"], "removed", run_id, None))
        last_seen.update(now)
        listed = set(now)
    return events


def changed(old: dict[str, Any], new: dict[str, Any]) -> str:
    before, after = package_row(old), package_row(new)
    names = sorted(name for name in ATTRIBUTE_COLUMNS if before[name] != after[name])
    if names:
        return ",".join(names)
    return "raw" if canonical_json(old) != canonical_json(new) else ""


def current_packages(connection: Any) -> dict[str, tuple]:
    rows = connection.execute(
        text("SELECT id, name, cpu_cores, memory_in_gb, use_dedicated_cpus, group_id, group_name FROM current_packages")
    )
    return {
        package_id: (name, cpu, memory, bool(dedicated), group_id, group_name)
        for package_id, name, cpu, memory, dedicated, group_id, group_name in rows
    }


def current_row(raw: dict[str, Any]) -> tuple:
    group = raw["group"] or {}
    return (
        raw["name"],
        raw["cpu_cores"],
        raw["memory_in_gb"],
        raw["use_dedicated_cpus"],
        group.get("id"),
        group.get("name"),
    )


def _no_sleep(seconds: float) -> None:
    raise AssertionError(f"a sync of the fake API should never wait to retry ({seconds} s)")
