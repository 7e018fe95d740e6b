"""A re-sync stages whole only what changed: the content hashes the scope knows are loaded once before
the walk, and a package found with its known hash is staged by id alone (issue 18). The merge checks
those verdicts again under its lock: a package another run changed after the look-up is not missed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine

from etl.config import Scope, Settings
from etl.errors import DatabaseError
from etl.pipeline import Hooks, run_sync
from etl.store import STAGED_COLUMNS
from etl.testing.catalogue import synthetic_catalogue
from etl.testing.fakeapi import DEFAULT_TOKEN

from .helpers import catalogue_tables, execute, query, runs, sync_in_fives

PUBLIC, ACME = Scope(), Scope(organization_id="org_acme")


def _settings(database_url: str, api, scope: Scope = PUBLIC) -> Settings:
    token = None if scope.is_public else DEFAULT_TOKEN
    return Settings(database_url=database_url, api_url=api.url, scope=scope, token=token, per_page=5)


def _after_page_1(action: Callable[[], None]) -> Hooks:
    """Hooks that run `action` once the walk has stored its first page: after the look-up, before the merge."""

    def on_page(done: int, total: int | None) -> None:
        if done == 1:
            action()

    return Hooks(on_page=on_page)


def _versions(database_url: str, package_id: str) -> list[tuple[Any, ...]]:
    return query(
        database_url,
        "SELECT memory_in_gb, valid_to IS NULL, changed_fields FROM package_snapshots WHERE package_id = :id "
        "ORDER BY id",
        id=package_id,
    )


@pytest.fixture
def two_scopes(cli, database_url, api, twelve):
    """Twelve packages listed by the public scope and by organization org_acme (which adds none of its own)."""
    api.organizations = {"org_acme": {"packages": []}}
    run_sync(_settings(database_url, api, ACME))
    return twelve


def test_a_package_another_run_changed_after_the_look_up_gets_the_version_the_walk_saw(database_url, api, two_scopes):
    seen = dict(api.packages[0])  # on page 1: the walk sees it as the database knows it

    def another_scope_changes_it() -> None:
        api.packages[0] = {**seen, "memory_in_gb": seen["memory_in_gb"] + 7}
        assert run_sync(_settings(database_url, api, ACME)).counts.updated == 1
        api.packages[0] = seen

    result = run_sync(_settings(database_url, api), _after_page_1(another_scope_changes_it))

    assert (result.status, result.counts.updated, result.counts.unchanged) == ("succeeded", 1, 11)
    memory = seen["memory_in_gb"]
    assert _versions(database_url, seen["id"]) == [
        (memory, 0, None),
        (memory + 7, 0, "memory_in_gb"),
        (memory, 1, "memory_in_gb"),  # what the public walk saw, again the current version
    ]
    assert query(database_url, "SELECT memory_in_gb FROM packages WHERE id = :id", id=seen["id"]) == [(memory,)]


def test_a_version_the_look_up_knew_that_is_gone_from_history_fails_the_run_and_writes_nothing(
    database_url, api, two_scopes
):
    seen = dict(api.packages[0])
    before: dict[str, Any] = {}

    def another_scope_changes_it_and_its_history_is_deleted() -> None:
        api.packages[0] = {**seen, "memory_in_gb": seen["memory_in_gb"] + 7}
        run_sync(_settings(database_url, api, ACME))
        api.packages[0] = seen
        execute(
            database_url, "DELETE FROM package_snapshots WHERE package_id = :id AND valid_to IS NOT NULL", id=seen["id"]
        )
        before["tables"] = catalogue_tables(database_url)

    with pytest.raises(DatabaseError) as raised:
        run_sync(_settings(database_url, api), _after_page_1(another_scope_changes_it_and_its_history_is_deleted))

    assert str(raised.value) == (
        f"package {seen['id']} changed while the run walked, and the content the walk saw is no longer in its "
        "history: run again"
    )
    assert catalogue_tables(database_url) == before["tables"]
    # the first public run, the organization's first, this run, then the organization's second (which
    # started while this one walked)
    assert [status for status, _ in runs(database_url)] == ["succeeded", "succeeded", "failed", "succeeded"]


def test_a_re_sync_stages_whole_only_the_new_changed_and_restored_packages(cli, database_url, api, twelve):
    removed = api.packages.pop(5)
    assert sync_in_fives(cli, database_url, api).exit_code == 0
    api.packages.append(removed)  # restored
    api.packages[0] = {**api.packages[0], "cpu_cores": 99}  # changed
    api.packages.append(synthetic_catalogue(1, seed=4)[0])  # new
    staged_whole: list[int] = []

    def count_whole_rows(connection, cursor, statement, parameters, context, executemany) -> None:
        if statement.startswith("INSERT INTO katapult_etl_staging") and "raw_json" in statement:
            # a row's values, or many rows' in one INSERT (SQLite), or a list of rows (executemany)
            values = sum(map(len, parameters)) if executemany else len(parameters)
            staged_whole.append(values // len(STAGED_COLUMNS))

    event.listen(Engine, "before_cursor_execute", count_whole_rows)
    try:
        result = sync_in_fives(cli, database_url, api)
    finally:
        event.remove(Engine, "before_cursor_execute", count_whole_rows)

    assert result.exit_code == 0, result.err
    assert "created=1 updated=1 restored=1 removed=0 unchanged=10" in result.out
    if not database_url.startswith("postgresql"):  # PostgreSQL stages by COPY, around SQLAlchemy
        assert sum(staged_whole) == 3
