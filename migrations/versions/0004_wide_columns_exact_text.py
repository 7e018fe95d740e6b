"""Columns as wide as the API's values; NO PAD exact text on MySQL and MariaDB; latest_sync_runs by id.

- Every integer column is 64-bit (BIGINT): a `cpu_cores` of 2^31 or a `memory_in_gb` of 2^63 - 1 is
  stored as sent, on every database.
- Text the API sends has no length limit (TEXT; LONGTEXT on MySQL and MariaDB, whose TEXT stops at
  64 KB). Keys (package and group ids, listing keys and every foreign key to them) are VARCHAR(255):
  MySQL indexes no unbounded text, and records.py refuses a longer id.
- MySQL and MariaDB compare text with a NO PAD binary collation (utf8mb4_nopad_bin on MariaDB,
  utf8mb4_0900_bin on MySQL 8), tables and the database default: utf8mb4_bin is PAD SPACE, so
  'vmpkg_A' and 'vmpkg_A ' were one id there and two everywhere else.
- latest_sync_runs picks the newest run of a scope by id (the order runs started in), not by
  started_at: a clock that went back must not make an older run the latest.

Users' own views and indexes on these tables are kept: on SQLite (which rebuilds the tables) and on
PostgreSQL (which refuses to change the type of a column a view reads) they are dropped and made again
with their definitions (migrations/steps.py); MySQL keeps them by itself. On MySQL and MariaDB, which
commit each DDL statement, every step checks first whether it is done, so that a migration killed
half-way finishes when run again.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-12
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from etl.dialects import exact_text_collation
from etl.migrations.steps import (
    column_facts,
    create_foreign_key_if_missing,
    dialect_name,
    drop_foreign_key_if_present,
    index_rewrites,
    is_mysql,
    sqlite_objects_kept,
    table_collation,
    views_kept,
)
from etl.sqltypes import KEY_LENGTH, Key, LongText

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# The kinds of column this migration makes, with their MySQL spelling and information_schema facts.
KEY, TEXT, INTEGER = "key", "text", "integer"
MYSQL_TYPES = {KEY: f"VARCHAR({KEY_LENGTH})", TEXT: "LONGTEXT", INTEGER: "BIGINT"}
MYSQL_FACTS = {KEY: ("varchar", KEY_LENGTH), TEXT: ("longtext", None), INTEGER: ("bigint", None)}
TYPES = {KEY: Key, TEXT: LongText, INTEGER: sa.BigInteger()}

ATTRIBUTES = {
    "name": TEXT,
    "permalink": TEXT,
    "cpu_cores": INTEGER,
    "ipv4_addresses": INTEGER,
    "memory_in_gb": INTEGER,
    "storage_in_gb": INTEGER,
    "monthly_bandwidth_allowance_in_gb": INTEGER,
    "privacy": TEXT,
    "icon_url": TEXT,
    "icon_file_name": TEXT,
    "icon_file_type": TEXT,
    "icon_digest": TEXT,
}
# (table → column → (kind, nullable)), in an order where a referred table comes before its referrers.
COLUMNS: dict[str, dict[str, tuple[str, bool]]] = {
    "package_groups": {"id": (KEY, False), "name": (TEXT, True)},
    "sync_runs": {
        "scope": (KEY, False),
        **{
            name: (INTEGER, False)
            for name in (
                "pages_fetched",
                "requests",
                "retries",
                "packages_seen",
                "created",
                "updated",
                "restored",
                "removed",
                "unchanged",
            )
        },
        "error": (TEXT, True),
        "pid": (INTEGER, True),
    },
    "packages": {
        "id": (KEY, False),
        **{name: (kind, True) for name, kind in ATTRIBUTES.items()},
        "group_id": (KEY, True),
    },
    "package_listings": {"package_id": (KEY, False), "scope": (KEY, False)},
    "package_snapshots": {
        "package_id": (KEY, False),
        **{name: (kind, True) for name, kind in ATTRIBUTES.items()},
        "group_id": (KEY, True),
        "group_name": (TEXT, True),
        "changed_fields": (TEXT, True),
    },
}
# (table, column, referred table): MariaDB changes neither the type nor the collation of a column at
# either end of a foreign key, so these are dropped while their tables change, then made again.
TEXT_FOREIGN_KEYS = (
    ("packages", "group_id", "package_groups"),
    ("package_listings", "package_id", "packages"),
    ("package_snapshots", "package_id", "packages"),
)


def upgrade() -> None:
    name = dialect_name()
    if is_mysql():
        upgrade_mysql()
    elif name == "postgresql":
        with views_kept(COLUMNS, VIEWS):
            for table, columns in COLUMNS.items():
                for column, (kind, nullable) in columns.items():
                    op.alter_column(table, column, type_=TYPES[kind], existing_nullable=nullable)
            create_views()
    elif name == "sqlite":
        # Rebuilding a table that others refer to needs foreign keys off: etl.database.upgrade turns
        # them off around every migration on SQLite, and checks them all before it commits.
        with sqlite_objects_kept(COLUMNS, VIEWS):
            for table, columns in COLUMNS.items():
                with op.batch_alter_table(table, recreate="always") as batch:
                    for column, (kind, nullable) in columns.items():
                        batch.alter_column(column, type_=TYPES[kind], existing_nullable=nullable)
            create_views()


def upgrade_mysql() -> None:
    collation = exact_text_collation(op.get_context().dialect)
    # The database's default too, so that tables created later (and temporary ones) match.
    op.execute(f"ALTER DATABASE CHARACTER SET utf8mb4 COLLATE {collation}")
    for table, column, referred in TEXT_FOREIGN_KEYS:
        drop_foreign_key_if_present(table, f"fk_{table}_{column}_{referred}")
    for table, columns in COLUMNS.items():
        if not _mysql_table_done(table, columns, collation):
            changes = ", ".join(
                [
                    *(
                        f"MODIFY {column} {MYSQL_TYPES[kind]}{'' if nullable else ' NOT NULL'}"
                        for column, (kind, nullable) in columns.items()
                    ),
                    *index_rewrites(table, [column for column, (kind, _) in columns.items() if kind == TEXT]),
                ]
            )
            # One statement per table: it lands whole or not at all.
            op.execute(f"ALTER TABLE {table} CONVERT TO CHARACTER SET utf8mb4 COLLATE {collation}, {changes}")
    for table, column, referred in TEXT_FOREIGN_KEYS:
        create_foreign_key_if_missing(table, f"fk_{table}_{column}_{referred}", referred, column)
    op.execute(LATEST_SYNC_RUNS.replace("CREATE VIEW", "CREATE OR REPLACE VIEW", 1))


def _mysql_table_done(table: str, columns: dict[str, tuple[str, bool]], collation: str) -> bool:
    """The table has the collation and every column its new type (what a killed run may have done)."""
    if table_collation(table) != collation:
        return False
    facts = column_facts(table)
    if any(found_collation not in (None, collation) for _, _, found_collation, _ in facts.values()):
        return False
    return all(facts[column][:2] == MYSQL_FACTS[kind] for column, (kind, _) in columns.items())


def downgrade() -> None:
    """Nothing to undo: the wider columns hold all the narrower ones did, and the collation a
    database had before is not known."""


# -- the views, made again where the columns under them changed ------------------------------------

SYNC_RUN_COLUMNS = (
    "id, scope, api, started_at, finished_at, status, pages_fetched, requests, retries, packages_seen, "
    "created, updated, restored, removed, unchanged, error, host, pid"
)

# As migration 0002 made them.
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

# New: the newest run of each scope is the one with the highest id. Ids are handed out in the order
# runs start; started_at comes from a clock, which can go back.
LATEST_SYNC_RUNS = f"""
CREATE VIEW latest_sync_runs AS
SELECT {SYNC_RUN_COLUMNS}
FROM sync_runs r
WHERE NOT EXISTS (SELECT 1 FROM sync_runs later WHERE later.scope = r.scope AND later.id > r.id)
"""

VIEWS = {
    "current_packages": CURRENT_PACKAGES,
    "package_changes": PACKAGE_CHANGES,
    "latest_sync_runs": LATEST_SYNC_RUNS,
}


def create_views() -> None:
    for sql in VIEWS.values():
        op.execute(sql)
