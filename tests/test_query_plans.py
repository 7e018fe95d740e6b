"""How PostgreSQL plans the merge: no statement may hinge on statistics to stay linear."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url

from etl.database import open_engine

from .helpers import scalar


@pytest.fixture
def plans():
    """EXPLAIN of every statement that reads the staging table, taken on its own connection just before it runs."""
    found: list[str] = []

    def explain(connection, cursor, statement, parameters, context, executemany) -> None:
        verb = statement.lstrip().split(None, 1)[0].upper()
        if executemany or "katapult_etl_staging" not in statement or verb not in ("SELECT", "UPDATE", "INSERT"):
            return
        # On a cursor of its own: a streamed read runs on a server-side cursor, which can only DECLARE a query.
        explaining = connection.connection.cursor()
        try:
            explaining.execute("EXPLAIN " + statement, parameters)
            found.append("\n".join(row[0] for row in explaining.fetchall()))
        finally:
            explaining.close()

    event.listen(Engine, "before_cursor_execute", explain)
    yield found
    event.remove(Engine, "before_cursor_execute", explain)


def test_the_removal_checks_are_anti_joins_not_not_in_subplans(cli, database_url, api, plans):
    if make_url(database_url).get_backend_name() != "postgresql":
        pytest.skip("a PostgreSQL planner question")
    assert cli("sync", "--database-url", database_url, "--api-url", api.url).exit_code == 0
    api.packages = api.packages[1:]
    plans.clear()

    result = cli("sync", "--database-url", database_url, "--api-url", api.url)

    assert result.exit_code == 0, result.err
    assert scalar(database_url, "SELECT COUNT(*) FROM packages WHERE removed_at IS NOT NULL") == 1
    # NOT IN (subquery) is a subplan run once per listing unless PostgreSQL guesses it can hash it:
    # with statistics from before a large first sync it does not, and 100,000 packages took 400 s.
    not_in = [plan for plan in plans if "NOT (SubPlan" in plan or "NOT (hashed SubPlan" in plan]
    assert len(plans) >= 10
    assert not_in == []
    assert sum("Anti Join" in plan for plan in plans) >= 2


def test_the_jobs_postgresql_sessions_do_not_jit_compile(database_url):
    if make_url(database_url).get_backend_name() != "postgresql":
        pytest.skip("a PostgreSQL planner question")
    # The merge's statements are estimated expensive enough for JIT, whose compiling cost more than
    # running them (classify: 2.6 s with it, 0.7 s without, at 100,000 packages).
    server_default = create_engine(database_url)
    job = open_engine(database_url)
    try:
        with server_default.connect() as connection:
            assert connection.execute(text("SHOW jit")).scalar() == "on"
        with job.connect() as connection:
            assert connection.execute(text("SHOW jit")).scalar() == "off"
    finally:
        server_default.dispose()
        job.dispose()
