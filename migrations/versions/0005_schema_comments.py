"""Every table and column describes itself: COMMENTs on PostgreSQL and on MySQL and MariaDB.

So that psql's `\\d+`, DBeaver or Metabase show what each column means. The words are the models'
comments (etl/models.py) and the views' registry (etl/schema_docs.py) as they were at this revision,
copied here so that this migration never changes: a later change of words is a later migration.

- PostgreSQL: COMMENT ON TABLE / VIEW / COLUMN, the views and their columns included.
- MySQL and MariaDB: the table's COMMENT and each column's, with `MODIFY` and the column's definition
  exactly as SHOW CREATE TABLE gives it (type, collation, NULL, default, AUTO_INCREMENT, MariaDB's
  CHECK of a JSON column), so that nothing but the comment changes. One statement per table. Their views
  cannot take comments. These databases commit each DDL statement: a table whose comments are all set
  already is skipped, and setting a comment again is harmless, so an upgrade killed half-way finishes
  when run again.
- SQLite has no comments: nothing to do.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-19
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from etl.migrations.steps import (
    dialect_name,
    is_mysql,
    mysql_column_definitions,
    mysql_literal,
    pg_literal,
    with_mysql_comment,
)

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TABLES: dict[str, tuple[str, dict[str, str]]] = {
    "package_groups": (
        "the groups Katapult puts packages in",
        {
            "id": "Katapult's group id, e.g. `vmpkgrp_P5kCZvAtvXRC3sVl`",
            "name": "the group's name, e.g. `Standard vCPU`",
            "first_seen_at": "when a run first saw the group",
            "last_seen_at": "when a run last saw the group",
        },
    ),
    "packages": (
        "the current state of every package ever listed",
        {
            "id": "Katapult's package id, e.g. `vmpkg_dhG25G5SX3HrA5j5`",
            "group_id": "the package's group, a `package_groups.id`; NULL where the API sent no group",
            "first_seen_at": "when a run first saw the package",
            "last_seen_at": "when a run last saw the package",
            "removed_at": "NULL while the package is listed; set when no scope lists it any more",
            "name": "the package's name, e.g. `ROCK-1`",
            "permalink": "the package's permalink, e.g. `rock-1`",
            "cpu_cores": "CPU cores",
            "ipv4_addresses": "IPv4 addresses included",
            "memory_in_gb": "memory, in GB",
            "storage_in_gb": "storage, in GB",
            "monthly_bandwidth_allowance_in_gb": (
                "monthly bandwidth allowance, in GB; NULL: none stated (or an older API version)"
            ),
            "privacy": "`public` or `private`",
            "use_dedicated_cpus": (
                "whether the package's CPUs are dedicated; NULL where an older API version left it out"
            ),
            "icon_url": "the URL of the package's icon; NULL without one",
            "icon_file_name": "the icon's file name; NULL without one",
            "icon_file_type": "the icon's file type; NULL without one",
            "icon_file_size": "the icon's file size; NULL without one",
            "icon_digest": "the icon's digest; NULL without one",
            "content_hash": "SHA-256 of the package's JSON as received, canonical (sorted keys)",
        },
    ),
    "package_snapshots": (
        "the change history, as versions (slowly changing dimension, type 2)",
        {
            "id": "the version's number",
            "package_id": "the package this is a version of",
            "sync_run_id": "the run that saw this version first",
            "valid_from": "from when this version was the package's content",
            "valid_to": "until when; NULL for the current version",
            "group_id": "the package's group, a `package_groups.id`; NULL where the API sent no group",
            "group_name": "the group's name as this version saw it",
            "raw": "the package's JSON as received, unknown keys included",
            "changed_fields": (
                "the columns that differ from the package's previous version, sorted and comma-separated "
                "(`cpu_cores,memory_in_gb`); `raw` when only keys without a column changed; empty for a "
                "package restored as it was removed; NULL for a package's first version"
            ),
            "closed_by_sync_run_id": (
                "the run that closed this version, by a newer version or by the package's removal; NULL while current"
            ),
            "name": "the package's name, e.g. `ROCK-1`",
            "permalink": "the package's permalink, e.g. `rock-1`",
            "cpu_cores": "CPU cores",
            "ipv4_addresses": "IPv4 addresses included",
            "memory_in_gb": "memory, in GB",
            "storage_in_gb": "storage, in GB",
            "monthly_bandwidth_allowance_in_gb": (
                "monthly bandwidth allowance, in GB; NULL: none stated (or an older API version)"
            ),
            "privacy": "`public` or `private`",
            "use_dedicated_cpus": (
                "whether the package's CPUs are dedicated; NULL where an older API version left it out"
            ),
            "icon_url": "the URL of the package's icon; NULL without one",
            "icon_file_name": "the icon's file name; NULL without one",
            "icon_file_type": "the icon's file type; NULL without one",
            "icon_file_size": "the icon's file size; NULL without one",
            "icon_digest": "the icon's digest; NULL without one",
            "content_hash": "SHA-256 of the package's JSON as received, canonical (sorted keys)",
        },
    ),
    "package_listings": (
        "which scope lists which package",
        {
            "package_id": "the package the scope lists",
            "scope": "`public`, `organization[id]=…` or `organization[sub_domain]=…`",
            "first_seen_at": "when a run of this scope first saw the package",
            "last_seen_at": "when a run of this scope last saw it",
            "unlisted_at": (
                "NULL while this scope lists it; set when both walks of a run of the scope (each complete) missed it"
            ),
        },
    ),
    "sync_runs": (
        "one row per run",
        {
            "id": "the run's number, in the order runs started",
            "scope": "`public`, `organization[id]=…` or `organization[sub_domain]=…`",
            "api": "`core` (with a token) or `public`",
            "started_at": "when the run started",
            "finished_at": "when the run finished; NULL while running",
            "status": "`running`, `succeeded`, `failed` or `incomplete`",
            "pages_fetched": "pages walked (by every walk of the run: a repeated walk and a confirming walk count too)",
            "requests": "HTTP requests made, retries included",
            "retries": "requests that were retried",
            "packages_seen": "distinct packages the walk saw",
            "created": "packages the run created",
            "updated": "packages the run gave a new version",
            "restored": "packages the run restored (came back after a removal)",
            "removed": "packages the run removed",
            "unchanged": "packages the run saw unchanged",
            "error": "why the run failed, or why it is `incomplete`",
            "host": "the host the run ran on",
            "pid": "the process id the run ran as",
        },
    ),
}
VIEWS: dict[str, tuple[str, dict[str, str]]] = {
    "current_packages": (
        "the packages listed now (`removed_at IS NULL`), with their group's name",
        {
            "id": "Katapult's package id, e.g. `vmpkg_dhG25G5SX3HrA5j5`",
            "name": "the package's name, e.g. `ROCK-1`",
            "permalink": "the package's permalink, e.g. `rock-1`",
            "cpu_cores": "CPU cores",
            "ipv4_addresses": "IPv4 addresses included",
            "memory_in_gb": "memory, in GB",
            "storage_in_gb": "storage, in GB",
            "monthly_bandwidth_allowance_in_gb": (
                "monthly bandwidth allowance, in GB; NULL: none stated (or an older API version)"
            ),
            "privacy": "`public` or `private`",
            "use_dedicated_cpus": (
                "whether the package's CPUs are dedicated; NULL where an older API version left it out"
            ),
            "group_id": "the package's group, a `package_groups.id`; NULL where the API sent no group",
            "group_name": "the group's name (`package_groups.name`); NULL without a group",
            "icon_url": "the URL of the package's icon; NULL without one",
            "icon_file_name": "the icon's file name; NULL without one",
            "icon_file_type": "the icon's file type; NULL without one",
            "icon_file_size": "the icon's file size; NULL without one",
            "icon_digest": "the icon's digest; NULL without one",
            "content_hash": "SHA-256 of the package's JSON as received, canonical (sorted keys)",
            "first_seen_at": "when a run first saw the package",
            "last_seen_at": "when a run last saw the package",
        },
    ),
    "package_changes": (
        "one row per event in a package's history",
        {
            "package_id": "the package",
            "permalink": "its permalink in the version the event opened (for a removal: the version it closed)",
            "changed_at": "when the run merged the change",
            "change_type": (
                "`created` (its first version), `updated` (a new version closed the one before), `removed` "
                "(its version closed with none after it), `restored` (a new version after a removal)"
            ),
            "sync_run_id": "the run that made the change",
            "changed_fields": (
                "the new version's `changed_fields` (see `package_snapshots`); NULL for `created` and `removed`"
            ),
        },
    ),
    "latest_sync_runs": (
        "the last run of each scope (by `id`, the order runs started in), with every column of `sync_runs`",
        {
            "id": "the run's number, in the order runs started",
            "scope": "`public`, `organization[id]=…` or `organization[sub_domain]=…`",
            "api": "`core` (with a token) or `public`",
            "started_at": "when the run started",
            "finished_at": "when the run finished; NULL while running",
            "status": "`running`, `succeeded`, `failed` or `incomplete`",
            "pages_fetched": "pages walked (by every walk of the run: a repeated walk and a confirming walk count too)",
            "requests": "HTTP requests made, retries included",
            "retries": "requests that were retried",
            "packages_seen": "distinct packages the walk saw",
            "created": "packages the run created",
            "updated": "packages the run gave a new version",
            "restored": "packages the run restored (came back after a removal)",
            "removed": "packages the run removed",
            "unchanged": "packages the run saw unchanged",
            "error": "why the run failed, or why it is `incomplete`",
            "host": "the host the run ran on",
            "pid": "the process id the run ran as",
        },
    ),
}


def upgrade() -> None:
    if dialect_name() == "postgresql":
        comment_postgresql(with_words=True)
    elif is_mysql():
        for table, (description, columns) in TABLES.items():
            comment_mysql_table(table, description, columns)


def downgrade() -> None:
    if dialect_name() == "postgresql":
        comment_postgresql(with_words=False)
    elif is_mysql():
        for table, (_, columns) in TABLES.items():
            comment_mysql_table(table, "", dict.fromkeys(columns, ""))


def _execute(sql: str) -> None:
    # A colon followed by a word would be a bind parameter to sa.text: none of ours is one.
    op.execute(sa.text(sql.replace(":", "\\:")))


# -- PostgreSQL ------------------------------------------------------------------------------------


def comment_postgresql(with_words: bool) -> None:
    for kind, relations in (("TABLE", TABLES), ("VIEW", VIEWS)):
        for name, (description, columns) in relations.items():
            _execute(f"COMMENT ON {kind} {name} IS {pg_literal(description if with_words else None)}")
            for column, words in columns.items():
                _execute(f"COMMENT ON COLUMN {name}.{column} IS {pg_literal(words if with_words else None)}")


# -- MySQL and MariaDB -----------------------------------------------------------------------------


def comment_mysql_table(table: str, description: str, columns: dict[str, str]) -> None:
    if _mysql_comments(table) == (description, columns):
        return  # done by an earlier, killed run
    definitions = mysql_column_definitions(table)
    changes = [
        f"MODIFY `{column}` {with_mysql_comment(definitions[column], words)}" for column, words in columns.items()
    ]
    _execute(f"ALTER TABLE `{table}` {', '.join(changes)}, COMMENT = {mysql_literal(description)}")


def _mysql_comments(table: str) -> tuple[str, dict[str, str]]:
    bind = op.get_bind()
    description = bind.execute(
        sa.text(
            "SELECT table_comment FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = :t"
        ),
        {"t": table},
    ).scalar()
    columns = bind.execute(
        sa.text(
            "SELECT column_name, column_comment FROM information_schema.columns "
            "WHERE table_schema = DATABASE() AND table_name = :t"
        ),
        {"t": table},
    ).all()
    return description or "", {name: comment for name, comment in columns}
