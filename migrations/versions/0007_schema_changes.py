"""sync_runs.schema_changes: the keys a run found added to or gone from the packages; `raw` and
`content_hash` described as what they now hold (the JSON last received: a change only of keys given to
`--ignore-key` updates the current version in place).

- sync_runs gets a nullable text column `schema_changes` (`+launch_price,-icon.token`), and the view
  latest_sync_runs, which has every column of sync_runs, gets it too (last, as in the table: PostgreSQL
  and MySQL replace the view in place, keeping what depends on it; SQLite makes it again).
- The new column's description, and the new words of `raw` and `content_hash` (tables, and on
  PostgreSQL the views that show them), are written as COMMENTs, as migration 0005 wrote the others.
  The words are copied here, as they are at this revision, so that this migration never changes.

On MySQL and MariaDB, which commit each DDL statement, each step checks first whether it is done, so that
an upgrade killed half-way finishes when run again.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from etl.migrations.steps import (
    column_facts,
    dialect_name,
    is_mysql,
    mysql_column_definitions,
    mysql_literal,
    pg_literal,
    with_mysql_comment,
)
from etl.sqltypes import LongText

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

SCHEMA_CHANGES = (
    "keys (dotted paths) the run's packages had that none of the scope's current versions had (`+`), and keys "
    "they all had that none of the run's packages had (`-`), sorted, comma-separated: `+launch_price,-icon.token`; "
    "empty when none; NULL when not compared (a scope's first run, a run that failed or is running)"
)
CONTENT_HASH = "SHA-256 of the package's JSON as last received, canonical (sorted keys)"
RAW = (
    "the package's JSON as last received while this version was current, unknown keys included "
    "(a change only of keys given to `--ignore-key` updates it, and `content_hash`, in place)"
)
# As migration 0005 wrote them, for the downgrade.
OLD_CONTENT_HASH = "SHA-256 of the package's JSON as received, canonical (sorted keys)"
OLD_RAW = "the package's JSON as received, unknown keys included"

# (relation, column) → (new words, old words); the new column's are set where it is added.
COMMENTS = {
    ("packages", "content_hash"): (CONTENT_HASH, OLD_CONTENT_HASH),
    ("package_snapshots", "content_hash"): (CONTENT_HASH, OLD_CONTENT_HASH),
    ("package_snapshots", "raw"): (RAW, OLD_RAW),
}
VIEW_COMMENTS = {("current_packages", "content_hash"): (CONTENT_HASH, OLD_CONTENT_HASH)}

SYNC_RUN_COLUMNS = (
    "id, scope, api, started_at, finished_at, status, pages_fetched, requests, retries, packages_seen, "
    "created, updated, restored, removed, unchanged, error, host, pid"
)
LATEST_SYNC_RUNS_WORDS = (
    "the last run of each scope (by `id`, the order runs started in), with every column of `sync_runs`"
)
# As migration 0004 made it, with the new column last.
LATEST_SYNC_RUNS = """
CREATE VIEW latest_sync_runs AS
SELECT {columns}
FROM sync_runs r
WHERE NOT EXISTS (SELECT 1 FROM sync_runs later WHERE later.scope = r.scope AND later.id > r.id)
"""


def upgrade() -> None:
    name = dialect_name()
    if is_mysql():
        upgrade_mysql()
    elif name == "postgresql":
        op.add_column("sync_runs", sa.Column("schema_changes", LongText))
        op.execute(_latest_sync_runs(with_schema_changes=True).replace("CREATE VIEW", "CREATE OR REPLACE VIEW", 1))
        for (relation, column), (words, _) in {
            ("sync_runs", "schema_changes"): (SCHEMA_CHANGES, None),
            ("latest_sync_runs", "schema_changes"): (SCHEMA_CHANGES, None),
            **COMMENTS,
            **VIEW_COMMENTS,
        }.items():
            _execute(f"COMMENT ON COLUMN {relation}.{column} IS {pg_literal(words)}")
    else:  # SQLite: no comments
        op.add_column("sync_runs", sa.Column("schema_changes", LongText))
        op.execute("DROP VIEW latest_sync_runs")
        op.execute(_latest_sync_runs(with_schema_changes=True))


def upgrade_mysql() -> None:
    if "schema_changes" not in column_facts("sync_runs"):
        _execute(
            f"ALTER TABLE sync_runs ADD COLUMN schema_changes LONGTEXT NULL COMMENT {mysql_literal(SCHEMA_CHANGES)}"
        )
    _comment_mysql({key: new for key, (new, _) in COMMENTS.items()})
    op.execute(_latest_sync_runs(with_schema_changes=True).replace("CREATE VIEW", "CREATE OR REPLACE VIEW", 1))


def downgrade() -> None:
    name = dialect_name()
    if is_mysql():
        op.execute(_latest_sync_runs(with_schema_changes=False).replace("CREATE VIEW", "CREATE OR REPLACE VIEW", 1))
        if "schema_changes" in column_facts("sync_runs"):
            op.execute("ALTER TABLE sync_runs DROP COLUMN schema_changes")
        _comment_mysql({key: old for key, (_, old) in COMMENTS.items()})
        return
    # A view cannot lose a column in place: made again without it.
    op.execute("DROP VIEW latest_sync_runs")
    op.drop_column("sync_runs", "schema_changes")
    op.execute(_latest_sync_runs(with_schema_changes=False))
    if name == "postgresql":
        for (relation, column), (_, old) in {**COMMENTS, **VIEW_COMMENTS}.items():
            _execute(f"COMMENT ON COLUMN {relation}.{column} IS {pg_literal(old)}")
        _comment_latest_sync_runs_like_sync_runs()


def _comment_latest_sync_runs_like_sync_runs() -> None:
    """The view made again has lost its comments: its words, and each column's as sync_runs has it."""
    _execute(f"COMMENT ON VIEW latest_sync_runs IS {pg_literal(LATEST_SYNC_RUNS_WORDS)}")
    columns = op.get_bind().execute(
        sa.text(
            "SELECT a.attname, col_description(a.attrelid, a.attnum) FROM pg_attribute a "
            "WHERE a.attrelid = 'sync_runs'::regclass AND a.attnum > 0 AND NOT a.attisdropped"
        )
    )
    for column, words in columns.all():
        _execute(f"COMMENT ON COLUMN latest_sync_runs.{column} IS {pg_literal(words)}")


def _latest_sync_runs(*, with_schema_changes: bool) -> str:
    columns = f"{SYNC_RUN_COLUMNS}, schema_changes" if with_schema_changes else SYNC_RUN_COLUMNS
    return LATEST_SYNC_RUNS.format(columns=columns)


def _comment_mysql(comments: dict[tuple[str, str], str]) -> None:
    """Each column's comment, its definition otherwise exactly as it is (one statement per table)."""
    for table in sorted({table for table, _ in comments}):
        definitions = mysql_column_definitions(table)
        changes = [
            f"MODIFY `{column}` {with_mysql_comment(definitions[column], words)}"
            for (owner, column), words in comments.items()
            if owner == table
        ]
        _execute(f"ALTER TABLE `{table}` {', '.join(changes)}")


def _execute(sql: str) -> None:
    # A colon followed by a word would be a bind parameter to sa.text: the words have some (`+launch_price`).
    op.execute(sa.text(sql.replace(":", "\\:")))
