"""What each version changed and which run closed it; the views current_packages, package_changes and
latest_sync_runs.

The views are written in SQL that SQLite, PostgreSQL, MySQL 8 and MariaDB all read the same way (no
`||`, no FILTER, no DISTINCT ON). Versions written before this migration get their new columns filled
from the history already there.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-05
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

from etl.sqltypes import UtcDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# The columns a version's changed_fields may name, as they were at this revision.
ATTRIBUTE_COLUMNS = (
    "name",
    "permalink",
    "cpu_cores",
    "ipv4_addresses",
    "memory_in_gb",
    "storage_in_gb",
    "monthly_bandwidth_allowance_in_gb",
    "privacy",
    "use_dedicated_cpus",
    "group_id",
    "group_name",
    "icon_url",
    "icon_file_name",
    "icon_file_type",
    "icon_file_size",
    "icon_digest",
)
SYNC_RUN_COLUMNS = (
    "id, scope, api, started_at, finished_at, status, pages_fetched, requests, retries, packages_seen, "
    "created, updated, restored, removed, unchanged, error, host, pid"
)

CURRENT_PACKAGES = """
CREATE VIEW current_packages AS
SELECT p.id, p.name, p.permalink, p.cpu_cores, p.ipv4_addresses, p.memory_in_gb, p.storage_in_gb,
       p.monthly_bandwidth_allowance_in_gb, p.privacy, p.use_dedicated_cpus,
       p.group_id, g.name AS group_name,
       p.icon_url, p.icon_file_name, p.icon_file_type, p.icon_file_size, p.icon_digest,
       p.content_hash, p.first_seen_at, p.last_seen_at
FROM packages p
LEFT JOIN package_groups g ON g.id = p.group_id
WHERE p.removed_at IS NULL
"""

# A version is 'updated' when its predecessor was closed the moment it opened (by the same merge),
# 'restored' when its predecessor had been closed before (by a removal). A closed version that no
# version follows at once was closed by a removal. Each test is a look-up of one package's versions
# by (package_id, valid_from), which every database's planner finds.
PACKAGE_CHANGES = """
CREATE VIEW package_changes AS
SELECT v.package_id, v.permalink, v.valid_from AS changed_at,
       CASE
           WHEN NOT EXISTS (SELECT 1 FROM package_snapshots e
                            WHERE e.package_id = v.package_id AND e.valid_from < v.valid_from)
               THEN 'created'
           WHEN EXISTS (SELECT 1 FROM package_snapshots e
                        WHERE e.package_id = v.package_id AND e.valid_to = v.valid_from)
               THEN 'updated'
           ELSE 'restored'
       END AS change_type,
       v.sync_run_id, v.changed_fields
FROM package_snapshots v
UNION ALL
SELECT c.package_id, c.permalink, c.valid_to, 'removed', c.closed_by_sync_run_id, NULL
FROM package_snapshots c
WHERE c.valid_to IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM package_snapshots n
                  WHERE n.package_id = c.package_id AND n.valid_from = c.valid_to)
"""

LATEST_SYNC_RUNS = f"""
CREATE VIEW latest_sync_runs AS
SELECT {SYNC_RUN_COLUMNS}
FROM sync_runs r
WHERE NOT EXISTS (SELECT 1 FROM sync_runs later
                  WHERE later.scope = r.scope
                    AND (later.started_at > r.started_at
                         OR (later.started_at = r.started_at AND later.id > r.id)))
