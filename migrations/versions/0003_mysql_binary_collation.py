"""MySQL and MariaDB: every text column in utf8mb4 with binary collation; nothing changes elsewhere.

A MySQL database's default collation (utf8mb4_general_ci, utf8mb4_0900_ai_ci) compares 'rock-1' equal
to 'ROCK-1' and sorts without regard to case: two package ids that differ only in case would be one
row, and a rename that changes only case would not be a change of name. utf8mb4_bin compares text
exactly, as SQLite and PostgreSQL do, and sorts it by code point, as SQLite does.

Each step checks first (migrations/steps.py): MySQL commits each DDL statement on its own, so a run
killed half-way is finished by running it again.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05
"""

from __future__ import annotations

from alembic import op

from etl.migrations.steps import create_foreign_key_if_missing, drop_foreign_key_if_present

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TABLES = ("package_groups", "sync_runs", "packages", "package_listings", "package_snapshots")
# (table, column, referred table): MariaDB changes no collation at either end of a foreign key, so
# these are dropped while their tables convert, then made again.
TEXT_FOREIGN_KEYS = (
    ("packages", "group_id", "package_groups"),
    ("package_listings", "package_id", "packages"),
    ("package_snapshots", "package_id", "packages"),
)


def upgrade() -> None:
    if op.get_context().dialect.name not in ("mysql", "mariadb"):
        return
    # The database's default too, so that tables created later (and temporary ones) match.
    op.execute("ALTER DATABASE CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
    for table, column, referred in TEXT_FOREIGN_KEYS:
        drop_foreign_key_if_present(table, f"fk_{table}_{column}_{referred}")
    for table in TABLES:  # converting a converted table again changes nothing
        op.execute(f"ALTER TABLE {table} CONVERT TO CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
    for table, column, referred in TEXT_FOREIGN_KEYS:
        create_foreign_key_if_missing(table, f"fk_{table}_{column}_{referred}", referred, column)


def downgrade() -> None:
    """Nothing to undo: the collation a database had before is not known, and binary collation is
    a correct one for every revision."""