"""

VIEWS = {
    "current_packages": CURRENT_PACKAGES,
    "package_changes": PACKAGE_CHANGES,
    "latest_sync_runs": LATEST_SYNC_RUNS,
}


def upgrade() -> None:
    # Batch mode: SQLite can add a column with a foreign key only by rebuilding the table.
    with op.batch_alter_table("package_snapshots") as batch:
        batch.add_column(sa.Column("changed_fields", sa.Text()))
        batch.add_column(sa.Column("closed_by_sync_run_id", sa.BigInteger()))
        # The index first: MySQL would otherwise add one of its own for the foreign key.
        batch.create_index(op.f("ix_package_snapshots_closed_by_sync_run_id"), ["closed_by_sync_run_id"])
        batch.create_foreign_key(
            op.f("fk_package_snapshots_closed_by_sync_run_id_sync_runs"),
            "sync_runs",
            ["closed_by_sync_run_id"],
            ["id"],
        )
    backfill(op.get_bind())
    for sql in VIEWS.values():
        op.execute(sql)


def downgrade() -> None:
    for name in VIEWS:
        op.execute(f"DROP VIEW {name}")
    with op.batch_alter_table("package_snapshots") as batch:
        batch.drop_constraint(op.f("fk_package_snapshots_closed_by_sync_run_id_sync_runs"), type_="foreignkey")
        batch.drop_index(op.f("ix_package_snapshots_closed_by_sync_run_id"))
        batch.drop_column("closed_by_sync_run_id")
        batch.drop_column("changed_fields")


# -- filling the new columns of versions written before this revision ------------------------------

SNAPSHOTS = sa.table(
    "package_snapshots",
    sa.column("id", sa.BigInteger()),
    sa.column("package_id", sa.String()),
    sa.column("sync_run_id", sa.BigInteger()),
    sa.column("valid_from", UtcDateTime()),
    sa.column("valid_to", UtcDateTime()),
    sa.column("content_hash", sa.String()),
    sa.column("changed_fields", sa.Text()),
    sa.column("closed_by_sync_run_id", sa.BigInteger()),
    *(sa.column(name) for name in ATTRIBUTE_COLUMNS),
)
RUNS = sa.table(
    "sync_runs",
    sa.column("id", sa.BigInteger()),
    sa.column("started_at", UtcDateTime()),
    sa.column("finished_at", UtcDateTime()),
    sa.column("status", sa.String()),
    sa.column("removed", sa.Integer()),
)


def backfill(connection: sa.Connection) -> None:
    """Compare each package's consecutive versions, as the merge does from now on.

    A version closed by a removal gets the run that removed packages while it was merging; if two runs
    of different scopes could have (their times overlap), the older one.
    """
    versions = (
        connection.execute(sa.select(SNAPSHOTS).order_by(SNAPSHOTS.c.package_id, SNAPSHOTS.c.valid_from))
        .mappings()
        .all()
    )
    removing_runs = connection.execute(
        sa.select(RUNS.c.id, RUNS.c.started_at, RUNS.c.finished_at)
        .where(RUNS.c.status == "succeeded", RUNS.c.removed > 0)
        .order_by(RUNS.c.id)
    ).all()
    updates = []
    for previous, version, following in _neighbours(versions):
        values = {
            "changed_fields": None if previous is None else _changed_fields(previous, version),
            "closed_by_sync_run_id": _closed_by(version, following, removing_runs),
        }
        if any(value is not None for value in values.values()):
            updates.append({"version_id": version["id"], **values})
    if updates:
        connection.execute(
            SNAPSHOTS.update()
            .where(SNAPSHOTS.c.id == sa.bindparam("version_id"))
            .values(
                changed_fields=sa.bindparam("changed_fields"),
                closed_by_sync_run_id=sa.bindparam("closed_by_sync_run_id"),
            ),
            updates,
        )


def _neighbours(versions: list[Any]) -> list[tuple[Any, Any, Any]]:
    """(previous, version, following) of the same package, None at either end."""
    triples = []
    for index, version in enumerate(versions):
        previous = versions[index - 1] if index > 0 else None
        following = versions[index + 1] if index + 1 < len(versions) else None
        same = version["package_id"]
        triples.append(
            (
                previous if previous is not None and previous["package_id"] == same else None,
                version,
                following if following is not None and following["package_id"] == same else None,
            )
        )
    return triples


def _changed_fields(previous: Any, version: Any) -> str:
    names = [name for name in ATTRIBUTE_COLUMNS if previous[name] != version[name]]
    if names:
        return ",".join(sorted(names))
    return "raw" if previous["content_hash"] != version["content_hash"] else ""


def _closed_by(version: Any, following: Any, removing_runs: list[Any]) -> int | None:
    closed = version["valid_to"]
    if closed is None:
        return None
    if following is not None and following["valid_from"] == closed:
        return following["sync_run_id"]
    for run_id, started_at, finished_at in removing_runs:
        if started_at <= closed and (finished_at is None or closed <= finished_at):
            return run_id
    return None
